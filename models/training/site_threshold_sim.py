"""Would the threshold that `python cli.py site-thresholds` proposes from a site's own score log
keep false alerts under the target on the site's later sound, and what would it hear? A simulation
on the folds of models/training/field_adaptation.py (run with --with-background --site-vote first).

    python -m models.training.site_threshold_sim --source belize --out models/runs/field-belize

The site's validation clips of that run (labelled early-stretch clips that no fold trained on) make
4 hours (LOG_HOURS) of the site's sound: a streaming mixture of its other clips, changed and
repeated, with its shots inserted (models/training/streaming.py). Every window's fused score goes
through the product's replay (inference/site_thresholds.py), the windows on the shots left out as
labelled gunshots are, and its proposal (with no 24-hour wait) is judged on 2 hours (JUDGED_HOURS)
made from the later stretch, beside the fold's own vote. Folds: *before*, trained without the
site; *after*, its --with-background --site-vote fold. Both mixtures reuse minutes of clips: a
proxy for hours of a site. Elp is not run: 9 and 8 other clips are too few to make hours from.
Writes models/reports/site_threshold_sim.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from inference.model import load_ensemble
from inference.score_log import SCORE_FLOOR
from inference.site_thresholds import replay
from inference.vote import VoteRule, fused_scores
from models.training import field_adaptation as fa
from models.training.data import Clip, load_clips
from models.training.evaluate import HOP, MERGE_GAP_S
from models.training.streaming import StreamScores, on_shot, recall_and_false_alerts, stream_scores

LOG_HOURS = 4.0  # of the site's early sound replayed (the product waits for 24)
JUDGED_HOURS = 2.0  # of its later sound
LOG_SEED, JUDGED_SEED = 11, 12
FOLDS = {"before": "{source}-before", "after": "{source}-after-background-site-vote"}
REPORT = Path("models/reports/site_threshold_sim.json")

log = logging.getLogger("site_threshold_sim")


def logged_scores(scores: StreamScores) -> tuple[np.ndarray, np.ndarray]:
    """Start times and fused scores of the windows the score log keeps, those on a shot left out."""
    fused = fused_scores(scores.probs)
    kept = (fused >= SCORE_FLOOR) & ~on_shot(scores)
    return scores.starts_s[kept], fused[kept]


def judged(scores: StreamScores, rule: VoteRule) -> dict:
    recall, false_alerts = recall_and_false_alerts(scores, rule, MERGE_GAP_S)
    return {
        "vote": rule.describe(),
        "event_recall": round(recall, 4),
        "false_alerts": false_alerts,
        "false_alerts_per_hour": round(false_alerts / scores.background_h, 3),
    }


def simulate_fold(models_dir: Path, site_val: list[Clip], later: list[Clip]) -> dict:
    as_val = [dataclasses.replace(c, fold="val") for c in later]
    site_log = stream_scores(models_dir, site_val, HOP, LOG_HOURS, LOG_SEED)
    starts, fused = logged_scores(site_log)
    proposal = replay(starts, fused, site_log.background_h * 3600, [], site_log.window_s, MERGE_GAP_S, min_hours=0.0)
    later_sound = stream_scores(models_dir, as_val, HOP, JUDGED_HOURS, JUDGED_SEED)
    fold_rule = load_ensemble(models_dir).rule()
    result = {"log_hours": round(site_log.background_h, 2), "proposal": proposal.to_json()}
    result["fold_vote"] = judged(later_sound, fold_rule)
    if proposal.proposed is not None:
        site_rule = VoteRule(fold_rule.thresholds, fold_rule.votes_required, proposal.proposed)
        result["site_threshold"] = judged(later_sound, site_rule)
    return result


def main(manifest: Path, out: Path, source: str) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    clips = load_clips(manifest, out / "cache")
    early, later = fa.stretches(clips, source)
    _, labelled = fa.device_labels(out / f"{source}-before", early, background=True)
    site_val = [c for c in fa.site_folds(labelled, source, site_vote=True) if c.fold == "val"]
    result = {fold: simulate_fold(out / name.format(source=source), site_val, later) for fold, name in FOLDS.items()}
    log.info("%s: %s", source, json.dumps(result))
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report["method"] = __doc__.split("\n\n", 2)[2].strip()
    report.setdefault("sources", {})[source] = result
    REPORT.write_text(json.dumps(report, indent=1))
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    parser.add_argument("--out", type=Path, required=True, help="The field_adaptation run's folder.")
    args = parser.parse_args()
    main(args.manifest, args.out, args.source)


if __name__ == "__main__":
    cli()
