"""The per-process figures that `profile`, `stats` and the status line show."""

from __future__ import annotations

import json
import multiprocessing
import time
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.config import Config, override
from pipeline.layout import AUDIO_SHAPE
from pipeline.metrics import LatencyTracker, StatsTable
from pipeline.profile import format_table
from pipeline.ring import Ring
from pipeline.stats import StatsReporter
from tests.conftest import own_run_id

RATE = 16000


@pytest.fixture
def slot():
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("frontend",))
    yield stats.slot("frontend")
    stats.close()


def test_a_step_counts_the_items_it_did_and_keeps_the_longest_busy_time(slot):
    slot.done(slot.busy(), items=3)
    since = slot.busy()
    time.sleep(0.02)
    slot.done(since, items=2)
    slot.done(slot.busy(), items=0)
    assert slot.get("processed") == 5
    assert slot.get("busy_ms_max") >= 20.0 > slot.get("busy_ms_ema")


def test_latencies_are_published_as_their_median_and_99th_percentile(slot):
    tracker = LatencyTracker(slot)
    for ms in range(1, 101):
        tracker.add(float(ms))
    assert (slot.get("p50_ms"), slot.get("p99_ms")) == pytest.approx((50.5, 99.01))


def test_the_profile_table_gives_cpu_per_second_of_audio_and_the_share_of_one_core():
    figures = {"cpu_ms_per_audio_s": 250.0, "rss_mb": 40.0, "pss_mb": 20.0, "uss_mb": 10.0, "processed": 7}
    report = {"processes": {"frontend": figures}, "total": figures, "pipeline": {}}
    header, row, *_ = format_table(report).splitlines()
    assert header.split()[:5] == ["process", "cpu", "ms/s", "%", "core"]
    assert row.split()[:7] == ["frontend", "250.00", "25.00", "40.0", "20.0", "10.0", "7"]


BURN_CPU_S = 0.3  # CPU seconds a stand-in process spends while the test writes AUDIO_S of audio
AUDIO_S = 2.0


def _burn_when_told(ready, go, done) -> None:
    """A pipeline process stand-in: idle, then BURN_CPU_S of CPU, then idle until killed."""
    ready.set()
    go.wait()
    start = time.process_time()
    while time.process_time() - start < BURN_CPU_S:
        pass
    done.set()
    time.sleep(60)


class _Busy:
    """A real process that burns BURN_CPU_S of CPU when told, as the supervisor would manage it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        ready, self.go, self.done = context.Event(), context.Event(), context.Event()
        self.process = context.Process(target=_burn_when_told, args=(ready, self.go, self.done), daemon=True)
        self.process.start()
        assert ready.wait(30)  # started: its start-up CPU is behind it

    def burn(self) -> None:
        self.go.set()
        assert self.done.wait(30)

    def stop(self) -> None:
        self.process.kill()
        self.process.join()


@pytest.fixture
def watched(tmp_path):
    """A supervisor stand-in: an audio ring, a stats table, one managed process (StatsReporter's view)."""
    stats = StatsTable.create(f"gs-{own_run_id()}-stats", ("worker",))
    audio = Ring.in_memory(RATE * 10, AUDIO_SHAPE, RATE)
    supervisor = SimpleNamespace(
        config=override(Config(), {"storage.data_dir": str(tmp_path)}),
        audio=audio,
        ensemble=SimpleNamespace(sample_rate=RATE),
        stats=stats,
        managed={},
        degraded=False,
        padding=0,  # zeros after the capture's last row (a stop's, a replay's end)
    )
    yield supervisor
    for managed in supervisor.managed.values():
        managed.stop()
    stats.close()


def _manage(supervisor, busy: _Busy) -> None:
    supervisor.managed["worker"] = busy
    supervisor.stats.slot("worker").set("pid", busy.process.pid)


def test_cpu_is_counted_per_second_of_audio_and_a_restarted_process_starts_a_new_count(watched):
    reporter = StatsReporter(watched)
    first = _Busy()
    _manage(watched, first)
    reporter.collect()  # the marks
    watched.audio.write(np.zeros(round(AUDIO_S * RATE), dtype=np.int16))
    first.burn()
    burnt = reporter.collect()["processes"]["worker"]["cpu_ms_per_audio_s"]
    assert burnt == pytest.approx(1000.0 * BURN_CPU_S / AUDIO_S, rel=0.15)  # 150 ms per s of audio

    second = _Busy()  # restarted: another pid, its own CPU count from 0
    _manage(watched, second)
    first.stop()
    watched.audio.write(np.zeros(round(AUDIO_S * RATE), dtype=np.int16))
    assert "cpu_ms_per_audio_s" not in reporter.collect()["processes"]["worker"]  # no mark of its own yet
    watched.audio.write(np.zeros(round(AUDIO_S * RATE), dtype=np.int16))
    second.burn()
    assert reporter.collect()["processes"]["worker"]["cpu_ms_per_audio_s"] == pytest.approx(burnt, rel=0.15)
    assert set(reporter._marks) == {"supervisor", "worker"}  # one mark a name: a restart leaves no dead pid's


def test_the_audio_start_time_is_the_wall_time_of_the_first_sample(watched):
    written_ago = 10.0
    watched.audio.write(np.zeros(round(AUDIO_S * RATE), dtype=np.int16), captured_at=time.monotonic() - written_ago)
    snapshot = StatsReporter(watched).collect()
    assert snapshot["audio_start_time"] == pytest.approx(time.time() - written_ago - AUDIO_S, abs=0.05)
    assert snapshot["audio_seconds"] == AUDIO_S


def test_a_stats_file_that_cannot_be_written_is_logged_when_it_starts_and_clears_not_every_minute(
    watched, tmp_path, caplog
):
    """A full or unwritable card: one ERROR a minute for as long as it lasted (measured: 1440 a day)."""
    caplog.set_level("INFO", logger="pipeline.stats")
    reporter = StatsReporter(watched)
    (tmp_path / "stats.tmp").mkdir()  # where the file is made before it replaces the last one
    for _ in range(3):
        reporter.report()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]  # not 3
    assert len(errors) == 1 and "cannot write" in errors[0].getMessage()
    (tmp_path / "stats.tmp").rmdir()
    reporter.report()
    reporter.report()
    assert [r.getMessage() for r in caplog.records if "written again" in r.getMessage()] == [
        f"{tmp_path / 'stats.json'} written again"
    ]
    assert json.loads((tmp_path / "stats.json").read_text())["audio_seconds"] == 0


def test_the_stats_file_is_written_at_each_report_and_the_log_line_hourly_first_and_at_stop(
    watched, tmp_path, caplog, monkeypatch
):
    """The JSON line was about 2.6 kB a minute: 96 % of the journal's bytes."""
    caplog.set_level("INFO", logger="pipeline.stats")
    monkeypatch.setattr("pipeline.stats.LOG_INTERVAL", 0.5)
    reporter = StatsReporter(watched)

    def logged() -> int:
        return sum(r.getMessage().startswith("stats {") for r in caplog.records)

    reporter.report()
    assert logged() == 1  # the first, soon after the start
    watched.audio.write(np.zeros(RATE, dtype=np.int16))
    reporter.report()
    assert logged() == 1
    assert json.loads((tmp_path / "stats.json").read_text())["audio_seconds"] == 1  # written all the same
    time.sleep(0.5)
    reporter.report()
    assert logged() == 2
    reporter.report(log_it=True)  # at stop
    assert logged() == 3
