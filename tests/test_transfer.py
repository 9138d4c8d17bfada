"""Nested leave-one-source-out: each held-out source is scored with rules chosen without its clips."""

from __future__ import annotations

import numpy as np

from inference.vote import VoteRule, sigmoid
from models.training import card, transfer
from models.training.data import Clip

MODELS = ("wave", "mel_fine", "mel_coarse")


def source(name: str, shot_logits: list[float], other_logits: list[float]) -> transfer.Scored:
    """Clips of one window each, all three models giving the clip's logit."""
    clips, probs = [], []
    for label, logits in ((1, shot_logits), (0, other_logits)):
        for i, x in enumerate(logits):
            clips.append(Clip(f"{name}{label}{i}.flac", label, "c", name, f"g{i}", "train", np.zeros(1, np.float32)))
            probs.append({m: np.array([sigmoid(x)]) for m in MODELS})
    return transfer.Scored(clips, probs, np.full(len(clips), 5.0))


def test_best_f1_fused_puts_the_threshold_between_the_classes():
    data = source("a", [4.0, 5.0, 6.0], [-3.0, 1.0, 2.0])
    rule = transfer.best_f1_fused(data, dict.fromkeys(MODELS, 0.5), 2)
    assert transfer.outcome(rule, data)["f1"] == 1.0
    # ties (every threshold in (2, 4]): the highest
    assert 3.9 < np.log(rule.fused_threshold / (1 - rule.fused_threshold)) <= 4.0 + 1e-9


def test_a_source_is_scored_with_rules_chosen_on_the_others():
    held = {
        "a": source("a", [4.0, 5.0], [-3.0, 2.0]),  # a threshold in (2, 4] separates a
        "b": source("b", [0.5, 1.5], [-3.0, -2.0]),  # b needs one in (-2, 0.5]
    }
    shipped = {s: VoteRule(dict.fromkeys(MODELS, 0.5), 2) for s in held}
    result = transfer.transferred(held, held, shipped)
    assert result["a"]["validation_best_f1"]["f1"] == 1.0  # its own clips as validation: perfect
    # b's rule (chosen with b's clips only) misses none of a's shots but passes a's 2.0 clip
    assert result["a"]["others_best_f1"] == {**result["a"]["others_best_f1"], "recall": 1.0, "fp": 1}
    # a's rule (above 2) misses both of b's shots
    assert result["b"]["others_best_f1"]["recall"] == 0.0


def test_the_card_shows_each_rule_with_its_validation_cost():
    held = {"a": source("a", [4.0, 5.0], [-3.0, 2.0]), "b": source("b", [0.5, 1.5], [-3.0, -2.0])}
    shipped = {s: VoteRule(dict.fromkeys(MODELS, 0.5), 2) for s in held}
    report = {"command": "python -m models.training.transfer", "sources": transfer.transferred(held, held, shipped)}
    lines = card._transfer(report)
    row = next(line for line in lines if line.startswith("| a |"))
    assert row.count("validation ") == len(card.TRANSFER_RULES)
    assert row.endswith("| 2 |")  # a's validation (its own clips here) has two other clips
