"""Does labelling what a detector kept at a site make it hear that site better? A simulation on a
source held out of training, standing in for a new site.

    python -m models.training.field_adaptation --source belize [--seed-offset N] [--with-background] [--out DIR]

The source's split groups are cut in two (seeded; groups with gunshots and without cut alike): an
early stretch that the detector hears once deployed, and a later one it is judged on.
  1. before: the leave-one-source-out fold (the shipped recipe, its schedule) trained without any
     of the source, scored on the later stretch;
  2. the before fold runs over the early stretch (the runtime path): the clips where a model
     (or the vote) called a window a gunshot are what a device keeps (events and near misses,
     inference/near_miss.py) and a person labels (`python cli.py label`); here the manifest's
     labels stand in for that person;
  3. after: the fold trained again with those clips in its training fold (as `export-labels`
     would add them: a source of their own), thresholds and vote chosen as before on the other
     sources' validation clips only, scored on the same later stretch.
With --with-background, the early stretch's other clips that were not kept are labelled too (the
site's background, as a person would label a sample of it), so the site is not all gunshots.
Writes models/reports/field_adaptation.json. The early stretch is a curated collection, not
hours of a site's audio: a device keeping NEAR_MISSES_PER_HOUR would take the hours reported to
keep as many clips, if its near misses came that often.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from inference.model import load_ensemble
from inference.vote import VoteRule
from models.training import loso, train
from models.training.data import SAMPLE_RATE, Clip, load_clips
from models.training.evaluate import clip_window_probs, detections
from pipeline.config import StorageConfig

DEPLOYED_SHARE = 0.5  # of the source's split groups: the early stretch
SPLIT_SEED = 20261206
NEAR_MISSES_PER_HOUR = StorageConfig().near_misses_per_hour
REPORT = Path("models/reports/field_adaptation.json")

log = logging.getLogger("field_adaptation")


def stretches(clips: list[Clip], source: str, seed: int = SPLIT_SEED) -> tuple[list[Clip], list[Clip]]:
    """The source's clips cut by split group into an early and a later stretch: DEPLOYED_SHARE of
    the groups with gunshots and of those without go early."""
    own = [c for c in clips if c.source == source]
    gun_groups = {c.split_group for c in own if c.label}
    rng = np.random.default_rng(seed)
    early: set[str] = set()
    for groups in (sorted(gun_groups), sorted({c.split_group for c in own} - gun_groups)):
        picked = rng.permutation(len(groups))[: round(DEPLOYED_SHARE * len(groups))]
        early.update(groups[i] for i in picked)
    return [c for c in own if c.split_group in early], [c for c in own if c.split_group not in early]


def kept_by_device(models_dir: Path, clips: list[Clip]) -> list[Clip]:
    """The clips in which a window passed one model's own threshold: an event or a near miss."""
    thresholds = load_ensemble(models_dir).rule().thresholds
    probs, _ = clip_window_probs(models_dir, clips)
    kept = detections(probs, VoteRule(thresholds, votes_required=1))
    return [c for c, keep in zip(clips, kept, strict=True) if keep]


def as_site_clips(clips: list[Clip], source: str) -> list[Clip]:
    """Labelled clips as `export-labels` writes them: the site's own source, in the training fold."""
    return [dataclasses.replace(c, source=f"{source}_site", fold="train") for c in clips]


def main(
    manifest: Path,
    out: Path,
    source: str,
    epochs: int = loso.LOSO_EPOCHS,
    seed_offset: int = 0,
    background: bool = False,
) -> dict:
    """Both folds at train.SEED + `seed_offset` (another offset: the run-to-run spread, reported
    as SOURCE+OFFSET). `out` must be new for each offset: the window cache does not key the seed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seed = train.SEED
    train.SEED = seed + seed_offset
    try:
        result = _simulate(manifest, out, source, epochs, background)
    finally:
        train.SEED = seed
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report["method"] = __doc__.split("\n\n", 2)[2].strip()
    run = source + (f"+{seed_offset}" if seed_offset else "") + (" with background" if background else "")
    report.setdefault("sources", {})[run] = result
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    return result


def _simulate(manifest: Path, out: Path, source: str, epochs: int, background: bool) -> dict:
    clips = load_clips(manifest, out / "cache")
    early, later = stretches(clips, source)
    others = [c for c in clips if c.source != source]
    copies = {kind: max(1, count // 2) for kind, count in train.COPIES.items()}  # as the LOSO folds
    after = f"{source}-after" + ("-background" if background else "")
    before_dir, after_dir = out / f"{source}-before", out / after
    if not (before_dir / "ensemble.json").exists():  # resumable: the fold without the source is kept
        train.train_models(others, before_dir, epochs, copies, f"field-{source}-before")
    kept = kept_by_device(before_dir, early)
    kept_ids = {id(c) for c in kept}
    labelled = kept + [c for c in early if background and not c.label and id(c) not in kept_ids]
    train.train_models(others + as_site_clips(labelled, source), after_dir, epochs, copies, f"field-{after}")
    labelled_seconds = sum(c.audio.shape[0] for c in labelled) / SAMPLE_RATE
    result = {
        "early_stretch": _counts(early),
        "kept_and_labelled": {**_counts(labelled), "seconds": round(labelled_seconds, 1)},
        "device_hours_to_keep_as_many": round(len(kept) / NEAR_MISSES_PER_HOUR, 1),
        "later_stretch": _counts(later),
        "before": loso.held_out_figures(before_dir, later),
        "after": loso.held_out_figures(after_dir, later),
    }
    log.info("%s: %s", source, json.dumps({k: result[k] for k in ("kept_and_labelled", "later_stretch")}))
    return result


def _counts(clips: list[Clip]) -> dict[str, int]:
    return {"gunshot_clips": sum(c.label for c in clips), "other_clips": sum(not c.label for c in clips)}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="The gunshot source that stands in for a new site.")
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("models/runs/field"))
    parser.add_argument("--epochs", type=int, default=loso.LOSO_EPOCHS)
    parser.add_argument("--seed-offset", type=int, default=0, help="Train at train.SEED plus this (with a new --out).")
    parser.add_argument("--with-background", action="store_true", help="Label the early stretch's background too.")
    args = parser.parse_args()
    main(args.manifest, args.out, args.source, args.epochs, args.seed_offset, args.with_background)


if __name__ == "__main__":
    cli()
