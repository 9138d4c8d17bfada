"""`cli.py evaluate` scores a labelled manifest through the runtime path and writes a report."""

import csv
import json
import subprocess
import sys

from tests.conftest import SHARED_DATA
from tests.detector_run import ROOT
from tests.shared_data import validation_rows

CLIPS_PER_LABEL = 4


def test_evaluate_writes_metrics_and_worst_clips(tmp_path):
    chosen = validation_rows(CLIPS_PER_LABEL)
    for row in chosen:
        row["path"] = str(SHARED_DATA / row["path"])
    small = tmp_path / "manifest.csv"
    with small.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
        writer.writeheader()
        writer.writerows(chosen)
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "evaluate", str(small), "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["clips"] == {"gunshot": CLIPS_PER_LABEL, "other": CLIPS_PER_LABEL, "fold": "val"}
    ensemble = report["ensemble"]
    assert ensemble["tp"] + ensemble["fn"] == CLIPS_PER_LABEL
    assert len(report["worst_misses"]) == ensemble["fn"]
    assert (tmp_path / "report" / "roc.csv").read_text().startswith("threshold,false_positive_rate")
