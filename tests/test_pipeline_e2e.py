"""The whole detector, end to end, on real parts: ALSA capture through pyalsaaudio (a clocked ALSA
`file` PCM, and a PulseAudio null sink standing in for a microphone), all processes, shared memory,
the models, SQLite, and Gammu's dummy phone."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile

from capture.pcm import int16_to_float
from inference.model import load_ensemble
from inference.offline import OfflineDetector, StreamResult
from pipeline.config import DetectorConfig
from pipeline.process import OOM_FIRST, OOM_LAST, OOM_SECOND
from tests.audio_env import alsa_replay_config, pulseaudio_available, start_pulse, write_raw
from tests.detector_run import (
    PIPELINE_SHOTS,
    RATE,
    RECIPIENTS,
    DetectorRun,
    listening_config,
    pipeline_test_models,
    stream_with_shots,
)

pytestmark = [
    pytest.mark.realtime,
    pytest.mark.skipif(not pulseaudio_available(), reason="needs pulseaudio, pactl, paplay (./setup.sh --test)"),
]

# These tests are about the pipeline (capture, rings, processes, vote, events, texts): they use
# shots the models hear at the pipeline-test thresholds (tests/detector_run.py); the models' recall
# is measured by their own evaluation (models/README.md).
SHOTS = [(5.0, PIPELINE_SHOTS[0]), (12.0, PIPELINE_SHOTS[1]), (18.7, PIPELINE_SHOTS[0])]
DURATION = 24.0
SHOT_SPACING_TOLERANCE = 1.5  # s: an event starts at a window boundary, up to a window before the shot
SETTLE = 3.0  # s of extra listening after the last text, to catch late false events
SAME_SCORE = 1e-6  # the same samples through the same TFLite model: the same probability
START_JITTER = 0.3  # s: a live event's start is a wall time, stamped as each capture period arrives


@pytest.fixture(scope="module")
def pulse_server():
    server = start_pulse(rate=48000)
    yield server
    server.stop()


@pytest.fixture
def pulse(pulse_server):
    """The module's PulseAudio, with nothing left playing into the next test."""
    yield pulse_server
    pulse_server.stop_players()


def make_run(tmp_path, device: str, rate: int, env: dict) -> DetectorRun:
    return DetectorRun(tmp_path, env=env, config_lines=listening_config(tmp_path, device, rate))


def expect_one_event_and_one_text_per_recipient_per_shot(run: DetectorRun, shots) -> None:
    expected_texts = len(shots) * len(RECIPIENTS)

    def all_sent() -> bool:
        texts = run.texts()
        return len(texts) >= expected_texts and all(t["state"] == "sent" for t in texts)

    run.wait_until(all_sent, DURATION + 30, f"{expected_texts} texts sent")
    time.sleep(SETTLE)
    events = run.events()
    assert len(events) == len(shots), f"events {events}\n{run.output()}"
    gaps = [b["start_time"] - a["start_time"] for a, b in itertools.pairwise(events)]
    expected_gaps = [b[0] - a[0] for a, b in itertools.pairwise(shots)]
    for gap, expected in zip(gaps, expected_gaps, strict=True):
        assert abs(gap - expected) < SHOT_SPACING_TOLERANCE, (gaps, expected_gaps)
    texts = run.texts()
    assert len(texts) == expected_texts
    for recipient in RECIPIENTS:
        assert sum(t["recipient"] == recipient for t in texts) == len(shots)
    assert all("Test range: possible gunshot" in t["text"] for t in texts)


def offline_result(tmp_path, samples: np.ndarray) -> StreamResult:
    """What `analyze` finds in the same samples, with the same models and settings."""
    config = DetectorConfig()
    ensemble = load_ensemble(pipeline_test_models(tmp_path / "offline"))
    detector = OfflineDetector(ensemble, round(config.hop * RATE), config.merge_gap)
    return detector.run([int16_to_float(samples)], keep_window_scores=True)


def test_alsa_file_pcm_capture_detects_each_shot_once(tmp_path, pulse):
    """And the live processes score windows as `analyze` does (whose scores chose the thresholds):
    the file plugin delivers the samples bit-exact from the ring's first row, and a live window
    waits for every present model's vote, so an event's confidence (in its text) is `analyze`'s.
    (Decided at the second yes, it was the mean of whichever two models voted first.)"""
    samples = (stream_with_shots(DURATION, SHOTS) * 32767).astype("int16")
    env = {**pulse.env, **alsa_replay_config(tmp_path, write_raw(tmp_path / "stream.raw", samples), clocked=True)}
    run = make_run(tmp_path, "replay", RATE, env)
    run.start()
    try:
        run.wait_for_audio(run.ring())
        expect_the_oom_killer_to_take_a_model_worker_first(run)
        expect_one_event_and_one_text_per_recipient_per_shot(run, SHOTS)
    finally:
        assert run.stop() == 0
    clips = sorted((run.data_dir / "clips").glob("event-*.flac"))
    assert len(clips) == len(SHOTS)  # the last one cut short at shutdown
    for clip in clips:
        info = soundfile.info(clip)
        assert info.samplerate == RATE and info.frames > RATE
    live, offline = run.events(), offline_result(tmp_path, samples)
    assert len(offline.events) == len(live)
    hop = round(DetectorConfig().hop * RATE)
    for live_event, offline_event in zip(live, offline.events, strict=True):
        span = (offline_event.start * RATE, offline_event.end * RATE)  # the event's windows, offline
        inside = [votes for index, votes in offline.window_scores if span[0] <= index * hop < span[1]]
        for model, probability in json.loads(live_event["votes"]).items():
            offline_probabilities = np.array([votes[model] for votes in inside])
            assert np.min(np.abs(offline_probabilities - probability)) < SAME_SCORE, (model, probability)
        assert live_event["confidence"] == pytest.approx(offline_event.confidence, abs=SAME_SCORE)
    live_starts = [e["start_time"] - live[0]["start_time"] for e in live]
    assert live_starts == pytest.approx([e.start - offline.events[0].start for e in offline.events], abs=START_JITTER)


def oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def expect_the_oom_killer_to_take_a_model_worker_first(run: DetectorRun) -> None:
    """Short of memory, the kernel takes a model worker first, then the front end, then the path
    to a text; the supervisor and the forkserver (whose loss stops or restarts all) last."""
    supervisor = oom_score_adj(run.process.pid)
    (forkserver,) = [p for p in psutil.Process(run.process.pid).children() if "forkserver" in " ".join(p.cmdline())]
    assert oom_score_adj(forkserver.pid) == supervisor
    scores = {psutil.Process(pid).name(): oom_score_adj(pid) for pid in pipeline_processes(run)}
    models = {name for name in scores if name.startswith("gs.model.")}
    assert models and {scores[name] for name in models} == {supervisor + OOM_FIRST}, scores
    assert scores["gs.frontend"] == supervisor + OOM_SECOND, scores
    for name in ("gs.capture", "gs.aggregator", "gs.sms"):
        assert scores[name] == supervisor + OOM_LAST, scores


def play_when_listening(run: DetectorRun, pulse, tmp_path) -> None:
    wav = tmp_path / "stream.wav"
    soundfile.write(wav, stream_with_shots(DURATION, SHOTS), RATE, subtype="PCM_16")
    run.wait_for_audio(run.ring())
    pulse.play(wav)


def test_pulseaudio_microphone_at_48k_detects_each_shot_once(tmp_path, pulse):
    run = make_run(tmp_path, "pulse", 48000, pulse.env)
    run.start()
    try:
        play_when_listening(run, pulse, tmp_path)
        expect_one_event_and_one_text_per_recipient_per_shot(run, SHOTS)
    finally:
        assert run.stop() == 0


def test_a_worker_killed_mid_run_is_restarted_and_the_next_shots_are_detected(tmp_path, pulse):
    run = make_run(tmp_path, "pulse", 48000, pulse.env)
    run.start()
    try:
        play_when_listening(run, pulse, tmp_path)
        run.wait_until(lambda: len(run.events()) >= 1, SHOTS[0][0] + 10, "the first event")
        victim = run.child("gs.model.wave")
        assert victim is not None
        victim.kill()
        run.wait_until(lambda: (w := run.child("gs.model.wave")) is not None and w.pid != victim.pid, 15, "the restart")
        expect_one_event_and_one_text_per_recipient_per_shot(run, SHOTS)
    finally:
        assert run.stop() == 0
    assert "model.wave died" in run.output()


def test_a_killed_forkserver_takes_its_processes_along_and_the_new_ones_detect_each_shot(tmp_path, pulse):
    """The processes are the forkserver's children (an OOM kill may pick it: it is as big as a
    worker). The supervisor takes them all for dead and starts a new set: an old one left running
    would share its rings, channels and modem (measured: garbled channels, a shot missed)."""
    run = make_run(tmp_path, "pulse", 48000, pulse.env)
    run.start()
    try:
        ring = run.ring()
        run.wait_for_audio(ring)
        first = pipeline_processes(run)
        (forkserver,) = [p for p in psutil.Process(run.process.pid).children() if "forkserver" in " ".join(p.cmdline())]
        forkserver.kill()
        run.wait_until(lambda: not any(map(is_pipeline_process, first)), 10, "the old processes gone")
        run.wait_until(lambda: len(pipeline_processes(run)) == len(first), 30, "a new set of processes")
        run.wait_for_audio(ring)
        wav = tmp_path / "stream.wav"
        soundfile.write(wav, stream_with_shots(DURATION, SHOTS), RATE, subtype="PCM_16")
        pulse.play(wav)
        expect_one_event_and_one_text_per_recipient_per_shot(run, SHOTS)
    finally:
        ring.close()
        assert run.stop() == 0
    log = (tmp_path / "detector.log").read_text()
    assert "UnpicklingError" not in log and "EOFError" not in log  # two readers on one channel


def pipeline_processes(run: DetectorRun) -> set[int]:
    """The pids of the detector's processes (named gs.*)."""
    return {p.pid for p in psutil.Process(run.process.pid).children(recursive=True) if is_pipeline_process(p.pid)}


def is_pipeline_process(pid: int) -> bool:
    """A live process named gs.*, wherever it hangs (an orphan's parent is pid 1)."""
    try:
        return psutil.Process(pid).name().startswith("gs.")
    except psutil.NoSuchProcess:
        return False
