"""What sets the vote's threshold on a new source? For each leave-one-source-out fold, the fused
clip score with the waveform model's log-odds weighted down (WAVE_WEIGHTS; 1: the shipped fusion),
scored on the held-out source's clips and on the fold's validation clips: how the held-out clips
rank (AUC), and how many of their shots pass the zero-false-positive threshold of the validation
clips (the highest-scoring validation negative: where the false-alert target puts a fused vote,
which allows none in the validation fold's 0.3 h of negatives), with the validation negatives
that set it, and the recall if the threshold sat just above the next of them. Then the vote the
shipped calibration chooses (k of n or fused) on the validation clips with their top 0, 1, 2
negatives left out: how much of a new source's recall one validation clip decides.

    python -m models.training.fusion [--runs models/runs/loso] [--manifest ...]

Needs the folds RUNS/without-SOURCE (`python cli.py train --leave-one-source-out`, or
`python -m models.training.ablations VARIANT --source S`). Merges its figures into
models/reports/fusion.json under the runs folder's name.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from inference.vote import logit
from models.training.evaluate import binary_figures, clip_scores, roc_auc
from models.training.transfer import Scored, folds_command, outcome, ranked_folds, scored, target_rule

REPORT = Path("models/reports/fusion.json")
WAVE_WEIGHTS = (1.0, 0.5, 0.25, 0.0)
TOP_NEGATIVES = 3

log = logging.getLogger("fusion")


def weighted(wave_weight: float, models: list[str]) -> dict[str, float]:
    return {m: wave_weight if m == "wave" else 1.0 for m in models}


def at_validation_threshold(held: Scored, validation: Scored, weights: dict[str, float]) -> dict:
    """The held-out clips at the fused threshold no validation negative reaches."""
    held_scores, val_scores = clip_scores(held.probs, weights), clip_scores(validation.probs, weights)
    negatives = [c for c in validation.clips if not c.label]
    negative_scores = val_scores[~validation.labels]
    threshold = negative_scores.max()
    figures = binary_figures(held.labels, held_scores > threshold)
    top = np.argsort(negative_scores)[::-1][:TOP_NEGATIVES]
    return {
        "held_out_clip_auc": round(roc_auc(held.labels, held_scores), 4),
        "validation_clip_auc": round(roc_auc(validation.labels, val_scores), 4),
        "threshold_log_odds": round(float(logit(threshold)), 2),
        **{k: figures[k] for k in ("recall", "f1", "fp")},
        "validation_recall": round(float(np.mean(val_scores[validation.labels] > threshold)), 4),
        "set_by": [f"{negatives[i].category} {negatives[i].path} ({logit(negative_scores[i]):.2f})" for i in top],
        # the held-out recall if the threshold sat under the next validation negatives
        "recall_allowing": {
            str(n): round(float(np.mean(held_scores[held.labels] > negative_scores[top[n]])), 4)
            for n in range(1, min(TOP_NEGATIVES, len(top)))
        },
    }


def without_top_negatives(validation: Scored, n: int) -> Scored:
    """The validation clips without the `n` negatives of the highest fused clip score."""
    scores = clip_scores(validation.probs)
    negatives = np.flatnonzero(~validation.labels)
    dropped = set(negatives[np.argsort(scores[negatives])[::-1][:n]].tolist())
    kept = [i for i in range(len(validation.clips)) if i not in dropped]
    return Scored([validation.clips[i] for i in kept], [validation.probs[i] for i in kept], validation.durations[kept])


def vote_without_top_negatives(held: Scored, validation: Scored) -> dict:
    """The vote the shipped calibration chooses on the validation clips (no mixture:
    transfer.target_rule), and again with their top 1, 2 ... negatives left out, on the held-out clips."""
    return {str(n): outcome(target_rule(without_top_negatives(validation, n)), held) for n in range(TOP_NEGATIVES)}


def main() -> None:
    runs, clips = folds_command(__doc__, Path("models/runs/loso"))
    sources = {}
    for source, fold in ranked_folds(runs, clips).items():
        held = scored(fold, [c for c in clips if c.source == source])
        validation = scored(fold, [c for c in clips if c.fold == "val" and c.source != source])
        models = list(held.probs[0])
        sources[source] = {
            "fused": {str(w): at_validation_threshold(held, validation, weighted(w, models)) for w in WAVE_WEIGHTS},
            "vote": vote_without_top_negatives(held, validation),
        }
        log.info("%s: %s", source, json.dumps(sources[source]))
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report[runs.name] = {"command": f"python -m models.training.fusion --runs {runs}", "sources": sources}
    REPORT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
