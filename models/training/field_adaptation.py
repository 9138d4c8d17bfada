"""Does labelling what a detector kept at a site make it hear that site better? A simulation on a
source held out of training, standing in for a new site.

    python -m models.training.field_adaptation --source belize [--seed-offset N] [--with-background]
        [--site-vote] [--out DIR]

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
With --site-vote, SITE_VAL_SHARE of the labelled clips' split groups go to the validation fold
instead (as `export-labels --fold val` writes them), so the site's own clips take part in choosing
thresholds and vote; also reported: the before fold with its vote chosen again that way
(`python cli.py train --calibrate-only`), no training, and for both folds what a threshold set on
the site's own validation clips alone would hear of the later stretch (site_threshold).
Writes models/reports/field_adaptation.json. The early stretch is a curated collection, not
hours of a site's audio: a device keeping NEAR_MISSES_PER_HOUR would take the hours reported to
keep as many clips, if its near misses came that often.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from inference.model import load_ensemble
from inference.vote import VoteRule
from models.training import loso, train
from models.training.data import SAMPLE_RATE, Clip, load_clips
from models.training.evaluate import binary_figures, clip_scores, clip_window_probs, detections
from pipeline.config import StorageConfig

DEPLOYED_SHARE = 0.5  # of the source's split groups: the early stretch
SITE_VAL_SHARE = 0.4  # of the labelled clips' split groups, with --site-vote: the site's validation clips
SPLIT_SEED = 20261206
NEAR_MISSES_PER_HOUR = StorageConfig().near_misses_per_hour
REPORT = Path("models/reports/field_adaptation.json")

log = logging.getLogger("field_adaptation")


def stretches(clips: list[Clip], source: str, seed: int = SPLIT_SEED) -> tuple[list[Clip], list[Clip]]:
    """The source's clips cut into an early and a later stretch."""
    return split_by_group([c for c in clips if c.source == source], DEPLOYED_SHARE, seed)


def split_by_group(clips: list[Clip], share: float, seed: int = SPLIT_SEED) -> tuple[list[Clip], list[Clip]]:
    """`share` of the clips' split groups with gunshots and of those without, picked (seeded), and
    the rest: no group on both sides."""
    gun_groups = {c.split_group for c in clips if c.label}
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for groups in (sorted(gun_groups), sorted({c.split_group for c in clips} - gun_groups)):
        picked = rng.permutation(len(groups))[: round(share * len(groups))]
        chosen.update(groups[i] for i in picked)
    return [c for c in clips if c.split_group in chosen], [c for c in clips if c.split_group not in chosen]


def kept_by_device(models_dir: Path, clips: list[Clip]) -> list[Clip]:
    """The clips in which a window passed one model's own threshold: an event or a near miss."""
    thresholds = load_ensemble(models_dir).rule().thresholds
    probs, _ = clip_window_probs(models_dir, clips)
    kept = detections(probs, VoteRule(thresholds, votes_required=1))
    return [c for c, keep in zip(clips, kept, strict=True) if keep]


def device_labels(before_dir: Path, early: list[Clip], background: bool) -> tuple[list[Clip], list[Clip]]:
    """The clips the device kept, and those a person labels: the kept ones and, with `background`,
    the early stretch's other clips that were not kept."""
    kept = kept_by_device(before_dir, early)
    kept_ids = {id(c) for c in kept}
    return kept, kept + [c for c in early if background and not c.label and id(c) not in kept_ids]


def as_site_clips(clips: list[Clip], source: str, fold: str = "train") -> list[Clip]:
    """Labelled clips as `export-labels` writes them: the site's own source, in the given fold."""
    return [dataclasses.replace(c, source=f"{source}_site", fold=fold) for c in clips]


def site_folds(labelled: list[Clip], source: str, site_vote: bool) -> list[Clip]:
    """The labelled clips as the site's source: all in training, or with --site-vote,
    SITE_VAL_SHARE of their groups in validation."""
    if not site_vote:
        return as_site_clips(labelled, source)
    val, rest = split_by_group(labelled, SITE_VAL_SHARE)
    return as_site_clips(rest, source) + as_site_clips(val, source, "val")


def revoted(models_dir: Path, out: Path, clips: list[Clip]) -> Path:
    """A copy of the exported models with thresholds and vote chosen again on the clips' validation
    fold (`python cli.py train --calibrate-only`); made in a scratch folder first, so an
    interrupted run is not taken for a finished one."""
    if not out.exists():
        scratch = out.with_name(out.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(models_dir, scratch, ignore=shutil.ignore_patterns("cache", "keras"))
        train.recalibrate_clips(clips, scratch)
        scratch.rename(out)
    return out


def site_threshold(models_dir: Path, site_val: list[Clip], later: list[Clip]) -> dict:
    """The fused clip score just above the site's highest-scoring other clip among its validation
    clips, and what it hears of the later stretch: what a threshold set on the site's own sound
    could buy (minutes of it here: no false-alert rate per hour can be told from them)."""
    val_scores = clip_scores(clip_window_probs(models_dir, site_val)[0])
    others = [s for s, c in zip(val_scores, site_val, strict=True) if not c.label]
    if not others:
        return {"fused_threshold": None, "note": "no other clip among the site's validation clips"}
    bar = float(max(others))
    later_scores = clip_scores(clip_window_probs(models_dir, later)[0])
    labels = np.array([c.label for c in later], dtype=bool)
    return {"fused_threshold": round(bar, 6), **binary_figures(labels, later_scores > bar)}


def main(
    manifest: Path,
    out: Path,
    source: str,
    epochs: int = loso.LOSO_EPOCHS,
    seed_offset: int = 0,
    background: bool = False,
    site_vote: bool = False,
) -> dict:
    """Both folds at train.SEED + `seed_offset` (another offset: the run-to-run spread, reported
    as SOURCE+OFFSET). `out` should be new for each offset: its folds' folders are the same for every
    offset, so another offset trains over the models of the one before."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seed = train.SEED
    train.SEED = seed + seed_offset
    try:
        result = _simulate(manifest, out, source, epochs, background, site_vote)
    finally:
        train.SEED = seed
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report["method"] = __doc__.split("\n\n", 2)[2].strip()
    run = source + (f"+{seed_offset}" if seed_offset else "") + (" with background" if background else "")
    run += " site vote" if site_vote else ""
    report.setdefault("sources", {})[run] = result
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    return result


def _simulate(manifest: Path, out: Path, source: str, epochs: int, background: bool, site_vote: bool) -> dict:
    clips = load_clips(manifest, out / "cache")
    early, later = stretches(clips, source)
    others = [c for c in clips if c.source != source]
    copies = {kind: max(1, count // 2) for kind, count in train.COPIES.items()}  # as the LOSO folds
    variant = ("-background" if background else "") + ("-site-vote" if site_vote else "")
    before_dir, after_dir = out / f"{source}-before", out / f"{source}-after{variant}"
    train.train_models(others, before_dir, epochs, copies, f"field-{source}-before")  # kept when trained before
    kept, labelled = device_labels(before_dir, early, background)
    site = site_folds(labelled, source, site_vote)
    extra = {}
    if site_vote:
        before_revoted = revoted(before_dir, out / f"{source}-before{variant}", others + site)
        extra["before_site_vote"] = loso.held_out_figures(before_revoted, later)
        extra["site_validation"] = _counts([c for c in site if c.fold == "val"])
    train.train_models(others + site, after_dir, epochs, copies, f"field-{source}-after{variant}")
    if site_vote:
        site_val = [c for c in site if c.fold == "val"]
        extra["site_threshold"] = {
            fold: site_threshold(models_dir, site_val, later)
            for fold, models_dir in (("before", before_dir), ("after", after_dir))
        }
    labelled_seconds = sum(c.audio.shape[0] for c in labelled) / SAMPLE_RATE
    result = {
        "early_stretch": _counts(early),
        "kept_and_labelled": {**_counts(labelled), "seconds": round(labelled_seconds, 1)},
        "device_hours_to_keep_as_many": round(len(kept) / NEAR_MISSES_PER_HOUR, 1),
        "later_stretch": _counts(later),
        "before": loso.held_out_figures(before_dir, later),
        "after": loso.held_out_figures(after_dir, later),
        **extra,
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
    parser.add_argument("--site-vote", action="store_true", help="Choose thresholds and vote on site clips too.")
    args = parser.parse_args()
    main(args.manifest, args.out, args.source, args.epochs, args.seed_offset, args.with_background, args.site_vote)


if __name__ == "__main__":
    cli()
