"""The per-process figures that `profile`, `stats` and the status line show."""

from __future__ import annotations

import time

import pytest

from pipeline.metrics import LatencyTracker, StatsTable
from pipeline.profile import format_table
from tests.conftest import own_run_id


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
