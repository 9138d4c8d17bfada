"""A site's own threshold: the aggregator logs each window's fused score (no audio) and how long it
listened; `site-thresholds` replays them into false alerts per hour and labelled gunshots heard per
candidate threshold, and proposes one; `detector.fused_threshold` puts it in use."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from inference.eventlog import EVENTS, EventLog
from inference.model import load_ensemble
from inference.site_thresholds import MIN_HOURS, event_count, replay
from pipeline.config import Config, ConfigError, override
from tests.detector_run import ROOT
from tests.test_aggregator import HOP, RATE, WINDOW, built, decision

WINDOW_S, MERGE_GAP_S = WINDOW / RATE, 2.0
HOURS = 48.0
NOISY = 0.6  # a fused score the site's background often reaches
RARE = 0.92


def site_scores() -> list[tuple[float, float]]:
    """48 events' worth of NOISY windows (1 an hour: over the 0.5 target), two RARE events, and a
    labelled gunshot's windows at 0.999, in time order."""
    scores = [(hour * 3600.0 + k * 0.5, NOISY) for hour in range(int(HOURS)) for k in range(3)]
    scores += [(1800.0, RARE), (1800.5, RARE), (7 * 3600 + 1800.0, RARE), (20000.0, 0.999), (20000.5, 0.999)]
    return sorted(scores)


GUNSHOT = (20000.0, 20002.5, {"wave": 0.999, "mel_fine": 0.99, "mel_coarse": 0.97})


def test_windows_closer_than_a_window_and_the_merge_gap_are_one_event():
    starts = np.array([0.0, 0.5, 1.0, 1.0 + WINDOW_S + MERGE_GAP_S + 0.5, 100.0])
    assert event_count(starts, WINDOW_S, MERGE_GAP_S) == 3
    assert event_count(np.array([]), WINDOW_S, MERGE_GAP_S) == 0


def test_the_replay_counts_false_alerts_per_hour_and_proposes_the_lowest_threshold_under_the_target():
    result = replay(site_scores(), HOURS * 3600, [GUNSHOT], WINDOW_S, MERGE_GAP_S)
    costs = {c.threshold: c for c in result.costs}
    assert costs[0.5].false_alerts == 50 and costs[0.5].false_alerts_per_hour == round(50 / HOURS, 3)
    assert costs[0.7].false_alerts == 2 and costs[0.95].false_alerts == 0  # the gunshot is not a false alert
    assert costs[0.95].gunshots_heard == 1 and costs[0.999].gunshots_heard == 0
    assert result.proposed == 0.7 and result.hours == HOURS and result.gunshots == 1


def test_no_threshold_is_proposed_before_a_day_of_listening():
    early = replay(site_scores(), (MIN_HOURS - 1) * 3600, [], WINDOW_S, MERGE_GAP_S)
    assert early.proposed is None and early.costs[0].false_alerts == 51  # no label: the gunshot counts too


def test_the_aggregator_logs_scores_of_complete_windows_and_the_time_listened(tmp_path):
    config = override(Config(), {"storage.data_dir": str(tmp_path)})
    with built(config) as (agg, audio, _):
        audio.write(np.zeros(RATE * 10, dtype=np.int16))
        agg.handle(decision(0, False))  # fused 0.14: listened, not logged
        agg.handle(decision(1, True))  # fused 0.86: logged
        agg.handle(decision(2, True, degraded=True))  # a model missing: neither
        agg.write_scores(time.monotonic())  # within the minute: nothing written yet
        assert EventLog(tmp_path).window_scores(0.0) == ([], 0.0)
        agg.write_scores(time.monotonic(), final=True)
    (scores, listened) = EventLog(tmp_path).window_scores(0.0)
    assert [round(score, 2) for _, score in scores] == [0.86] and listened == 2 * HOP / RATE
    assert abs(scores[0][0] - (time.time() - 10 + HOP / RATE)) < 2.0  # wall time of window 1's start


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_site_thresholds_replays_the_event_log_and_says_what_to_set(tmp_path):
    log = EventLog(tmp_path)
    start = time.time() - HOURS * 3600
    log.add_scores([(start + t, score) for t, score in site_scores()], HOURS * 3600, start)
    event = log.open_event(start + GUNSHOT[0], 0.99, GUNSHOT[2], {}, False)
    log.close_event(event, start + GUNSHOT[1], 0.99, GUNSHOT[2], False, 2)
    log.set_label(EVENTS, event, "gunshot", None)
    shown = cli("site-thresholds", "--data-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "proposed: [detector] fused_threshold = 0.7 " in shown.stdout
    assert "now: 2 of 3 models" in shown.stdout
    replayed = json.loads(cli("site-thresholds", "--data-dir", str(tmp_path), "--format", "json").stdout)
    assert replayed["proposed"] == 0.7 and replayed["gunshots"] == 1
    missing = cli("site-thresholds", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "holds no events.sqlite" in missing.stderr


def test_a_fused_threshold_replaces_the_stored_vote_and_excludes_votes_required():
    config = override(Config(), {"detector.fused_threshold": 0.7})
    with built(config) as (agg, _, _):
        assert agg.box.rule.describe() == "mean log-odds of 3 models >= logit(0.7)"
    assert load_ensemble("").rule(0, 0.0).fused_threshold is None  # the shipped 2 of 3
    with pytest.raises(ConfigError, match=r"detector\.fused_threshold"):
        override(Config(), {"detector.fused_threshold": 0.7, "detector.votes_required": 2})


def test_analyze_uses_the_fused_threshold(tmp_path):
    negative = ROOT / "assets" / "negatives" / "wesnoth-explosion.flac"
    assert "no gunshot" in cli("analyze", str(negative)).stdout
    config = tmp_path / "config.toml"
    config.write_text("[detector]\nfused_threshold = 0.000001\n")
    assert "GUNSHOT" in cli("analyze", "--config", str(config), str(negative)).stdout
