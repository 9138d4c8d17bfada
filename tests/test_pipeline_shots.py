"""The real-time pipeline tests need shots the shipped models hear for sure at the pipeline-test
thresholds, wherever the shot falls within a hop and after the 48 kHz microphone's resampling.
Checked here offline, on the same inference path as `analyze`, so that a retrained model set that
no longer hears one fails this test instead of failing a real-time test by chance."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from inference.model import load_ensemble
from inference.offline import OfflineDetector
from pipeline.config import DetectorConfig
from tests.detector_run import PIPELINE_SHOTS, RATE, pipeline_test_models, stream_with_shots

OFFSETS = 8  # shot positions spread over one hop
SHOT_AT = 5.0  # s into a 10 s stream
STREAM_SECONDS = 10.0
MICROPHONE_RATE = 48000  # the PulseAudio microphone of the real-time tests


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> OfflineDetector:
    config = DetectorConfig()
    ensemble = load_ensemble(pipeline_test_models(tmp_path_factory.mktemp("models")))
    return OfflineDetector(ensemble, round(config.hop * RATE), config.merge_gap)


def through_the_microphone(audio: np.ndarray) -> np.ndarray:
    return soxr.resample(soxr.resample(audio, RATE, MICROPHONE_RATE), MICROPHONE_RATE, RATE)


@pytest.mark.parametrize("resampled", [False, True], ids=["16k", "48k"])
@pytest.mark.parametrize("shot", PIPELINE_SHOTS)
def test_each_pipeline_shot_is_one_event_at_every_offset_within_a_hop(detector, shot, resampled):
    hop_seconds = detector.hop / RATE
    for k in range(OFFSETS):
        at = SHOT_AT + k * hop_seconds / OFFSETS
        audio = stream_with_shots(STREAM_SECONDS, [(at, shot)])
        if resampled:
            audio = through_the_microphone(audio)
        events = detector.run([audio]).events
        assert len(events) == 1, f"{shot} at {at:.3f} s: {len(events)} events"
        assert events[0].start <= at <= events[0].end


def test_the_background_alone_is_no_event(detector):
    assert detector.run([stream_with_shots(STREAM_SECONDS, [])]).events == []


@pytest.mark.parametrize("seconds", [1.0, 2.3])
def test_a_clip_shorter_than_a_window_or_hops_is_scored_to_its_end(detector, seconds):
    """Zeros complete the last window: a 1 s clip (the models hear 2 s) is one window, not none,
    and the end of a longer one is scored too."""
    shot = PIPELINE_SHOTS[0]
    result = detector.run([stream_with_shots(seconds, [(seconds - 0.5, shot)])])
    hop_seconds = detector.hop / RATE
    window_seconds = detector.ensemble.window_samples / RATE
    assert result.windows == 1 + max(0, int(np.ceil((seconds - window_seconds) / hop_seconds)))
    assert len(result.events) == 1


def test_an_event_spans_its_first_to_its_last_positive_window_and_ends_with_the_file(detector):
    """A shot just before the end of a recording: the padded last windows hear it, the event ends
    with the file, and the file's score is its best window's."""
    seconds = 10.2  # not a whole number of hops: the last window is padded past the end
    result = detector.run([stream_with_shots(seconds, [(seconds - 0.7, PIPELINE_SHOTS[0])])], keep_window_scores=True)
    decided = [
        (index, detector.rule.positive(np.array([list(votes.values())]), list(votes))[0], votes)
        for index, votes in result.window_scores
    ]
    positive = [index for index, yes, _ in decided if yes]
    hop_s, window_s = detector.hop / RATE, detector.ensemble.window_samples / RATE
    (event,) = result.events
    assert event.start == positive[0] * hop_s
    assert positive[-1] * hop_s + window_s > seconds and event.end == seconds
    assert result.score == max(detector.rule.confidence(votes) for _, _, votes in decided)


def test_shots_closer_than_the_merge_gap_after_a_window_are_one_event(detector):
    """A burst of fire is one text: analyze merges as the live aggregator does."""
    shot = PIPELINE_SHOTS[0]
    (event,) = detector.run([stream_with_shots(16.0, [(4.0, shot), (9.0, shot)])]).events
    assert event.start <= 4.0 and event.end >= 9.0


@pytest.mark.parametrize("seed", [0, 5])
def test_a_background_cut_to_digital_silence_is_no_event_at_the_shipped_thresholds(seed):
    """A stream that ends (a PulseAudio player, a muted input) cuts the noise floor to exact zeros:
    at the pipeline-test thresholds that step is an event at most cut positions (the CPU audit's
    extra event at the end of each played file), at the shipped ones it must not be. Offline: 0 of
    30 cuts (6 backgrounds x 5 positions within a hop); the waveform model alone passed its
    threshold at some, scoring up to 0.9996."""
    config = DetectorConfig()
    detector = OfflineDetector(load_ensemble(""), round(config.hop * RATE), config.merge_gap)
    hop_seconds = detector.hop / RATE
    for k in range(OFFSETS):
        audio = stream_with_shots(STREAM_SECONDS, [], seed=seed)
        audio[round((SHOT_AT + k * hop_seconds / OFFSETS) * RATE) :] = 0.0
        assert detector.run([audio]).events == [], f"cut at {SHOT_AT + k * hop_seconds / OFFSETS:.3f} s"
