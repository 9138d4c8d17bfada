"""A recipe is chosen for each held-out source on the other held-out sources only, its runs grouped."""

from __future__ import annotations

import pytest

from models.training import card, recipe_choice


def ranked(auc: float) -> dict:
    return {"tests": "-", "ranking": {"fused": {"clip_auc": auc}}}


REPORT = {
    "a": {"ours": ranked(0.80), "ours2": ranked(0.90), "long": ranked(0.99), "pcen": ranked(0.5)},
    "b": {"ours": ranked(0.90), "long": ranked(0.70)},
    "c": {"ours": ranked(0.70), "long": ranked(0.75)},
    "kaggle_guns": {"ours": {"tests": "-", "vote": {"recall": 0.1}}},  # shots only: nothing ranked
}


def test_runs_of_one_recipe_are_grouped_and_recipes_missing_a_source_are_left_out():
    aucs = recipe_choice.recipe_aucs(REPORT)
    assert aucs == {
        "ours": {"a": [0.80, 0.90], "b": [0.90], "c": [0.70]},
        "long": {"a": [0.99], "b": [0.70], "c": [0.75]},
    }


def test_each_source_gets_the_recipe_best_on_the_others_even_where_another_is_better_on_it():
    choices = recipe_choice.chosen_on_other_sources(recipe_choice.recipe_aucs(REPORT))
    assert choices["a"]["on_others"] == pytest.approx({"ours": 0.80, "long": 0.725})
    assert choices["a"]["chosen"] == "ours"  # long ranks a best (0.99), but a may not choose
    assert choices["b"]["chosen"] == "long"  # mean of a's runs 0.85 and c 0.70 against 0.99 and 0.75
    assert choices["c"]["chosen"] == "ours"


def test_the_card_shows_every_run_and_each_choice_beside_ours():
    lines = card._recipe_choice(REPORT)
    assert "| ours | 0.800, 0.900 (mean 0.850) | 0.900 | 0.700 |" in lines
    assert "| b | long | 0.775 / 0.870 | 0.700 | 0.900 |" in lines


def test_the_card_warns_when_the_folds_heard_other_windows_than_the_shipped_models():
    shipped = {
        "wave": {"window_samples": 16000},
        "mel_fine": {"window_samples": 32000, "n_fft": 2048, "hop_length": 250, "n_mels": 128},
    }
    older = {**shipped, "mel_fine": {"window_samples": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 64}}
    assert card._other_recipe(shipped, shipped) == []
    (warning, _) = card._other_recipe(older, shipped)
    assert "mel_fine 1 s, n_fft 512 / hop 160 / 64 bands (shipped: 2 s, n_fft 2048" in warning
    assert "wave" not in warning
