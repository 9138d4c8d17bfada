"""Do thresholds chosen on sources the models never heard carry over to another new source?
(nested leave-one-source-out: is a new source's recall lost in the ranking or in how the vote's
threshold is chosen? models/README.md, recipe ablations)

    python -m models.training.transfer [--runs models/runs/ablation-ours] [--manifest ...]

Needs the leave-one-source-out folds in RUNS/without-SOURCE (`python -m models.training.ablations
ours --source S` for each S, or `python cli.py train --leave-one-source-out --out RUNS`). For each
held-out source with other clips, four rules scored on all of its clips, each fold scored by the
models trained without its source:
- validation: the fold's own vote, chosen on the validation fold for the false-alert target (what
  leave-one-source-out reports);
- validation_best_f1: the fused vote with the best F1 on that validation fold;
- others_target / others_best_f1: the same two choices made on the other held-out sources' clips,
  each scored by its own fold. The held-out source's clips are never scored to choose, but the
  other folds' models were trained on them: not a clean nest (that needs a fold per pair).
Writes models/reports/transfer.json.
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
from models.training.data import Clip, load_clips
from models.training.evaluate import FUSED_GRID, binary_figures, choose_thresholds, clip_window_probs, detections
from models.training.train import VOTES_CHOICES

REPORT = Path("models/reports/transfer.json")

log = logging.getLogger("transfer")


@dataclasses.dataclass
class Scored:
    """Clips with their window scores from one fold's models."""

    clips: list[Clip]
    probs: list[dict]
    durations: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.label for c in self.clips], dtype=bool)


def scored(fold: Path, clips: list[Clip]) -> Scored:
    probs, durations = clip_window_probs(fold, clips)
    return Scored(clips, probs, durations)


def pooled(parts: list[Scored]) -> Scored:
    return Scored(
        [c for p in parts for c in p.clips],
        [x for p in parts for x in p.probs],
        np.concatenate([p.durations for p in parts]),
    )


def ranked_folds(runs: Path, clips: list[Clip], at_least: int = 1) -> dict[str, Path]:
    """The folds runs/without-SOURCE of the sources with gunshots and other clips to rank them
    against; exits naming what is missing when fewer than `at_least`."""
    with_others = {c.source for c in clips if not c.label}
    sources = sorted(s for s in {c.source for c in clips if c.label} & with_others if (runs / f"without-{s}").is_dir())
    if len(sources) < at_least:
        raise SystemExit(f"{runs}: need folds without-SOURCE for {at_least} or more of {sorted(with_others)}")
    return {s: runs / f"without-{s}" for s in sources}


def outcome(rule: VoteRule, data: Scored) -> dict:
    figures = binary_figures(data.labels, detections(data.probs, rule))
    return {"rule": rule.describe(), **{k: figures[k] for k in ("recall", "precision", "f1", "fp")}}


def best_f1_fused(data: Scored, thresholds: dict[str, float], votes_required: int) -> VoteRule:
    """The fused vote (FUSED_GRID) with the best clip F1 on `data`; ties: the higher threshold."""
    rules = [VoteRule(thresholds, votes_required, t) for t in FUSED_GRID]
    f1 = [binary_figures(data.labels, detections(data.probs, rule))["f1"] for rule in rules]
    return rules[len(f1) - 1 - int(np.argmax(f1[::-1]))]


def target_rule(data: Scored) -> VoteRule:
    """The rule the shipped calibration would choose on `data` (the false-alert target, no stream)."""
    return choose_thresholds(data.probs, data.clips, data.durations, VOTES_CHOICES)[0]


def transferred(held: dict[str, Scored], validation: dict[str, Scored], shipped: dict[str, VoteRule]) -> dict:
    """Per held-out source: the four rules (module docstring) scored on its clips, with the
    false-positive clips each costs on the fold's validation clips."""
    result = {}
    for source, data in held.items():
        others = pooled([d for s, d in held.items() if s != source])
        own = shipped[source]
        rules = {
            "validation": own,
            "validation_best_f1": best_f1_fused(validation[source], own.thresholds, own.votes_required),
            "others_target": target_rule(others),
            "others_best_f1": best_f1_fused(others, own.thresholds, own.votes_required),
        }
        val = validation[source]
        result[source] = {
            name: {**outcome(rule, data), "validation_fp": outcome(rule, val)["fp"]} for name, rule in rules.items()
        }
        log.info("%s: %s", source, json.dumps({n: r["f1"] for n, r in result[source].items()}))
        result[source]["validation_other_clips"] = int((~val.labels).sum())
    return result


def folds_command(doc: str, default_runs: Path) -> tuple[Path, list[Clip]]:
    """The command line of a script that scores leave-one-source-out folds: the --runs folder and
    the clips of --manifest."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=default_runs)
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args.runs, load_clips(args.manifest, args.runs / "cache")


def main() -> None:
    runs, clips = folds_command(__doc__, Path("models/runs/ablation-ours"))
    folds = ranked_folds(runs, clips, at_least=2)
    sources = list(folds)
    held = {s: scored(folds[s], [c for c in clips if c.source == s]) for s in sources}
    validation = {s: scored(folds[s], [c for c in clips if c.fold == "val" and c.source != s]) for s in sources}
    shipped = {s: load_ensemble(folds[s]).rule() for s in sources}
    report = {
        "method": __doc__.split("\n\n")[2].strip(),
        "command": f"python -m models.training.transfer --runs {runs}",
        "sources": transferred(held, validation, shipped),
    }
    REPORT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
