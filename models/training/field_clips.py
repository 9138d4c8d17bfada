"""Labelled clips from a detector's data folder as a training manifest (`python cli.py export-labels`).

The clips of events, near misses and background samples that a person labelled (`python cli.py
label`) are copied
beside a manifest of the form of ../shared/data/manifest.csv, the site as a source of its own and
one split group per site and UTC day (clips minutes apart share their background, and often their
incident). With a base manifest, its rows come first, their paths pointing at its audio (nothing of
it is copied), so that `python cli.py train --manifest OUT/manifest.csv` trains on both and
`--leave-one-source-out` holds the site out like any other source.
"""

from __future__ import annotations

import csv
import datetime
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import soundfile

from inference.eventlog import EVENTS_DB, SAMPLES, EventLog, LabelledClip

MANIFEST_COLUMNS = (
    "path",
    "label",
    "category",
    "source",
    "origin",
    "license",
    "orig_sr",
    "duration_s",
    "split_group",
    "fold",
)
DEFAULT_CATEGORY = {"gunshot": "gunshot", "other": "field_other"}
SAMPLE_CATEGORY = "background"  # a sample labelled other: the site's ambience (models/training/train.py AMBIENT)
FIELD_LICENSE = "recorded by the detector's operator at the site (theirs to license)"
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")
MANIFEST_NAME = "manifest.csv"


class ExportError(ValueError):
    """What is wrong and what to do about it."""


@dataclass(frozen=True)
class ExportSummary:
    manifest: Path
    clips: int
    gunshots: int
    base_rows: int
    without_clip: int  # labelled records whose clip is gone: not exported


def source_name(site: str) -> str:
    """A manifest source name (and folder name) from a site name: 'North gate' -> 'north_gate'."""
    return re.sub(r"[^a-z0-9]+", "_", site.lower()).strip("_")


def export_labelled(
    data_dir: Path, out: Path, source: str, fold: str = "train", base_manifest: Path | None = None
) -> ExportSummary:
    if not SOURCE_NAME.fullmatch(source):
        raise ExportError(
            f"source {source!r} (--source, else made from site.name): use lower-case letters, digits and _ "
            "(e.g. --source north_gate)"
        )
    if not (Path(data_dir) / EVENTS_DB).exists():
        raise ExportError(f"{data_dir} holds no {EVENTS_DB}: give the detector's storage.data_dir")
    base_rows = _base_rows(base_manifest, Path(out), source) if base_manifest else []
    events = EventLog(Path(data_dir))
    try:
        labelled, without_clip = events.labelled_clips(), events.labelled_without_clip()
    finally:
        events.close()
    if not labelled:
        raise ExportError(
            f"no labelled clips in {data_dir}: label events, near misses or samples first (python cli.py label)"
        )
    Path(out).mkdir(parents=True, exist_ok=True)
    rows = [_copy(clip, Path(data_dir), Path(out), source, fold) for clip in labelled]
    manifest = Path(out) / MANIFEST_NAME
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(base_rows + rows)
    gunshots = sum(row["label"] == "gunshot" for row in rows)
    return ExportSummary(manifest, len(rows), gunshots, len(base_rows), without_clip)


def _base_rows(base_manifest: Path, out: Path, source: str) -> list[dict[str, str]]:
    """The base manifest's rows, their paths made relative to `out`."""
    if not base_manifest.exists():
        raise ExportError(f"base manifest {base_manifest} does not exist")
    with base_manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(MANIFEST_COLUMNS) - rows[0].keys():
        raise ExportError(f"{base_manifest} lacks columns {sorted(set(MANIFEST_COLUMNS) - rows[0].keys())}")
    if any(row["source"] == source for row in rows):
        raise ExportError(f"source {source!r} is already in {base_manifest}: choose another with --source")
    base_dir = base_manifest.resolve().parent
    return [
        {**{k: row[k] for k in MANIFEST_COLUMNS}, "path": os.path.relpath(base_dir / row["path"], out.resolve())}
        for row in rows
    ]


def _copy(clip: LabelledClip, data_dir: Path, out: Path, source: str, fold: str) -> dict[str, str]:
    """Copy one clip into out/audio/SOURCE/LABEL/ and return its manifest row."""
    relative = Path("audio") / source / clip.label / Path(clip.clip).name
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(data_dir / clip.clip, target)
        info = soundfile.info(target)
    except (OSError, soundfile.LibsndfileError) as exc:
        raise ExportError(f"clip {data_dir / clip.clip} of {clip.table} {clip.id} cannot be read ({exc})") from None
    day = datetime.datetime.fromtimestamp(clip.start_time, datetime.UTC).date().isoformat()
    return {
        "path": relative.as_posix(),
        "label": clip.label,
        "category": _category(clip),
        "source": source,
        "origin": f"{data_dir} {clip.table} {clip.id}",
        "license": FIELD_LICENSE,
        "orig_sr": str(info.samplerate),
        "duration_s": f"{info.duration:.3f}",
        "split_group": f"{source}_{day}",
        "fold": fold,
    }


def _category(clip: LabelledClip) -> str:
    """The person's category, or by default what the label and the kind of record say."""
    if clip.category:
        return clip.category
    return SAMPLE_CATEGORY if clip.table == SAMPLES and clip.label == "other" else DEFAULT_CATEGORY[clip.label]
