"""A full disk under the data folder: a real tmpfs of a few MB, filled by another writer. The
alert is still queued and sent, the clip that does not fit is logged and counted, and our own
clips never take the disk below storage.min_free_mb (older clips go first)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from alerting.modem import Modem
from alerting.outbox import Outbox, outbox_path
from alerting.reserve import RESERVE_FILE, DiskReserve, queue_in_order
from alerting.sender import Senders, send_pending_once
from inference.eventlog import EVENTS, MB, NEAR_MISSES, SAMPLES, EventLog
from pipeline import storage
from pipeline.config import override
from pipeline.health import HEALTH_RETRY, HealthMonitor
from pipeline.metrics import StatsTable
from tests.conftest import own_run_id, tmpfs
from tests.test_aggregator import RATE, built, decision
from tests.test_alerting_support import NUMBERS, config_for, sent_texts

DISK_MB = 8
DATABASE_GROWTH = 64 * 1024  # bytes the event database may add beside a clip


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", DISK_MB) as mount:
        yield mount


def leave_free(folder: Path, free_bytes: int) -> None:
    """Another program's file takes the space, down to `free_bytes` free (0: the disk is full)."""
    filler = folder / "someone-elses.log"
    size = shutil.disk_usage(folder).free - free_bytes + (filler.stat().st_size if filler.exists() else 0)
    with filler.open("ab") as stream:
        stream.truncate(0)
        with contextlib.suppress(OSError):  # ENOSPC: the disk is as full as it gets
            os.posix_fallocate(stream.fileno(), 0, max(size, 1))


def event_with_clip(agg, audio, first_index: int) -> None:
    """A one-window event on noise, closed and its clip written."""
    closed_event(agg, audio, first_index)
    agg.write_due_clips()


def closed_event(agg, audio, first_index: int) -> None:
    """A one-window event on noise, closed and its clip due."""
    noise = np.random.default_rng(first_index).integers(-8000, 8000, RATE * 6, dtype=np.int16)
    audio.write(noise)
    agg.handle(decision(first_index, True))
    for index in range(first_index + 1, first_index + 12):
        agg.handle(decision(index, False))


def test_on_a_full_disk_the_alert_is_queued_and_sent_and_the_lost_clip_is_counted(tmp_path, small_disk):
    config = config_for(tmp_path, **{"storage.data_dir": str(small_disk / "data"), "storage.min_free_mb": 0.0})
    with built(config) as (agg, audio, _):
        agg.prune(time.time())  # the first loop's retention pass makes the outbox reserve
        assert (small_disk / "data" / RESERVE_FILE).exists()
        leave_free(small_disk, 0)
        event_with_clip(agg, audio, 0)
        assert not (small_disk / "data" / RESERVE_FILE).exists()  # given up for the alert
        assert agg.unqueued == []
        assert agg.slot.get("errors") >= 1  # the clip (and perhaps the event record) did not fit
        outbox = Outbox(outbox_path(small_disk / "data"))
        assert sorted(row.recipient for row in outbox.rows()) == sorted(NUMBERS)
        assert send_pending_once(outbox, Modem(config.modem), config, now=time.time()) == len(NUMBERS)
        outbox.close()
    assert sorted(recipient for recipient, _ in sent_texts(tmp_path)) == sorted(NUMBERS)
    assert not list((small_disk / "data").glob("clips/*.flac"))


def test_an_alert_that_finds_no_room_at_all_is_queued_in_memory_and_sent(tmp_path, small_disk, in_memory):
    """No reserve to give up (another program took the disk before the first retention pass made
    it): the alert goes to the in-memory outbox, and the SMS process sends it from there."""
    config = config_for(tmp_path, **{"storage.data_dir": str(small_disk / "data"), "storage.min_free_mb": 0.0})
    with built(config) as (agg, audio, _):
        leave_free(small_disk, 0)
        audio.write(np.zeros(RATE * 4, dtype=np.int16))
        agg.handle(decision(1, True))
        assert agg.unqueued == []
        senders = Senders(config, Modem(config.modem), agg.slot)
        senders.send_due(time.time())
        assert senders.pending_count() == 0
        senders.close()
    assert sorted(recipient for recipient, _ in sent_texts(tmp_path)) == sorted(NUMBERS)


def test_an_alert_no_outbox_can_take_is_kept_and_queued_once_one_can(tmp_path, small_disk, monkeypatch, caplog):
    """The memory full too (here: the in-memory outbox on the same full disk): the alert waits in
    the aggregator, tried again after 1, 2, 4 ... s (every loop, it logged 8 lines a second: the log
    audit), and reaches the outbox when room is made."""
    monkeypatch.setattr(storage, "VOLATILE_ROOT", small_disk / "shm")
    config = config_for(tmp_path, **{"storage.data_dir": str(small_disk / "data"), "storage.min_free_mb": 0.0})
    with built(config) as (agg, audio, _):
        leave_free(small_disk, 0)
        audio.write(np.zeros(RATE * 4, dtype=np.int16))
        agg.handle(decision(1, True))
        now = time.monotonic()
        for loop in range(100):  # the next 12 s of loops: still no room
            agg.queue_alerts(now + loop * 0.12)
        assert len(agg.unqueued) == 1
        assert caplog.text.count("NOT queued yet") == 4, caplog.text  # at the decision, then 1, 2 and 4 s on
        (small_disk / "someone-elses.log").unlink()  # a person makes room
        agg.queue_alerts(now + 12.0)
        assert len(agg.unqueued) == 1  # not due yet: 8 s after the last try (at a loop after 7 s)
        agg.queue_alerts(now + 7.5 + 8)
        assert agg.unqueued == []
    outbox = Outbox(outbox_path(small_disk / "data"))
    assert sorted(row.recipient for row in outbox.rows()) == sorted(NUMBERS)


def test_clips_never_take_the_disk_below_the_floor_older_clips_go_first(tmp_path, small_disk):
    floor_mb = 1.0
    config = config_for(tmp_path, **{"storage.data_dir": str(small_disk / "data"), "storage.min_free_mb": floor_mb})
    with built(config) as (agg, audio, _):
        agg.prune(time.time())
        for first_window in (0, 12, 24):
            event_with_clip(agg, audio, first_window)
        clip = small_disk / "data" / EventLog(small_disk / "data").events()[-1].clip  # a whole one
        samples_bytes = soundfile.info(clip).frames * 2  # the room a clip asks for: its int16 samples
        closed_event(agg, audio, 36)
        leave_free(small_disk, round(floor_mb * MB) + samples_bytes - clip.stat().st_size // 2)  # half a clip short
        agg.write_due_clips()
        assert shutil.disk_usage(small_disk).free >= floor_mb * MB - DATABASE_GROWTH  # the clip stayed above
        clips = [event.clip is not None for event in EventLog(small_disk / "data").events()]
        assert clips == [False, True, True, True]  # the oldest clip, and only it, made room for the newest
        leave_free(small_disk, 0)
        event_with_clip(agg, audio, 48)  # nothing fits: record and clip skipped and counted, the alert queued
        assert len(list((small_disk / "data" / "clips").glob("*.flac"))) == 3
        assert agg.slot.get("errors") >= 1 and agg.unqueued == []


def test_the_floor_setting_is_validated(tmp_path):
    with pytest.raises(Exception, match=r"storage\.min_free_mb"):
        override(config_for(tmp_path), {"storage.min_free_mb": -1})


def test_sample_then_near_miss_then_event_clips_make_room_and_labelled_clips_are_kept(small_disk):
    log = EventLog(small_disk / "data")
    noise = np.random.default_rng(0).integers(-8000, 8000, RATE * 6, dtype=np.int16)
    records = [
        (NEAR_MISSES, log.add_window(NEAR_MISSES, time.time(), 0.5, {}, {})),  # labelled below
        (EVENTS, log.open_event(time.time(), 0.9, {}, {}, False)),
        (NEAR_MISSES, log.add_window(NEAR_MISSES, time.time(), 0.5, {}, {})),
        (SAMPLES, log.add_window(SAMPLES, time.time(), 0.1, {}, {})),
    ]
    log.set_label(*records[0], "gunshot", None)
    for table, record_id in records:
        assert log.attach_clip(table, record_id, noise, RATE)
    clip_bytes = (small_disk / "data" / log.events()[0].clip).stat().st_size

    def clips_left() -> tuple[bool, ...]:
        clips = {(t, r.id): r.clip for t in (NEAR_MISSES, SAMPLES) for r in log.windows(t)}
        clips[EVENTS, records[1][1]] = log.events()[0].clip
        return tuple(clips[record] is not None for record in records)

    leave_free(small_disk, clip_bytes // 2)
    assert not log.make_room(2 * clip_bytes, SAMPLES)  # a sample's clip gives up only samples: too few
    assert clips_left() == (True, True, True, True)  # and nothing was deleted in vain
    for expected in ((1, 1, 1, 0), (1, 1, 0, 0), (1, 0, 0, 0)):
        leave_free(small_disk, clip_bytes // 2)
        assert log.make_room(clip_bytes, EVENTS)
        assert clips_left() == tuple(map(bool, expected))
    leave_free(small_disk, clip_bytes // 2)
    assert not log.make_room(clip_bytes, EVENTS)
    assert clips_left() == (True, False, False, False)  # the labelled clip is kept


def test_a_disk_filled_by_something_else_costs_no_clip(small_disk):
    """When deleting every clip it may give up would not reach the floor, none is deleted."""
    log = EventLog(small_disk / "data")
    noise = np.random.default_rng(0).integers(-8000, 8000, RATE * 6, dtype=np.int16)
    first = log.open_event(time.time(), 0.9, {}, {}, False)
    assert log.attach_clip(EVENTS, first, noise, RATE)
    clip_bytes = (small_disk / "data" / log.events()[0].clip).stat().st_size
    leave_free(small_disk, clip_bytes // 2)
    second = log.open_event(time.time(), 0.9, {}, {}, False)
    assert not log.attach_clip(EVENTS, second, noise, RATE, min_free_bytes=10 * clip_bytes)
    assert [event.clip is not None for event in log.events()] == [True, False]


def test_a_health_text_on_a_full_disk_gives_up_the_reserve_or_waits_never_stops_the_detector(
    tmp_path, small_disk, monkeypatch
):
    """Waits: when the in-memory outbox has no room either (here: on the same full disk)."""
    monkeypatch.setattr(storage, "VOLATILE_ROOT", small_disk / "shm")
    data = small_disk / "data"
    config = config_for(tmp_path, **{"storage.data_dir": str(data), "health.silence_alert_after": 60.0})
    Outbox(outbox_path(data)).close()
    assert DiskReserve(data).ensure()
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        monitor = HealthMonitor(config, stats.slot("capture"), started=0.0)
        leave_free(small_disk, 0)
        assert "microphone silent" in monitor.check(61.0)
        assert not (data / RESERVE_FILE).exists() and monitor.unqueued == []  # the reserve made room
        leave_free(small_disk, 0)
        stats.slot("capture").set("last_sound", 100.0)
        assert "works again" in monitor.check(100.5)  # refused by the full disk and kept: no exception
        assert len(monitor.unqueued) == 1
        leave_free(small_disk, 4 * MB)
        monitor.queue_unqueued(100.6)
        assert len(monitor.unqueued) == 1  # not before HEALTH_RETRY
        monitor.queue_unqueued(100.6 + HEALTH_RETRY)
        assert monitor.unqueued == []
    finally:
        stats.close()
    texts = [row.text for row in Outbox(outbox_path(data)).rows()]
    assert len(texts) == 2 * len(NUMBERS) and sum("works again" in text for text in texts) == len(NUMBERS)


def test_pending_alerts_are_queued_oldest_first_each_once(tmp_path):
    queued: list[int] = []
    assert queue_in_order([1, 2, 3], queued.append, DiskReserve(tmp_path)) is None
    assert queued == [1, 2, 3]


def test_an_error_other_than_a_full_disk_keeps_the_reserve_and_the_alert(tmp_path):
    reserve = DiskReserve(tmp_path)
    assert reserve.ensure()

    def locked(_: int) -> None:
        raise sqlite3.OperationalError("database is locked")

    pending = [1]
    assert isinstance(queue_in_order(pending, locked, reserve), sqlite3.OperationalError)
    assert pending == [1] and reserve.path.exists()
