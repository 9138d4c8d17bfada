"""Leave-one-source-out: our best proxy for recordings never seen (other microphones, places, guns).

    python cli.py train --leave-one-source-out [--manifest ...] [--out models/runs/loso] [--epochs N]

For each source with gunshots: train the three models on every other source's training fold (a
shorter schedule than the shipped set), choose thresholds and vote on their validation fold as the
shipped set does, then run all of the held-out source's clips (both folds) through the runtime
path. Per source: the ensemble's recall, and precision / F1 / false positives where the source
also has non-gun clips; each model alone at its threshold. Writes loso.json in the output folder
and models/reports/loso.json for the model card.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from inference.model import load_ensemble
from models.training.data import Clip, load_clips
from models.training.evaluate import (
    binary_figures,
    clip_scores,
    clip_window_probs,
    detections,
    detections_alone,
    recall_at_false_positives,
    roc_auc,
)
from models.training.train import COPIES, recalibrate_clips, recipe_of, scaled, train_models

LOSO_EPOCHS = 12
REPORT = Path("models/reports/loso.json")

log = logging.getLogger("loso")


def gunshot_sources(clips: list[Clip]) -> list[str]:
    return sorted({c.source for c in clips if c.label})


def held_out_figures(models_dir: Path, held: list[Clip], probs: list[dict] | None = None) -> dict:
    """The trained fold's ensemble and each model on the held-out clips, through the runtime path
    (`probs`: their clip_window_probs, when the caller has them already)."""
    rule = load_ensemble(models_dir).rule()
    if probs is None:
        probs, _ = clip_window_probs(models_dir, held)
    labels = np.array([c.label for c in held], dtype=bool)
    detected = detections(probs, rule)
    scores = clip_scores(probs)
    thresholds = rule.thresholds
    figures = {
        "calibration_background_hours": calibration_hours(models_dir),
        "gunshot_clips": int(labels.sum()),
        "other_clips": int((~labels).sum()),
        "vote": rule.describe(),
        "thresholds": thresholds,
        "votes_required": rule.votes_required,
        "fused_threshold": rule.fused_threshold,
        "ensemble": {
            **binary_figures(labels, detected),
            "clip_auc": round(roc_auc(labels, scores), 4),
            "recall_at_false_positive_clips": recall_at_false_positives(labels, scores),
        },
        "per_model": {},
    }
    for model in thresholds:
        figures["per_model"][model] = binary_figures(labels, detections_alone(probs, model, thresholds[model]))
    return figures


def calibration_hours(fold: Path) -> float:
    """Hours of validation background the fold's thresholds were chosen on (3.5: one mixture, as
    every fold scored before 2026-12-06; 10.6: three)."""
    validation = json.loads((Path(fold) / "ensemble.json").read_text())["validation"]
    return validation["calibration_stream"]["background_hours"]


def main(
    manifest: Path,
    out: Path,
    epochs: int = LOSO_EPOCHS,
    calibrate_only: bool = False,
    sources: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    copies_scale: int = 1,
    retrain: bool = False,
) -> dict:
    """With `calibrate_only`, the folds trained before in `out` get a new vote choice and figures.
    Each fold makes half the augmented windows of the shipped recipe (times `copies_scale`); a model
    a fold trained before with the same settings is kept unless `retrain`."""
    copies = {kind: max(1, count // 2) for kind, count in scaled(COPIES, copies_scale).items()}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clips = load_clips(manifest, out / "cache")
    unknown = sorted(set(sources) - set(gunshot_sources(clips)))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: no gunshots of that source (these have: {gunshot_sources(clips)})")
    results = {}
    for source in sources or gunshot_sources(clips):
        fold_dir = out / f"without-{source}"
        kept = [c for c in clips if c.source != source]
        log.info("leaving out %s: training on %d clips of the other sources", source, len(kept))
        if calibrate_only:
            recalibrate_clips(kept, fold_dir)
        else:
            train_models(kept, fold_dir, epochs, copies, f"loso-{source}", extra=extra, retrain=retrain)
        results[source] = held_out_figures(fold_dir, [c for c in clips if c.source == source])
        log.info("%s held out: %s", source, json.dumps(results[source]["ensemble"]))
    report = {
        "method": "train without every clip of one source (shorter schedule: "
        f"{epochs} epochs, {'half' if copies_scale == 1 else f'{copies_scale}/2 times'} the augmented copies), "
        "thresholds chosen on the other sources' "
        "validation fold, evaluated on all of the held-out source's clips",
        "command": "python cli.py train --leave-one-source-out"
        + "".join(f" --extra-negatives {group}" for group in extra)
        + (f" --copies-scale {copies_scale}" if copies_scale != 1 else "")
        + (" --calibrate-only" if calibrate_only else ""),
        "recipe": recipe_of(out / f"without-{next(iter(results))}"),
        "gunshot_sources": gunshot_sources(clips),
        "sources": results,
    }
    report = with_earlier_folds(report, REPORT)
    text = json.dumps(report, indent=1)
    (out / "loso.json").write_text(text)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    return report


def with_earlier_folds(report: dict, earlier: Path) -> dict:
    """Folds run one at a time (`--held-out SOURCE`) add up: the earlier report's other sources are
    kept when they were trained with the same method and recipe, and dropped otherwise."""
    if not earlier.exists():
        return report
    last = json.loads(earlier.read_text())
    if (last.get("method"), last.get("recipe")) != (report["method"], report["recipe"]):
        return report
    return {**report, "sources": dict(sorted({**last["sources"], **report["sources"]}.items()))}
