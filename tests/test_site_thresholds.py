"""A site's own threshold: the aggregator logs the fused score of each window every model voted on
(no audio) and how long it listened; `site-thresholds` replays them into false alerts per hour and
labelled gunshots heard per candidate threshold, and proposes one; `detector.fused_threshold`
puts it in use."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from inference.eventlog import EVENTS, EventLog, first_whole_hour
from inference.model import load_ensemble
from inference.score_log import STALE_WINDOWS, ScoreLog, model_set
from inference.site_thresholds import MIN_HOURS, event_count, from_event_log, replay
from inference.vote import fused
from pipeline.config import Config, ConfigError, override
from pipeline.messages import Vote
from tests.detector_run import ROOT, cli
from tests.test_aggregator import HOP, RATE, WINDOW, built

WINDOW_S, MERGE_GAP_S = WINDOW / RATE, 2.0
HOURS = 48.0
NOISY = 0.6  # a fused score the site's background often reaches
RARE = 0.92
GUNSHOT = (20000.0, 20002.5)  # a record labelled gunshot: start, end
MODELS = ("wave", "mel_fine", "mel_coarse")


def site_scores() -> tuple[np.ndarray, np.ndarray]:
    """An event's worth of NOISY windows every hour (1 an hour: over the 0.5 target), two RARE events,
    and the labelled gunshot's windows at 0.999, in time order."""
    scores = [(hour * 3600.0 + k * 0.5, NOISY) for hour in range(int(HOURS)) for k in range(3)]
    scores += [(1800.0, RARE), (1800.5, RARE), (7 * 3600 + 1800.0, RARE), (20000.0, 0.999), (20000.5, 0.999)]
    starts, values = zip(*sorted(scores), strict=True)
    return np.array(starts), np.array(values)


def test_windows_closer_than_a_window_and_the_merge_gap_are_one_event():
    apart = WINDOW_S + MERGE_GAP_S  # the next window starts just at the event's end plus the gap: joins it
    starts = np.array([0.0, 0.5, 1.0, 1.0 + apart, 1.0 + 2 * apart + 0.5, 100.0])
    assert event_count(starts, WINDOW_S, MERGE_GAP_S) == 3
    assert event_count(np.array([]), WINDOW_S, MERGE_GAP_S) == 0


def test_the_replay_counts_false_alerts_per_hour_and_proposes_the_lowest_threshold_under_the_target():
    result = replay(*site_scores(), HOURS * 3600, [GUNSHOT], WINDOW_S, MERGE_GAP_S)
    costs = {c.threshold: c for c in result.costs}
    assert costs[0.5].false_alerts == 50 and costs[0.5].false_alerts_per_hour == round(50 / HOURS, 3)
    assert costs[0.7].false_alerts == 2 and costs[0.95].false_alerts == 0  # the gunshot is not a false alert
    assert costs[0.999].gunshots_heard == 1  # its best logged window, 0.999
    assert result.proposed == 0.7 and result.hours == HOURS and result.gunshots == 1


def test_a_window_that_would_join_a_labelled_gunshot_s_event_is_not_a_false_alert():
    before = GUNSHOT[0] - WINDOW_S - MERGE_GAP_S + 0.5  # merges into the gunshot's event
    result = replay(np.array([before]), np.array([0.99]), HOURS * 3600, [GUNSHOT], WINDOW_S, MERGE_GAP_S)
    assert result.costs[0].false_alerts == 0 and result.costs[0].gunshots_heard == 0  # it does not overlap the shot


def test_no_threshold_is_proposed_before_a_day_of_listening_or_with_nothing_listened():
    early = replay(*site_scores(), (MIN_HOURS - 1) * 3600, [], WINDOW_S, MERGE_GAP_S)
    assert early.proposed is None and early.costs[0].false_alerts == 51  # no label: the gunshot counts too
    nothing = replay(np.array([]), np.array([]), 0.0, [], WINDOW_S, MERGE_GAP_S)
    as_json = json.loads(json.dumps(nothing.to_json(), allow_nan=False))
    assert nothing.proposed is None and as_json["costs"][0]["false_alerts_per_hour"] is None


def test_a_site_at_exactly_the_target_gets_a_proposal():
    """The target is "at most 0.5 false alerts an hour": 12 in 24 hours meets it."""
    starts = np.arange(12) * 7200.0 + 100.0
    result = replay(starts, np.full(12, 0.75), MIN_HOURS * 3600, [], WINDOW_S, MERGE_GAP_S)
    assert result.costs[0].false_alerts_per_hour == 0.5
    assert result.proposed == result.costs[0].threshold


def vote(index: int, model: str, p: float) -> Vote:
    return Vote(index, model, p, time.monotonic())


def test_the_aggregator_logs_windows_every_model_voted_on_whatever_the_vote_decided(tmp_path):
    config = override(Config(), {"storage.data_dir": str(tmp_path)})
    with built(config) as (agg, audio, _):
        audio.write(np.zeros(RATE * 10, dtype=np.int16))
        for index, probability in ((0, 0.1), (1, 0.9)):  # fused 0.1: listened only; 0.9: logged
            for model in MODELS:
                agg.log_vote(vote(index, model, probability))
        agg.log_vote(vote(2, "wave", 0.99))  # a model never voted: neither
        agg.write_scores(time.monotonic())  # within the minute: nothing written yet
        assert EventLog(tmp_path).window_scores(0.0, agg.model_set)[2] == 0.0
        agg.write_scores(time.monotonic(), final=True)
    starts, scores, listened = EventLog(tmp_path).window_scores(0.0, model_set(load_ensemble("")))
    assert np.allclose(scores, [0.9]) and listened == 2 * HOP / RATE
    assert abs(starts[0] - (time.time() - 10 + HOP / RATE)) < 2.0  # wall time of window 1's start


def test_windows_whose_last_vote_never_comes_are_forgotten():
    log = ScoreLog(len(MODELS), 0.5, 0.0)
    for index in range(10 * STALE_WINDOWS):
        log.add_vote(index, "wave", 0.1)
    assert len(log.votes) <= 2 * STALE_WINDOWS


def test_site_thresholds_replays_the_event_log_of_the_models_in_use_and_says_what_to_set(tmp_path):
    log = EventLog(tmp_path)
    start = (time.time() - HOURS * 3600) // 3600 * 3600 + 3600  # a whole hour
    starts, scores = site_scores()
    shipped = model_set(load_ensemble(""))
    log.add_scores(list(zip(start + starts, scores, strict=True)), {start: HOURS * 3600}, shipped)
    loud_pair = [(start + 30 * 3600 + 1000.0, 0.96), (start + 30 * 3600 + 1003.0, 0.96)]  # 3 s apart: one event
    log.add_scores(loud_pair, {}, shipped)
    log.add_scores([(start + 100.0, 0.99)], {start: 3600.0}, json.dumps({"wave": "an older version"}))
    event = log.open_event(start + GUNSHOT[0], 0.99, {}, {}, False)
    log.close_event(event, (start + GUNSHOT[0], start + GUNSHOT[1]), 0.99, {}, False, 2)
    log.set_label(EVENTS, event, "gunshot", None)
    shown = cli("site-thresholds", "--data-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "proposed: [detector] fused_threshold = 0.7 " in shown.stdout
    assert "now: 2 of 3 models" in shown.stdout
    rows = shown.stdout.splitlines()
    assert rows[2] == "fused threshold | false alerts | per hour | labelled gunshots heard"
    assert f"{0.7:15g} | {3:12d} | {3 / HOURS:8.3f} | 1" in rows  # two RARE events and the loud pair
    replayed = json.loads(cli("site-thresholds", "--data-dir", str(tmp_path), "--format", "json").stdout)
    assert replayed["proposed"] == 0.7 and replayed["gunshots"] == 1 and replayed["hours"] == HOURS
    at = {cost["threshold"]: cost for cost in replayed["costs"]}
    assert at[0.95]["false_alerts"] == 1  # the loud pair, merged as the detector merges (detector.merge_gap)
    last_day = json.loads(cli("site-thresholds", "--data-dir", str(tmp_path), "--days", "1", "--format", "json").stdout)
    assert last_day["hours"] == 0.0 and last_day["gunshots"] == 0  # all of it began two days ago
    EventLog(tmp_path / "fresh")  # a detector that has not listened yet
    fresh = cli("site-thresholds", "--data-dir", str(tmp_path / "fresh"))
    assert fresh.returncode == 0 and "no proposal yet: 0.0 of 24 hours" in fresh.stdout, fresh.stderr
    missing = cli("site-thresholds", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "holds no events.sqlite" in missing.stderr
    (tmp_path / "no-models.toml").write_text(f'[detector]\nmodels_dir = "{tmp_path / "no-models"}"\n')
    no_models = cli("site-thresholds", "--config", str(tmp_path / "no-models.toml"), "--data-dir", str(tmp_path))
    assert no_models.returncode == 1 and "ensemble.json is missing" in no_models.stderr
    assert "Traceback" not in no_models.stderr


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


def _replayed(starts: list[float], gunshots: list[tuple[float, float | None]]) -> tuple[int, int]:
    """(false alerts, gunshots heard) at the lowest candidate threshold, each window scoring 0.99."""
    result = replay(np.array(starts), np.full(len(starts), 0.99), HOURS * 3600, gunshots, WINDOW_S, MERGE_GAP_S)
    return result.costs[0].false_alerts, result.costs[0].gunshots_heard


def test_a_window_after_a_labelled_shot_within_the_merge_gap_is_part_of_its_event():
    assert _replayed([GUNSHOT[1] + MERGE_GAP_S - 0.5], [GUNSHOT]) == (0, 0)
    assert _replayed([GUNSHOT[1] + MERGE_GAP_S + 0.5], [GUNSHOT]) == (1, 0)


def test_a_window_that_starts_before_a_labelled_shot_and_overlaps_it_hears_it():
    assert _replayed([GUNSHOT[0] - WINDOW_S + 0.5], [GUNSHOT]) == (0, 1)


def test_a_labelled_window_without_an_end_covers_one_window_and_the_merge_gap():
    """Near misses and background samples labelled gunshot are one window long."""
    shot = (GUNSHOT[0], None)
    assert _replayed([GUNSHOT[0] + WINDOW_S + MERGE_GAP_S - 0.5], [shot]) == (0, 0)
    assert _replayed([GUNSHOT[0] + WINDOW_S + MERGE_GAP_S + 0.5], [shot]) == (1, 0)


def test_the_logged_score_is_the_fused_score_not_the_loudest_model():
    log = ScoreLog(len(MODELS), 0.5, 0.0)
    votes = dict(zip(MODELS, (0.99, 0.5, 0.5), strict=True))
    log.add(1000.0, votes)
    ((_, score),) = log.take(0.0, final=True)[0]
    assert score == pytest.approx(fused(list(votes.values()))) and score < 0.9


def test_scores_of_other_versions_of_the_same_models_are_not_replayed(tmp_path):
    ensemble = load_ensemble("")
    retrained = [dataclasses.replace(model, version=model.version + "-before") for model in ensemble.models]
    log = EventLog(tmp_path)
    hour = first_whole_hour(time.time() - 3 * 3600)
    log.add_scores([(hour + 10, 0.99)], {hour: 3600.0}, model_set(dataclasses.replace(ensemble, models=retrained)))
    result = from_event_log(log, hour - 3600, model_set(ensemble), WINDOW_S, MERGE_GAP_S)
    assert result.hours == 0.0 and result.costs[0].false_alerts == 0


def test_a_shot_labelled_in_the_first_partial_hour_is_not_counted_without_its_windows(tmp_path):
    """The replay starts at the first whole hour after --days' cut for the windows and the hours
    (kept per hour), and so for the labelled shots: a shot just after the cut is left out whole,
    not counted as a shot the models never heard."""
    log = EventLog(tmp_path)
    hour = first_whole_hour(time.time() - 30 * 3600)
    since, shot = hour + 600, hour + 660  # the cut 10 minutes into the hour, the shot a minute later
    log.add_scores([(shot, 0.999), (shot + 0.5, 0.999)], {hour: 3600.0, hour + 3600: 24 * 3600.0}, "models")
    event = log.open_event(shot, 0.999, {}, {}, False)
    log.close_event(event, (shot, shot + 2.5), 0.999, {}, False, 2)
    log.set_label(EVENTS, event, "gunshot", None)
    result = from_event_log(log, since, "models", WINDOW_S, MERGE_GAP_S)
    assert (result.gunshots, result.costs[0].gunshots_heard, result.hours) == (0, 0, 24.0)
    from_the_hour = from_event_log(log, hour, "models", WINDOW_S, MERGE_GAP_S)
    assert (from_the_hour.gunshots, from_the_hour.costs[0].gunshots_heard) == (1, 1)


def test_site_thresholds_merges_with_the_configured_merge_gap(tmp_path):
    log = EventLog(tmp_path)
    shot = first_whole_hour(time.time() - 30 * 3600) + 1000.0
    after = shot + 2.5 + 1.0  # a window 1 s after the labelled shot's end
    log.add_scores(
        [(shot, 0.99), (after, 0.99)], {first_whole_hour(shot) - 3600: 30 * 3600.0}, model_set(load_ensemble(""))
    )
    event = log.open_event(shot, 0.99, {}, {}, False)
    log.close_event(event, (shot, shot + 2.5), 0.99, {}, False, 1)
    log.set_label(EVENTS, event, "gunshot", None)
    config = tmp_path / "config.toml"
    for merge_gap, false_alerts in ((0.5, 1), (2.0, 0)):
        config.write_text(f"[detector]\nmerge_gap = {merge_gap}\n")
        shown = cli("site-thresholds", "--config", str(config), "--data-dir", str(tmp_path), "--format", "json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["costs"][0]["false_alerts"] == false_alerts
