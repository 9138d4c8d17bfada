"""A leave-one-source-out fold hears its held-out source's shots over that source's own sounds and
the fold's validation negatives, through the runtime path with the fold's thresholds."""

import json
from pathlib import Path

import numpy as np
import pytest

from inference.model import load_ensemble
from models.training import card
from models.training.data import SAMPLE_RATE, Clip
from models.training.held_out_streaming import NOTE, fold_report, held_out_mixture
from models.training.loso import held_out_figures
from models.training.streaming import SLOT_S, SYNTHETIC, Segment, background_hours_by_source

MODELS = Path(__file__).resolve().parents[1] / "models"


def _clip(source: str, label: int, fold: str, seconds: float = 3.0, seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(round(seconds * SAMPLE_RATE)) * (0.3 if label else 0.01)).astype(np.float32)
    name = f"{source}/{label}/{fold}/{seed}"
    return Clip(name, label, "gunshot" if label else "rain", source, name, fold, audio)


CLIPS = [
    _clip(source, label, fold, seed=i)
    for i, (source, label, fold) in enumerate(
        [
            ("belize", 1, "train"),
            ("belize", 1, "val"),
            ("belize", 0, "train"),
            ("belize", 0, "val"),
            ("esc50", 0, "train"),
            ("esc50", 0, "val"),
            ("elp", 1, "val"),
        ]
    )
]


def test_the_mixture_holds_the_held_out_source_and_the_folds_validation_negatives_only():
    negatives, shots = held_out_mixture(CLIPS, "belize")
    assert sorted((c.source, c.fold) for c in negatives) == [("belize", "train"), ("belize", "val"), ("esc50", "val")]
    assert sorted((c.source, c.fold) for c in shots) == [("belize", "train"), ("belize", "val")]


def test_background_hours_are_told_apart_by_source_and_add_up_to_the_mixture():
    segments = [
        Segment(0.0, 1818.0, "belize/rain"),  # crossfades of 18 s: half of each to either side
        Segment(1800.0, 2718.0, "esc50/dog"),
        Segment(2700.0, 3600.0, f"{SYNTHETIC} pink noise"),
    ]
    assert background_hours_by_source(segments) == {"belize": 0.5025, "esc50": 0.25, SYNTHETIC: 0.2475}


def test_a_fold_is_scored_on_its_held_out_mixture_with_its_own_vote():
    report = fold_report(MODELS, CLIPS, "belize", hours=2 * SLOT_S / 3600, seed=3)
    assert report["shots"] == 2 and report["note"] == NOTE
    assert report["held_out_background_clips"] == 2
    assert set(report["background_hours_by_source"]) <= {"belize", "esc50", SYNTHETIC}
    assert sum(report["background_hours_by_source"].values()) == pytest.approx(2 * SLOT_S / 3600, abs=1e-3)
    assert "missed" not in report and "inserted" not in report
    assert report["hindsight"]["allowances"] == [0]
    assert report["thresholds"] == {m.id: m.threshold for m in load_ensemble(MODELS).models}


def test_the_card_counts_the_false_alerts_heard_in_the_held_out_sources_own_sounds():
    fold = {
        "shots": 480,
        "distinct_shots": 464,
        "event_recall": 0.1,
        "recall_per_snr_db": {"0": {"recall": 0.05, "shots": 96}, "30": {"recall": 0.2, "shots": 96}},
        "false_alerts": 3,
        "background_hours": 3.5,
        "false_alerts_per_hour": 0.857,
        "false_alerts_per_hour_ci95": [0.18, 2.5],
        "false_alerts_by_background": {"belize/rain + esc50/dog": 1, "esc50/dog": 1, "notbelize/dog": 1},
        "background_hours_by_source": {"belize": 2.0, "esc50": 1.5},
        "hindsight": {
            "note": "chosen on this mixture",
            "allowances": [0, 1],
            "k_of_n": {"0": {"event_recall": 0.1}, "1": {"event_recall": 0.3}},
            "fused": {"0": {"event_recall": 0.2}, "1": {"event_recall": 0.25}},
        },
    }
    report = {"command": "python -m models.training.held_out_streaming", "hours": 4.0, "seed": 0, "method": "m"}
    lines = card._held_out_streaming({**report, "sources": {"belize": fold, "us8k": {**fold, "event_recall": 0.3}}})
    (row,) = [line for line in lines if line.startswith("| belize")]
    assert row.endswith("| 1 / 2.000 | 0.200 / 0.300 (N = 1) |") and "480 (464)" in row and "0: 0.050, 30: 0.200" in row
    assert "6 false alerts in 7.0 h of background, 0.86 an hour" in "\n".join(lines)
    assert "mean event recall 0.200" in "\n".join(lines)


def test_a_left_out_folds_figures_say_how_much_background_chose_its_vote():
    figures = held_out_figures(MODELS, [_clip("belize", 1, "val"), _clip("belize", 0, "val", seed=1)])
    assert (
        figures["calibration_background_hours"]
        == json.loads((MODELS / "ensemble.json").read_text())["validation"]["calibration_stream"]["background_hours"]
    )
