"""A data folder that cannot be written (an SD card the kernel remounted read-only, a worn-out card
locked read-only, a folder of another user) must not stop the alerts: pipeline/storage.py.

At start: a real read-only tmpfs under the real detector. While running: a card cannot be made to
fail under open files here (the kernel refuses a read-only remount then), so the outbox's writes
fail on cue instead."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time

import numpy as np
import pytest
import soundfile

from alerting.modem import Modem
from alerting.outbox import Outbox, outbox_path
from alerting.sender import Senders
from pipeline import storage
from pipeline.config import override
from pipeline.health import STORAGE_CHECK, HealthMonitor
from pipeline.metrics import StatsTable
from pipeline.storage import fall_back_if_unwritable, volatile_data_dir
from tests.conftest import own_run_id
from tests.detector_run import RATE, DetectorRun, listening_config, stream_with_shots
from tests.test_aggregator import built, decision
from tests.test_alerting_support import NUMBERS, config_for, sent_texts

SHOT_AT = 3.0
SECONDS = 8.0


@pytest.fixture
def read_only_data(tmp_path):
    """tmp_path/data: an empty tmpfs mounted read-only (root needed to mount)."""
    data = tmp_path / "data"
    data.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(data)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}): the test needs root")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)
    shutil.rmtree(volatile_data_dir(data), ignore_errors=True)


def test_a_detector_started_on_a_read_only_card_still_texts_the_shot_and_says_why(tmp_path, read_only_data):
    recording = tmp_path / "shot.wav"
    soundfile.write(recording, stream_with_shots(SECONDS, [(SHOT_AT, "openarena-shotgun")]), RATE, subtype="PCM_16")
    run = DetectorRun(tmp_path, config_lines=listening_config(tmp_path, "default", RATE))
    run.start("--source", str(recording))
    run.wait_until(lambda: run.process.poll() is not None, SECONDS + 60, "the end of the recording")
    assert run.stop() == 0, run.output()
    assert f"cannot write the data folder {read_only_data} (Read-only file system)" in run.output()
    texts = sent_texts(tmp_path)
    for number in NUMBERS:
        to_it = [text for recipient, text in texts if recipient == number]
        assert len(to_it) == 2, texts
        assert any("possible gunshot" in text for text in to_it)
        assert any("cannot write the data folder" in text and "Check the SD card" in text for text in to_it)
    assert list(read_only_data.iterdir()) == []
    kept = volatile_data_dir(read_only_data)
    assert outbox_path(kept).exists() and not (kept / "clips").exists()  # no clips in memory


def test_a_writable_folder_keeps_its_config_and_a_read_only_one_is_swapped_for_memory(tmp_path, read_only_data):
    config = config_for(tmp_path, **{"storage.data_dir": str(tmp_path / "writable")})
    assert fall_back_if_unwritable(config) == (config, None)
    swapped, problem = fall_back_if_unwritable(override(config, {"storage.data_dir": str(read_only_data)}))
    assert problem == f"cannot write the data folder {read_only_data} (Read-only file system)"
    assert swapped.storage.data_dir == str(volatile_data_dir(read_only_data)) and not swapped.storage.clips


def test_a_card_gone_read_only_under_the_running_detector_is_texted_once(tmp_path, read_only_data, in_memory):
    """The supervisor's health watch writes a probe file every STORAGE_CHECK s."""
    config = config_for(tmp_path, **{"storage.data_dir": str(tmp_path / "writable")})
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("capture",))
    try:
        writable = HealthMonitor(config, stats.slot("capture"))
        assert writable.watch_storage(0.0) is None and list((tmp_path / "writable").iterdir()) == []
        failing = HealthMonitor(override(config, {"storage.data_dir": str(read_only_data)}), stats.slot("capture"))
        text = failing.watch_storage(0.0)
        assert f"cannot write the data folder {read_only_data} (Read-only file system)" in text
        assert failing.unqueued == []  # queued in memory
        assert failing.watch_storage(STORAGE_CHECK) is None  # once
    finally:
        stats.close()
    queued = Outbox(outbox_path(volatile_data_dir(read_only_data)))
    assert sorted(row.recipient for row in queued.rows()) == sorted(NUMBERS)


class _ReadOnlyOutbox(Outbox):
    """The outbox of a card that failed under the running detector: every write refused."""

    def enqueue(self, *_args, **_kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    mark_sending = enqueue


@pytest.fixture
def in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "VOLATILE_ROOT", tmp_path / "shm")


def test_a_card_failing_under_the_running_detector_costs_no_alert(tmp_path, in_memory, monkeypatch, caplog):
    """Texts already waiting in the failed outbox wait for a restart; the new alert goes out."""
    config = config_for(tmp_path)
    data = tmp_path / "data"
    Outbox(outbox_path(data)).enqueue(NUMBERS[0], "an older text", "alert")
    with built(config) as (agg, audio, _):
        monkeypatch.setattr(storage, "Outbox", lambda path: (_ReadOnlyOutbox if data in path.parents else Outbox)(path))
        monkeypatch.setattr("alerting.sender.Outbox", storage.Outbox)
        audio.write(np.zeros(RATE * 4, dtype=np.int16))
        agg.handle(decision(1, True))
        assert agg.unqueued == [] and "queued in memory" in caplog.text
        senders = Senders(config, Modem(config.modem), agg.slot)
        senders.send_due(time.time())
        senders.close()
    assert "cannot be used (attempt to write a readonly database)" in caplog.text
    texts = sent_texts(tmp_path)
    assert sorted(recipient for recipient, _ in texts) == sorted(NUMBERS)
    assert all("possible gunshot" in text for _, text in texts)
