"""`cli.py evaluate` scores a labelled manifest through the runtime path and writes a report."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from cli import STREAM_SEED
from inference.offline import DetectedEvent
from inference.vote import VoteRule
from models.training.data import SAMPLE_RATE, Clip
from models.training.evaluate import (
    HOP,
    binary_figures,
    detections_alone,
    false_alert_allowances,
    hindsight,
    recall_at_false_positives,
    recall_within,
    source_figures,
    two_in_a_row,
)
from models.training.streaming import (
    NOISE_KINDS,
    SLOT_S,
    InsertedShot,
    StreamScores,
    available_memory,
    build_mixture,
    insert_shot,
    poisson_interval,
    recall_and_false_alerts,
    score_events,
)
from models.training.train import CALIBRATION_SEEDS
from tests.conftest import SHARED_DATA
from tests.detector_run import ROOT
from tests.shared_data import validation_rows

CLIPS_PER_LABEL = 4
STREAM_SLOTS = 2


def test_evaluate_writes_metrics_and_worst_clips(tmp_path):
    chosen = validation_rows(CLIPS_PER_LABEL)
    for row in chosen:
        row["path"] = str(SHARED_DATA / row["path"])
    small = tmp_path / "manifest.csv"
    with small.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
        writer.writeheader()
        writer.writerows(chosen)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "evaluate",
            str(small),
            "--out",
            str(tmp_path / "report"),
            "--stream-hours",
            str(STREAM_SLOTS * SLOT_S / 3600),
            "--summary",
            str(tmp_path / "streaming.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["clips"] == {"gunshot": CLIPS_PER_LABEL, "other": CLIPS_PER_LABEL, "fold": "val"}
    ensemble = report["ensemble"]
    assert ensemble["tp"] + ensemble["fn"] == CLIPS_PER_LABEL
    other_hours = sum(soundfile.info(r["path"]).duration for r in chosen if r["label"] == "other") / 3600
    assert ensemble["negative_hours"] == round(other_hours, 3)  # what false alerts per hour are per
    assert ensemble["false_alerts_per_hour"] == round(ensemble["fp"] / other_hours, 3)
    assert len(report["worst_misses"]) == ensemble["fn"]
    assert (tmp_path / "report" / "roc.csv").read_text().startswith("threshold,false_positive_rate")
    assert report["confusion"]["gunshot"] == {"gunshot": ensemble["tp"], "other": ensemble["fn"]}
    assert (tmp_path / "report" / "confusion.csv").read_text().startswith("true/decided,gunshot,other")
    assert {"roc.png", "precision_recall.png"} <= {p.name for p in (tmp_path / "report").iterdir()}
    stream = json.loads((tmp_path / "streaming.json").read_text())
    assert stream["shots"] == STREAM_SLOTS and "missed" not in stream and "inserted" not in stream
    full = json.loads((tmp_path / "report" / "streaming.json").read_text())
    assert len(full["missed"]) == STREAM_SLOTS - stream["detected"]
    assert [s["peak_s"] // SLOT_S for s in full["inserted"]] == list(range(STREAM_SLOTS))
    assert stream["hindsight"]["allowances"] == [0]
    votes = {"k_of_n", "fused", "fused_two_in_a_row", "wave", "mel_fine", "mel_coarse"}
    assert set(stream["hindsight"]) == {"note", "allowances", *votes}


def _clip(audio: np.ndarray, label: int, path: str) -> Clip:
    return Clip(path, label, "gunshot" if label else "rain", "test", path, "val", audio.astype(np.float32))


def _shot(rng: np.random.Generator) -> np.ndarray:
    """A decaying noise burst with its peak 0.1 s in."""
    shot = np.zeros(SAMPLE_RATE // 2)
    burst = rng.standard_normal(SAMPLE_RATE // 4) * np.exp(-np.arange(SAMPLE_RATE // 4) / 400)
    shot[SAMPLE_RATE // 10 : SAMPLE_RATE // 10 + burst.shape[0]] = burst
    return shot


def test_mixture_places_shots_at_their_recorded_peaks_and_is_deterministic():
    rng = np.random.default_rng(1)
    negatives = [_clip(rng.standard_normal(SAMPLE_RATE * 3) * 0.01, 0, f"bg{i}") for i in range(3)]
    shots = [_clip(_shot(rng), 1, f"shot{i}") for i in range(2)]
    mixture = build_mixture(negatives, shots, hours=3 * SLOT_S / 3600, seed=7)
    assert mixture.duration_s == pytest.approx(3 * SLOT_S)
    assert len(mixture.shots) == 3
    for slot, shot in enumerate(mixture.shots):
        assert slot * SLOT_S < shot.start_s <= shot.peak_s < shot.end_s < (slot + 1) * SLOT_S
        if shot.snr_db >= 20:  # a loud shot is the loudest sample of its slot
            lo, hi = round(shot.start_s * SAMPLE_RATE), round(shot.end_s * SAMPLE_RATE)
            assert (lo + np.argmax(np.abs(mixture.audio[lo:hi]))) / SAMPLE_RATE == pytest.approx(shot.peak_s, abs=1e-3)
    assert mixture.segments[0].start_s == 0.0
    assert all(a.start_s < b.start_s for a, b in zip(mixture.segments, mixture.segments[1:], strict=False))
    assert {s.what for s in mixture.segments} <= {"test/rain"} | {f"synthetic {k} noise" for k in NOISE_KINDS}
    again = build_mixture(negatives, shots, hours=3 * SLOT_S / 3600, seed=7)
    assert np.array_equal(mixture.audio, again.audio) and mixture.shots == again.shots


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_insert_shot_scales_to_the_requested_snr(snr_db):
    rng = np.random.default_rng(2)
    bed = (rng.standard_normal(SAMPLE_RATE * 4) * 0.05).astype(np.float32)
    before = bed.copy()
    shot = _shot(rng)
    lo, hi = insert_shot(bed, shot, 2 * SAMPLE_RATE, snr_db)
    added = bed[lo:hi] - before[lo:hi]
    peak = int(np.argmax(np.abs(added)))
    tenth = SAMPLE_RATE // 10
    shot_rms = np.sqrt(np.mean(added[peak - tenth : peak + tenth] ** 2))
    bed_rms = np.sqrt(np.mean(before[SAMPLE_RATE * 3 // 2 : SAMPLE_RATE * 5 // 2] ** 2))
    assert lo + peak == 2 * SAMPLE_RATE
    assert 20 * np.log10(shot_rms / bed_rms) == pytest.approx(snr_db, abs=0.01)


def test_score_events_counts_hits_false_alerts_and_delay():
    shots = [
        InsertedShot(peak_s=10.0, start_s=9.9, end_s=10.4, snr_db=0.0, path="a", source="s"),
        InsertedShot(peak_s=40.0, start_s=39.9, end_s=40.4, snr_db=10.0, path="b", source="s"),
        InsertedShot(peak_s=70.0, start_s=69.9, end_s=70.4, snr_db=10.0, path="c", source="t"),
    ]
    events = [
        DetectedEvent(start=9.5, end=11.0, confidence=0.9, votes={}),  # shot a, complete 0.5 s after its peak
        DetectedEvent(start=25.0, end=26.0, confidence=0.9, votes={}),  # nothing there: a false alert
        DetectedEvent(start=40.5, end=42.0, confidence=0.9, votes={}),  # shot b's tail (within TAIL_S)
        DetectedEvent(start=67.0, end=68.9, confidence=0.9, votes={}),  # over 1 s before shot c: not it
    ]
    scores = score_events(events, shots, duration_s=90.0, window_s=1.0)
    assert (scores["detected"], scores["event_recall"], scores["false_alerts"]) == (2, round(2 / 3, 4), 2)
    background_h = (90.0 - 3 * 1.5) / 3600
    assert scores["background_hours"] == round(background_h, 4)
    assert scores["false_alerts_per_hour"] == round(2 / background_h, 4)
    low, high = scores["false_alerts_per_hour_ci95"]
    assert low < scores["false_alerts_per_hour"] < high
    assert scores["delay_s"]["p50"] == pytest.approx((0.5 + 1.5) / 2)
    assert scores["recall_per_snr_db"] == {"0": {"recall": 1.0, "shots": 1}, "10": {"recall": 0.5, "shots": 2}}
    assert scores["recall_per_source"] == {"s": {"recall": 1.0, "shots": 2}, "t": {"recall": 0.0, "shots": 1}}
    assert scores["missed"] == ["c"]
    assert scores["false_alert_starts_s"] == [25.0, 67.0]


def test_a_vote_rule_s_events_on_a_stream_are_merged_before_they_are_counted():
    """As the runtime's EventTracker: adjacent loud windows are one false alert, and an event that
    ends before a shot begins is a false alert, not the shot."""
    starts = np.arange(0.0, 120.0, 0.5)
    probs = np.full((starts.shape[0], 1), 0.01)
    probs[(starts >= 20.0) & (starts <= 21.0)] = 0.99  # three windows of one loud sound
    probs[starts == 60.0] = 0.99  # ends at 61.0, a second before the shot
    shot = InsertedShot(peak_s=62.1, start_s=62.0, end_s=62.5, snr_db=0.0, path="a", source="s")
    stream = StreamScores(probs, ["m"], starts, 1.0, [shot], 0.03)
    assert recall_and_false_alerts(stream, VoteRule({"m": 0.5}, 1), merge_gap_s=2.0) == (0.0, 2)


@pytest.mark.parametrize(("hours", "allowed"), [(1.9, [0]), (3.5, [0, 1]), (10.6, [0, 5])])
def test_the_hindsight_allows_the_false_alerts_the_target_allows_rounded_down(hours, allowed):
    assert false_alert_allowances(hours) == allowed


def test_a_model_alone_hears_a_clip_where_one_window_reaches_its_threshold():
    probs = [{"m": np.array([0.1, 0.5])}, {"m": np.array([0.49, 0.2])}, {"m": np.array([0.9])}]
    assert detections_alone(probs, "m", 0.5).tolist() == [True, False, True]


def test_precision_without_a_detection_is_zero_and_false_positives_stay_with_their_source():
    assert binary_figures(np.array([1, 1, 0]), np.zeros(3, dtype=bool))["precision"] == 0.0
    clips = [
        Clip(f"{source}{i}", label, "gunshot" if label else "knock", source, source, "val", np.zeros(1))
        for i, (source, label) in enumerate([("a", 1), ("a", 0), ("a", 0), ("b", 0), ("b", 1)])
    ]
    figures = {s: f for s, (f, _) in source_figures(clips, np.array([True, True, True, False, False])).items()}
    assert (figures["a"]["false_positive_clips"], figures["a"]["recall"]) == (2, 1.0)
    assert (figures["b"]["false_positive_clips"], figures["b"]["recall"]) == (0, 0.0)


def test_the_calibration_mixtures_are_not_the_streaming_proxy_s():
    """The proxy's figures would re-measure the choice itself (it already re-uses the clips)."""
    assert STREAM_SEED not in CALIBRATION_SEEDS


def test_poisson_interval_matches_the_exact_garwood_bounds():
    from scipy import stats

    assert poisson_interval(0, 2.0) == (0.0, pytest.approx(-np.log(0.025) / 2.0))  # exp(-mu) = 0.025
    low, high = poisson_interval(10, 1.0)
    assert stats.poisson.sf(9, low) == pytest.approx(0.025) and stats.poisson.cdf(10, high) == pytest.approx(0.025)


def test_recall_at_false_positives_counts_the_negatives_a_threshold_lets_through():
    labels = np.array([1, 1, 1, 1, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.7, 0.5, 0.2, 0.8, 0.6, 0.1])
    curve = recall_at_false_positives(labels, scores)
    assert curve == {"0": 0.25, "1": 0.5, "2": 1.0}  # the third negative (0.1) is below every shot
    assert recall_within(curve, 0) == 0.25 and recall_within(curve, 1) == 0.5 and recall_within(curve, 10) == 1.0
    tied = recall_at_false_positives(labels, np.array([0.8, 0.8, 0.5, 0.2, 0.8, 0.6, 0.1]))
    assert tied["0"] == 0.0 and tied["1"] == 0.5  # a tie with a negative is not a free pass


def test_a_held_out_source_is_scored_at_the_other_sources_threshold():
    from models.training.baselines import held_out_sources

    def clip(source: str, label: int, fold: str) -> Clip:
        category = "gunshot" if label else "dog_bark"
        return Clip(f"{source}{label}{fold}", label, category, source, source, fold, np.zeros(1))

    kinds = (("a", 1, "train"), ("a", 0, "train"), ("b", 1, "train"), ("b", 1, "val"), ("b", 0, "train"))
    clips = [clip(*kind) for kind in kinds]
    scores = np.array([0.8, 0.2, 0.5, 0.9, 0.1])
    held = held_out_sources(clips, scores)
    # b held out: a's training clips put the threshold at 0.8, which b's 0.5 shot misses
    assert held["b"]["threshold"] == 0.8
    assert (held["b"]["tp"], held["b"]["fn"], held["b"]["fp"]) == (1, 1, 0)
    # a held out: b's training clips put it at 0.5
    assert held["a"]["threshold"] == 0.5
    assert (held["a"]["recall"], held["a"]["precision"], held["a"]["clip_auc"]) == (1.0, 1.0, 1.0)


def test_the_prototype_left_one_source_out_never_trains_on_the_held_out_source(monkeypatch, tmp_path):
    from models.training import baselines

    def clip(source: str, label: int, fold: str) -> Clip:
        category = "gunshot" if label else "dog_bark"
        return Clip(f"{source}{label}{fold}", label, category, source, source, fold, np.zeros(1))

    kinds = (("a", 1, "train"), ("a", 0, "val"), ("b", 1, "train"), ("b", 1, "val"), ("b", 0, "train"))
    clips = [clip(*kind) for kind in kinds]
    trained_on = {}

    def fit(train, seed, minutes, epochs):
        held = next(s for s in "ab" if all(c.source != s for c in train))
        trained_on[held] = sorted(c.path for c in train)
        return {}, {"epochs": epochs}

    def window_probs(models, held):  # one window per clip, every model sure of the label
        return np.repeat([[float(c.label)] for c in held], 3, axis=1), np.arange(len(held))

    monkeypatch.setattr(baselines, "fit_prototype", fit)
    monkeypatch.setattr(baselines, "prototype_window_probs", window_probs)
    monkeypatch.setattr(baselines, "PROTOTYPE_LOSO_RUNS", tmp_path)
    report = baselines.prototype_held_out(clips, seed=0, epochs={"wave_1d": 2})
    assert trained_on == {"a": ["b0train", "b1train"], "b": ["a1train"]}  # never a validation clip
    b = report["b"]
    assert (b["gunshot_clips"], b["other_clips"], b["tp"], b["fp"]) == (2, 1, 2, 0)  # every fold held out
    assert b["rolled"]["clip_auc"] == 1.0 and b["per_model_clip_auc"]["mel_128x64"] == 1.0
    assert report["a"]["training"] == {"epochs": {"wave_1d": 2}}
    assert json.loads((tmp_path / "without-a" / "training.json").read_text()) == {"epochs": {"wave_1d": 2}}


def test_rolled_clips_move_the_shot_and_keep_the_audio():
    from models.training.evaluate import ROLL_S, rolled

    audio = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    audio[SAMPLE_RATE // 2] = 1.0  # a shot peaking at 0.5 s, as half of the belize clips
    clips = [Clip(f"c{i}", 1, "gunshot", "s", "g", "val", audio) for i in range(20)]
    turned = rolled(clips)
    peaks = np.array([np.argmax(c.audio) for c in turned]) / SAMPLE_RATE - 0.5
    assert np.all((ROLL_S[0] <= peaks) & (peaks <= ROLL_S[1])) and peaks.std() > 0.2
    assert all(np.array_equal(np.sort(c.audio), np.sort(audio)) for c in turned)  # only turned
    assert [np.argmax(c.audio) for c in rolled(clips)] == [np.argmax(c.audio) for c in turned]


def test_hindsight_takes_the_lowest_threshold_within_each_false_alert_allowance():
    """Three shots scored 0.99, 0.9 and 0.6 by both models, a loud background window at 0.95 and
    another at 0.7: no false alert allows only the first shot, one allows the second too."""
    models = ["a", "b"]
    starts = np.arange(0.0, 300.0, 0.5)
    probs = np.full((starts.shape[0], len(models)), 0.01)
    shots = []
    for slot, score in enumerate((0.99, 0.9, 0.6)):
        peak = slot * SLOT_S + 10.2
        probs[(starts <= peak) & (starts + 1.0 > peak)] = score
        shots.append(InsertedShot(peak, peak - 0.1, peak + 0.4, 10.0, f"shot{slot}", "s"))
    probs[starts == 200.0] = 0.95
    probs[starts == 250.0] = 0.7
    bounds = hindsight(StreamScores(probs, models, starts, 1.0, shots, 0.08), merge_gap_s=2.0, allowances=[0, 1])
    for score, threshold in (("fused", "fused"), ("a", "a"), ("b", "b")):
        assert bounds[score]["0"]["event_recall"] == round(1 / 3, 4) and bounds[score]["0"]["false_alerts"] == 0
        assert 0.95 < bounds[score]["0"]["thresholds"][threshold] < 0.951
        assert bounds[score]["1"]["event_recall"] == round(2 / 3, 4) and bounds[score]["1"]["false_alerts"] == 1
        assert 0.7 < bounds[score]["1"]["thresholds"][threshold] < 0.701
    # k of n on the calibration's grid: the lowest grid thresholds above 0.95 and 0.7
    assert bounds["k_of_n"]["0"]["thresholds"] == {"a": 0.97, "b": 0.97}
    assert bounds["k_of_n"]["1"]["thresholds"] == {"a": 0.8, "b": 0.8}
    assert bounds["k_of_n"]["1"]["event_recall"] == round(2 / 3, 4)
    # each shot holds through its two windows, each loud background window is alone: every shot is
    # heard with no false alert, at a threshold just above the quiet background's 0.01
    held = bounds["fused_two_in_a_row"]["0"]
    assert held["event_recall"] == 1.0 and held["false_alerts"] == 0
    assert 0.01 < held["thresholds"]["fused"] < 0.0101
    assert bounds["fused_two_in_a_row"]["1"] == held


def test_two_windows_in_a_row_are_one_hop_apart_never_across_joined_mixtures():
    hop_s = HOP / SAMPLE_RATE
    starts = np.array([0.0, hop_s, 2 * hop_s, 40.0, 40.0 + hop_s])  # the fourth starts the next mixture
    probs = np.array([[0.9, 0.9], [0.99, 0.99], [0.6, 0.6], [0.99, 0.99], [0.01, 0.01]])
    held = two_in_a_row(StreamScores(probs, ["a", "b"], starts, 1.0, [], 0.01))
    np.testing.assert_allclose(held.probs[:, 0], [0.9, 0.6, 0.0, 0.01, 0.0])
    assert held.models == ["fused"]


def test_the_card_shows_the_hindsight_bounds_and_how_often_the_background_repeats():
    from models.training import card

    report = {
        "note": "proxy",
        "hours": 8.0,
        "shots": 960,
        "event_recall": 0.44,
        "recall_per_snr_db": {"0": {"recall": 0.2, "shots": 192}},
        "recall_per_source": {"belize": {"recall": 0.5, "shots": 260}, "kaggle_guns": {"recall": 0.0, "shots": 250}},
        "false_alerts": 0,
        "background_hours": 7.0,
        "false_alerts_per_hour": 0.0,
        "false_alerts_per_hour_ci95": [0.0, 0.527],
        "delay_s": {"p50": 0.6, "p99": 1.9},
        "background_clips": 331,
        "background_clip_plays": 7613,
    }
    best = {"vote": "2 of 3 models, each at its own threshold", "event_recall": 0.45, "false_alerts": 0}
    report["hindsight"] = {
        "note": "chosen on the mixture",
        "allowances": [0, 3],
        "k_of_n": {"0": {**best, "thresholds": {"wave": 0.97, "mel_fine": 0.995}}},
        "wave": {"3": {**best, "vote": "1 of 1 models", "thresholds": {"wave": 0.9999}, "event_recall": 0.3}},
    }
    text = "\n".join(card._streaming(report))
    assert "--stream-hours 8 " in text and "heard about 23 times" in text
    assert "per source of the shots (shots): belize 0.500 (260), kaggle_guns 0.000 (250)" in text
    assert "| vote | at most 0 false alerts | at most 3 false alerts |" in text
    assert "| k of n, the calibration's threshold grid | 0.450 (2 of 3: wave 0.97, mel_fine 0.995) | - |" in text
    assert "| wave alone, any threshold | - | 0.300 (wave 0.9999) |" in text
    del report["hindsight"], report["background_clip_plays"]
    assert "hindsight" not in "\n".join(card._streaming(report)).lower()


@pytest.mark.skipif(available_memory() is None, reason="no /proc/meminfo: the check cannot tell")
def test_a_streaming_proxy_too_long_for_the_memory_is_refused_before_anything_runs(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("")  # never read: the memory check comes first
    command = [sys.executable, str(ROOT / "cli.py"), "evaluate", str(manifest), "--out", str(tmp_path / "report")]
    result = subprocess.run(
        [*command, "--stream-hours", "100000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "--stream-hours 100000 needs about 205000.9 GB of memory and " in result.stderr
    assert "GB is available: run fewer hours (about " in result.stderr
    assert not (tmp_path / "report").exists()
