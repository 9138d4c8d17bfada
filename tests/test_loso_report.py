"""Leave-one-source-out folds run one at a time add up to one report, and only for one recipe;
a retrain of some models keeps the figures of the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.training import card, loso
from models.training.data import Clip
from models.training.loso import calibration_hours, with_earlier_folds
from models.training.train import kept_figures

METHOD = "train without every clip of one source"
ONE_SECOND = {"wave": {"window_samples": 16000}}
TWO_SECONDS = {"wave": {"window_samples": 32000}}


def report(recipe: dict, *sources: str) -> dict:
    return {"method": METHOD, "recipe": recipe, "sources": {s: {"recall": 0.5} for s in sources}}


def test_a_fold_of_the_same_recipe_is_added_to_the_earlier_ones(tmp_path: Path):
    earlier = tmp_path / "loso.json"
    earlier.write_text(json.dumps(report(TWO_SECONDS, "belize", "elp")))
    merged = with_earlier_folds(report(TWO_SECONDS, "elp", "us8k"), earlier)
    assert sorted(merged["sources"]) == ["belize", "elp", "us8k"]


def test_folds_of_another_recipe_are_dropped(tmp_path: Path):
    earlier = tmp_path / "loso.json"
    earlier.write_text(json.dumps(report(ONE_SECOND, "belize", "elp")))
    assert sorted(with_earlier_folds(report(TWO_SECONDS, "us8k"), earlier)["sources"]) == ["us8k"]
    assert with_earlier_folds(report(TWO_SECONDS, "us8k"), tmp_path / "none.json")["sources"] == {
        "us8k": {"recall": 0.5}
    }


def test_a_model_not_retrained_keeps_its_figures_and_window_counts(tmp_path: Path):
    last = {
        "models": {"wave": {"keras_val": {"auc": 0.97}}, "mel_fine": {"keras_val": {"auc": 0.96}}},
        "data": {"16000_samples": {"train_windows": 10}, "32000_samples": {"train_windows": 11}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(last))
    kept = kept_figures(tmp_path, ["wave"])
    assert kept == {"models": {"wave": {"keras_val": {"auc": 0.97}}}, "data": {"16000_samples": {"train_windows": 10}}}
    assert kept_figures(tmp_path / "absent", []) == {"models": {}, "data": {}}


def test_the_card_names_the_folds_not_run_for_the_recipe():
    partial = {**report(TWO_SECONDS, "belize"), "gunshot_sources": ["belize", "elp"]}
    (line, _) = card._folds_not_run(partial)
    assert "elp" in line and "--held-out elp" in line and "belize" not in line
    assert card._folds_not_run({**partial, "gunshot_sources": ["belize"]}) == []


def test_each_fold_says_how_much_background_chose_its_vote(tmp_path: Path):
    validation = {"validation": {"calibration_stream": {"background_hours": 10.557}}}
    (tmp_path / "ensemble.json").write_text(json.dumps(validation))
    hours = calibration_hours(tmp_path)
    assert hours == 10.557
    assert card._calibration({"calibration_background_hours": hours}) == "10.6 h"
    assert "one mixture" in card._calibration({"recall": 0.5})


def test_a_recalibrated_fold_never_sees_its_held_out_source_and_is_scored_on_all_of_it(monkeypatch, tmp_path):
    clips = [
        Clip(f"{source}{label}{fold}", label, "gunshot" if label else "knock", source, source, fold, np.zeros(1))
        for source in ("a", "b", "c")
        for label in (0, 1)
        for fold in ("train", "val")
    ]
    calibrated_on, scored_on = {}, {}
    monkeypatch.setattr(loso, "load_clips", lambda manifest, cache: clips)
    monkeypatch.setattr(loso, "recalibrate_clips", lambda kept, fold: calibrated_on.update({fold.name: kept}))

    def held_out_figures(fold: Path, held: list[Clip]) -> dict:
        scored_on[fold.name] = held
        return {"ensemble": {}}

    monkeypatch.setattr(loso, "held_out_figures", held_out_figures)
    monkeypatch.setattr(loso, "recipe_of", lambda fold: {})
    monkeypatch.setattr(loso, "REPORT", tmp_path / "reports" / "loso.json")
    loso.main(tmp_path / "manifest.csv", tmp_path / "runs", calibrate_only=True)
    for source in ("a", "b", "c"):
        fold = f"without-{source}"
        assert {c.source for c in calibrated_on[fold]} == {"a", "b", "c"} - {source}
        assert len(calibrated_on[fold]) == 8
        assert {c.source for c in scored_on[fold]} == {source} and len(scored_on[fold]) == 4
