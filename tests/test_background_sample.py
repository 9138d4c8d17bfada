"""Background samples: one window at a random time in each stretch of a day / per_day, never one
already kept (event, near miss) or holding lost audio; the aggregator records it with its clip and
sends no text; its clips are the first to make room on a full disk (tests/test_disk_full.py)."""

from __future__ import annotations

import json

import numpy as np
import soundfile

from alerting.outbox import Outbox, outbox_path
from inference.background_sample import BackgroundSampler
from inference.eventlog import SAMPLES, SECONDS_PER_DAY, EventLog
from pipeline.config import Config, StorageConfig, override
from tests.detector_run import DetectorRun, cli, listening_config, stream_with_shots
from tests.test_aggregator import HOP, RATE, RECIPIENTS, WINDOW, built, click_in_clip, decision, write_click

PER_DAY = 24
STRETCH = int(SECONDS_PER_DAY * RATE) // PER_DAY  # samples: an hour
WINDOWS_PER_STRETCH = STRETCH // HOP
DAYS = 3
MOST_PER_DAY = int(StorageConfig.__dataclass_fields__["background_samples_per_day"].metadata["hi"])


def sampler(per_day: int = PER_DAY, seed: int = 0) -> BackgroundSampler:
    return BackgroundSampler(HOP, RATE, per_day, np.random.default_rng(seed))


def taken(picker: BackgroundSampler, windows: range, kept_or_lost=lambda index: False) -> list[int]:
    return [i for i in windows if picker.pick(decision(i, False), kept_or_lost(i))]


def test_one_window_at_a_random_time_in_each_stretch():
    windows = range(DAYS * PER_DAY * WINDOWS_PER_STRETCH)
    picks = taken(sampler(), windows)
    assert [i // WINDOWS_PER_STRETCH for i in picks] == list(range(DAYS * PER_DAY))
    offsets = [i % WINDOWS_PER_STRETCH for i in picks]
    assert len(set(offsets)) > DAYS * PER_DAY // 2  # spread over the stretch, not a fixed time
    assert taken(sampler(seed=1), windows) != picks
    assert taken(sampler(per_day=0), windows) == []


def test_a_window_already_kept_or_holding_lost_audio_gives_way_to_the_next():
    first = taken(sampler(), range(WINDOWS_PER_STRETCH))
    busy = set(range(first[0], first[0] + 5))
    assert taken(sampler(), range(WINDOWS_PER_STRETCH), lambda index: index in busy) == [first[0] + 5]


class DrawAt:
    """A random draw that falls where the test needs it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def integers(self, high: int) -> int:
        return self.offset


def test_a_restarted_sampler_draws_from_the_first_window_it_sees():
    restarted = BackgroundSampler(HOP, RATE, PER_DAY, DrawAt(3 * HOP))
    assert taken(restarted, range(10**6, 10**6 + 10)) == [10**6 + 3]


def test_the_aggregator_keeps_a_sample_with_its_clip_and_sends_no_text(tmp_path):
    config = override(Config(), {"storage.data_dir": str(tmp_path), "alerts.recipients": RECIPIENTS})
    with built(config) as (agg, audio, _):
        agg.samples = BackgroundSampler(HOP, RATE, PER_DAY, DrawAt(6 * HOP))
        write_click(audio)
        for index in range(12):
            agg.handle(decision(index, False))
        agg.write_due_clips()
        (sample,) = EventLog(tmp_path).windows(SAMPLES)
        clip, rate = soundfile.read(tmp_path / sample.clip, dtype="int16")
        pre, post = config.storage.clip_pre_roll, config.storage.clip_post_roll
        assert rate == RATE and len(clip) == round((pre + WINDOW / RATE + post) * RATE)
        assert np.argmax(clip) == click_in_clip(6, pre)
        assert sample.clip.endswith(".flac") and "sample-" in sample.clip
        assert EventLog(tmp_path).events() == [] and Outbox(outbox_path(tmp_path)).rows() == []


def found_at(recording: np.ndarray, clip: np.ndarray) -> int | None:
    """Where `clip` is in `recording`, sample for sample, or None."""
    for at in np.flatnonzero(recording[: len(recording) - len(clip) + 1] == clip[0]):
        if np.array_equal(recording[at : at + len(clip)], clip):
            return int(at)
    return None


def test_a_live_detector_keeps_a_sample_of_what_it_heard_and_sends_no_text(tmp_path):
    """The real detector (separate processes, a quiet recording replayed at real time) at the most
    samples a day allows (a stretch of 60 s): the first minute's sample, and perhaps the next
    stretch's, each clip the recording's own samples from its window's pre-roll on."""
    stretch = int(SECONDS_PER_DAY * RATE) // MOST_PER_DAY
    seconds = stretch / RATE + WINDOW / RATE + 2.0  # whatever the draw, its window is heard whole
    recording = tmp_path / "quiet.wav"
    soundfile.write(recording, stream_with_shots(seconds, []), RATE, subtype="PCM_16")
    lines = [*listening_config(tmp_path, "default", RATE), "[storage]", f"background_samples_per_day = {MOST_PER_DAY}"]
    run = DetectorRun(tmp_path, config_lines=lines)
    run.start("--source", str(recording))
    run.wait_until(lambda: run.process.poll() is not None, seconds + 60, "the end of the recording")
    assert run.stop() == 0
    assert run.events() == [] and run.texts() == []

    listed = cli("events", "--samples", "--format", "jsonl", "--data-dir", str(run.data_dir))
    assert listed.returncode == 0, listed.stderr
    samples = sorted((json.loads(line) for line in listed.stdout.splitlines()), key=lambda s: s["id"])
    assert 1 <= len(samples) <= 2, listed.stdout
    heard, _ = soundfile.read(recording, dtype="int16")
    pre = round(Config().storage.clip_pre_roll * RATE)
    windows = []
    for sample in samples:
        clip, rate = soundfile.read(run.data_dir / sample["clip"], dtype="int16")
        at = found_at(heard, clip)
        assert rate == RATE and len(clip) >= WINDOW and at is not None
        windows.append(at + pre if at else None)  # a clip from the recording's start: the window is within pre
    first = windows[0]  # the first window starting at or after a time drawn in the first stretch
    assert first is None or (first < stretch + HOP and first % HOP == 0)
    assert all(w is not None and w >= stretch and w > (first or 0) and w % HOP == 0 for w in windows[1:])


def test_after_a_jump_over_stretches_one_window_is_overdue_then_one_per_stretch_again():
    """An outage longer than the ring makes the window index jump: one sample is overdue, then one
    per stretch again, not a burst of near-identical clips in the windows right after the jump."""
    picker, jump = sampler(), 5 * WINDOWS_PER_STRETCH
    assert len(taken(picker, range(WINDOWS_PER_STRETCH))) == 1
    overdue, *after = taken(picker, range(jump, jump + 3 * WINDOWS_PER_STRETCH))
    assert overdue == jump
    assert [(index - jump) // WINDOWS_PER_STRETCH for index in after] == [0, 1, 2]
