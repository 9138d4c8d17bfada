"""The fused score with the waveform model weighted down, at the validation's zero-false-positive threshold."""

from __future__ import annotations

import numpy as np

from inference.vote import logit, sigmoid
from models.training import fusion
from models.training.data import Clip
from models.training.evaluate import clip_scores
from models.training.transfer import Scored


def scored(logits: list[dict[str, float]], labels: list[int]) -> Scored:
    """Clips of one window each with the given log-odds per model."""
    clips = [
        Clip(f"c{i}.flac", label, "knock" if not label else "gunshot", "s", f"g{i}", "val", np.zeros(1, np.float32))
        for i, label in enumerate(labels)
    ]
    probs = [{m: np.array([sigmoid(x)]) for m, x in clip.items()} for clip in logits]
    return Scored(clips, probs, np.full(len(clips), 5.0))


def test_clip_scores_weigh_each_model_s_log_odds():
    probs = [{"wave": sigmoid(np.array([4.0, 0.0])), "mel_fine": sigmoid(np.array([-2.0, 1.0]))}]
    np.testing.assert_allclose(logit(clip_scores(probs)), [1.0])  # the best window's mean: (4 - 2) / 2
    np.testing.assert_allclose(logit(clip_scores(probs, {"wave": 0.0, "mel_fine": 1.0})), [1.0])  # mel's best
    np.testing.assert_allclose(logit(clip_scores(probs, {"wave": 1.0, "mel_fine": 3.0})), [0.75])  # (0 + 3) / 4


def test_the_held_out_shots_are_counted_above_the_highest_validation_negative():
    # the waveform model keeps the validation knock down; the mel model ranks the held-out clips
    validation = scored([{"wave": -6.0, "mel": 5.0}, {"wave": 4.0, "mel": 4.0}], [0, 1])
    held = scored([{"wave": 0.0, "mel": 3.0}, {"wave": -1.0, "mel": -2.0}], [1, 0])
    both = fusion.at_validation_threshold(held, validation, fusion.weighted(1.0, ["wave", "mel"]))
    assert (both["threshold_log_odds"], both["recall"], both["fp"]) == (-0.5, 1.0, 0)
    mel_only = fusion.at_validation_threshold(held, validation, fusion.weighted(0.0, ["wave", "mel"]))
    assert (mel_only["threshold_log_odds"], mel_only["recall"], mel_only["held_out_clip_auc"]) == (5.0, 0.0, 1.0)
    assert mel_only["validation_recall"] == 0.0  # the validation shot (4) is under the knock (5)
    assert mel_only["set_by"][0] == "knock c0.flac (5.00)"
    assert mel_only["recall_allowing"] == {}  # one validation negative: no next one


def test_the_recall_allowing_the_next_validation_negatives_through():
    validation = scored([{"m": 5.0}, {"m": 2.0}, {"m": 1.0}, {"m": 6.0}], [0, 0, 0, 1])
    held = scored([{"m": 3.0}, {"m": 1.5}, {"m": 0.5}], [1, 1, 1])
    figures = fusion.at_validation_threshold(held, validation, {"m": 1.0})
    assert figures["recall"] == 0.0
    assert figures["recall_allowing"] == {"1": round(1 / 3, 4), "2": round(2 / 3, 4)}


def test_the_card_shows_each_fold_and_weight():
    from models.training import card

    validation = scored([{"wave": -6.0, "mel": 5.0}, {"wave": 4.0, "mel": 4.0}], [0, 1])
    held = scored([{"wave": 0.0, "mel": 3.0}, {"wave": -1.0, "mel": -2.0}], [1, 0])
    figures = fusion.at_validation_threshold(held, validation, fusion.weighted(1.0, ["wave", "mel"]))
    vote = {"recall": 0.5, "f1": 0.6, "fp": 1, "rule": "2 of 3"}
    entry = {"fused": {"1.0": figures}, "vote": {"0": vote, "1": vote}}
    lines = card._fusion({"loso": {"command": "-", "sources": {"s": entry}}})
    assert "| loso | s | 1.0 | 1.000 | 1.000 / 1.000 / 0 | 1.000 | knock c0.flac (-0.50) |  |" in lines
    assert "| loso | s | 0.500 / 0.600 / 1 (2 of 3) | 0.500 / 0.600 / 1 (2 of 3) |" in lines


def test_the_top_validation_negatives_are_left_out_by_fused_score():
    validation = scored([{"m": 5.0}, {"m": 2.0}, {"m": 1.0}, {"m": 6.0}], [0, 0, 0, 1])
    kept = fusion.without_top_negatives(validation, 2)
    assert [c.path for c in kept.clips] == ["c2.flac", "c3.flac"]  # the 5.0 and 2.0 negatives are gone
    assert len(kept.durations) == 2
    assert fusion.without_top_negatives(validation, 0).clips == validation.clips


def test_a_held_out_shot_level_with_the_top_validation_negative_is_not_heard():
    """The threshold is one no validation negative passes: a shot only as loud as the loudest
    negative (scores saturate, log-odds are clipped) would not pass it either."""
    validation = scored([{"m": 2.0}, {"m": 5.0}], [0, 1])
    held = scored([{"m": 2.0}, {"m": 3.0}], [1, 1])
    assert fusion.at_validation_threshold(held, validation, {"m": 1.0})["recall"] == 0.5
