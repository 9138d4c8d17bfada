"""The streaming proxy on recordings the models never heard: each leave-one-source-out fold hears
a mixture of its held-out source's gunshots, over a background that holds the held-out source's own
non-gun clips (never trained on, never calibrated on) and the fold's validation negatives (the
sounds its thresholds were chosen on), with the fold's own thresholds and vote.

    python -m models.training.held_out_streaming [--runs models/runs/loso] [--manifest ...]

The mixture is built as the streaming proxy's (models/training/streaming.py): one shot per 30 s at
0-30 dB SNR, background clips changed in gain and speed, synthetic noise. Per fold: event recall,
by SNR; false alerts per hour, and which background they were heard in. Writes
models/reports/held_out_streaming.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from inference.model import load_ensemble
from models.training.data import Clip
from models.training.evaluate import HOP, MERGE_GAP_S, false_alert_allowances, hindsight
from models.training.streaming import memory_shortfall, mixture_report
from models.training.transfer import folds_command

HOURS = 4.0  # 480 shots: about each belize and kaggle shot once, each us8k shot five times
SEED = 0  # the streaming proxy's; the calibration mixtures use 1, 2 and 3
REPORT = Path("models/reports/held_out_streaming.json")
NOTE = (
    "Held-out proxy: the shots are every clip of a source the fold never trained on; the background "
    "reuses that source's non-gun clips and the fold's validation negatives (random gain, pitch/speed "
    "change, synthetic noise); not field audio."
)

log = logging.getLogger("held_out_streaming")


def held_out_mixture(clips: list[Clip], source: str) -> tuple[list[Clip], list[Clip]]:
    """The background clips and the shots of the mixture a fold without `source` hears."""
    negatives = [c for c in clips if not c.label and (c.source == source or c.fold == "val")]
    shots = [c for c in clips if c.label and c.source == source]
    return negatives, shots


def fold_report(fold: Path, clips: list[Clip], source: str, hours: float = HOURS, seed: int = SEED) -> dict:
    """The fold's streaming figures on its held-out mixture, with the hindsight bound (the best
    vote found on the mixture itself) beside them."""
    ensemble = load_ensemble(fold)
    negatives, shots = held_out_mixture(clips, source)
    report, windows = mixture_report(negatives, shots, ensemble, HOP, MERGE_GAP_S, hours, seed)
    del report["inserted"], report["missed"]  # a few hundred entries a fold: the summary keeps the counts
    return {
        **report,
        "note": NOTE,
        "held_out_background_clips": sum(c.source == source for c in negatives),
        "hindsight": hindsight(windows, MERGE_GAP_S, false_alert_allowances(windows.background_h)),
    }


def main() -> None:
    runs, clips = folds_command(__doc__, Path("models/runs/loso"))
    sources = sorted(s for s in {c.source for c in clips if c.label} if (runs / f"without-{s}").is_dir())
    if not sources:
        raise SystemExit(f"{runs}: no leave-one-source-out folds (without-SOURCE) to score")
    if shortfall := memory_shortfall(HOURS):
        raise SystemExit(f"a {HOURS:g}-hour mixture {shortfall}")
    folds = {}
    for source in sources:
        folds[source] = fold_report(runs / f"without-{source}", clips, source)
        log.info(
            "%s held out: event recall %s, %s false alerts",
            source,
            *(folds[source][k] for k in ("event_recall", "false_alerts")),
        )
    report = {
        "method": __doc__.split("\n\n")[0].strip(),
        "command": f"python -m models.training.held_out_streaming --runs {runs}",
        "hours": HOURS,
        "seed": SEED,
        "sources": folds,
    }
    REPORT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
