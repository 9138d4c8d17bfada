"""The labelled clips: manifest rows, audio loaded once and cached, split by the manifest's fold."""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000
HARD_NEGATIVES = frozenset(
    {
        "fireworks",
        "door_wood_knock",
        "clapping",
        "glass_breaking",
        "jackhammer",
        "drilling",
        "thunderstorm",
        "car_horn",
        "dog_bark",
        "can_opening",
        "footsteps",
        "door_wood_creaks",
        "clock_tick",
        "mouse_click",
        "explosion",  # these two: training-only negatives from game data (models/training/extra_negatives.py)
        "game_sound",
        "door_slam",
    }
)

REQUIRED_COLUMNS = ("path", "label", "category", "source", "split_group", "fold")  # what load_clips reads

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest that cannot be used: the message names the file (and row) and what is wrong."""


@dataclass(frozen=True)
class Clip:
    path: str
    label: int  # 1 gunshot, 0 other
    category: str
    source: str
    split_group: str
    fold: str
    audio: np.ndarray  # float32 at 16 kHz

    @property
    def hard_negative(self) -> bool:
        return self.label == 0 and self.category in HARD_NEGATIVES


def load_clips(manifest: Path, cache_dir: Path) -> list[Clip]:
    """Every clip of the manifest, audio decoded once and cached as one .npz next to the cache."""
    manifest = Path(manifest)
    rows = _rows(manifest)
    digest = hashlib.sha1(manifest.read_bytes()).hexdigest()[:12]
    cache = Path(cache_dir) / f"clips-{digest}.npz"
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        audio = [stored[f"a{i}"] for i in range(len(rows))]
    else:
        log.info("decoding %d clips (cached in %s)", len(rows), cache)
        audio = [_read(manifest.parent / row["path"]) for row in rows]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{f"a{i}": a for i, a in enumerate(audio)})
    groups = {}
    for row in rows:
        fold = groups.setdefault(row["split_group"], row["fold"])
        if fold != row["fold"]:
            raise ValueError(f"split_group {row['split_group']} is on both sides of the split")
    return [
        Clip(
            row["path"],
            int(row["label"] == "gunshot"),
            row["category"],
            row["source"],
            row["split_group"],
            row["fold"],
            a,
        )
        for row, a in zip(rows, audio, strict=True)
    ]


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if missing := [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or ())]:
            raise ManifestError(
                f"{manifest}: no column {', '.join(missing)} (a manifest has {', '.join(REQUIRED_COLUMNS)})"
            )
        rows = list(reader)
    if not rows:
        raise ManifestError(f"{manifest}: holds no clips")
    return rows


def _read(path: Path) -> np.ndarray:
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise ManifestError(f"{path}: cannot be read as audio ({exc})") from None
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
    return audio.mean(axis=1)
