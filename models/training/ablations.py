"""Recipe ablations left one source out: which of the 2019 design's differences lets it rank a new
source's shots better than our recipe (belize held out: its clip AUC 0.966, ours 0.898)?

    python -m models.training.ablations VARIANT [VARIANT ...] [--source belize] [--manifest ...]

Each variant changes one part of our recipe (models/training/train.py, augment.py, architectures.py)
to the 2019 design's choice (models/training/prototype.py), trains the leave-one-source-out fold
as `python cli.py train --leave-one-source-out` does (into models/runs/ablation-VARIANT), and
scores the held-out source's clips through the runtime path: per model and fused, clip AUC and
recall at as many false-positive clips as the 2019 design had, of the clips as cut and rolled
(evaluate.rolled: each shot away from where the clip's cutting put it). Results are merged into
models/reports/ablations.json. One seed per variant: differences under about 0.03 AUC are noise
(the mel models alone move that much between variants that leave them unchanged).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.training import architectures, augment, loso, prototype, train
from models.training.data import load_clips
from models.training.evaluate import (
    clip_scores,
    clip_window_probs,
    recall_at_false_positives,
    recall_within,
    roc_auc,
    rolled,
)

REPORT = Path("models/reports/ablations.json")
RUNS = Path("models/runs")
LONG_WINDOW = 32000  # the 2019 design's 2 s
PROTOTYPE_LOGMEL = {"mel_fine": (2048, 250, 128), "mel_coarse": (2048, 500, 128)}  # its 128 bands, 2048 samples
SHORT_EPOCHS = 4
RECALL_AT_FALSE_POSITIVES = (0, 3, 10, 41)  # 41: the 2019 design's false positives on belize
AUGMENTATION_PROBABILITIES = (
    "P_MIX",
    "P_REVERB",
    "P_SPEED",
    "P_ONSET",
    "P_TRANSITION",
    "P_NEGATIVE_MIX",
    "P_HIGHPASS",
    "P_EQ",
    "P_CLIP",
)

log = logging.getLogger("ablations")


def _unchanged(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32)


def _no_bandlimit(clips, copies) -> dict[int, float]:
    return {0: 0.0, 1: 0.0}


def _no_mask(self, x, training=False):
    return x


_band_mean_removal = architectures.BandMeanRemoval.call


def _band_mean_removal_top_db(self, x):
    """BandMeanRemoval of a patch floored at its peak minus TOP_DB, as the 2019 design's
    power_to_db(top_db=80) did (our front end floors at an absolute -100 dB)."""
    from keras import ops

    return _band_mean_removal(self, ops.maximum(x, ops.max(x, axis=(1, 2), keepdims=True) - prototype.TOP_DB))


def _mel_without_stride(name: str, frames: int, mels: int, mean: float, std: float):
    """Our mel model with its first block at full resolution (no stride 2)."""
    import keras
    from keras import layers

    x = keras.Input((frames, mels), name="logmel")
    y = architectures.BandMeanRemoval(mean, std)(architectures.SpecMask()(x))
    for filters in architectures.MEL_FILTERS[:-1]:
        y = architectures._conv_block(y, filters, 3, layers.Conv2D, layers.MaxPooling2D(2))
    y = architectures._conv_block(y, architectures.MEL_FILTERS[-1], 3, layers.Conv2D)
    pools = [layers.GlobalMaxPooling2D, layers.GlobalAveragePooling2D]
    return keras.Model(x, architectures._head(y, pools, architectures.MEL_DROPOUT), name=name)


def _mel_prototype_body(name: str, frames: int, mels: int, mean: float, std: float):
    """The 2019 design's mel body (full-resolution convolutions, flatten, dense 1024) on our input
    layers, with one sigmoid output."""
    import keras
    from keras import layers

    def conv(z, filters: int):
        return layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", activation="relu")(z))

    x = keras.Input((frames, mels), name="logmel")
    y = architectures.BandMeanRemoval(mean, std)(architectures.SpecMask()(x))
    y = layers.Dropout(0.25)(layers.MaxPooling2D(3)(conv(y, 32)))
    for filters in (64, 128):
        y = layers.Dropout(0.25)(layers.MaxPooling2D(2)(conv(conv(y, filters), filters)))
    y = layers.BatchNormalization()(layers.Dense(1024, activation="relu")(layers.Flatten()(y)))
    y = layers.Dense(1, activation="sigmoid", name="gunshot")(layers.Dropout(0.5)(y))
    return keras.Model(x, y, name=name)


# Per variant: (module, attribute, value) changes, and what it tests.
Change = tuple[object, str, object]
LONG_WINDOWS: list[Change] = [
    (augment, "WINDOW", LONG_WINDOW),
    (architectures, "WAVE_SAMPLES", LONG_WINDOW),
    (augment.crop, "__defaults__", (LONG_WINDOW,)),
]
VARIANTS: dict[str, tuple[str, list[Change]]] = {
    "ours": ("the shipped recipe, unchanged: the reference at the same seed", []),
    "plain": (
        "no augmentation: a shot anywhere in the window, a crop of a negative (no mixing, band-limiting, "
        "colouring, reverberation, level, synthetic shots or noise windows, spectrogram masks)",
        [(augment, name, 0.0) for name in AUGMENTATION_PROBABILITIES]
        + [
            (augment, "finish", _unchanged),
            (train, "bandlimit_probabilities", _no_bandlimit),
            (loso, "COPIES", {**train.COPIES, "synthetic": 0, "noise": 0}),
            (architectures.SpecMask, "call", _no_mask),
        ],
    ),
    "long": ("2 s windows (hop 0.5 s as ours)", LONG_WINDOWS),
    "hires": (
        "finer frequency resolution and more bands: mel_fine 1024/160/96, mel_coarse 2048/320/128 (n_fft/hop/mels)",
        [(train, "LOGMEL", {"mel_fine": (1024, 160, 96), "mel_coarse": (2048, 320, 128)})],
    ),
    "protofeat": (
        "the 2019 design's resolution: 128 bands of 2048-sample frames, hops 250 and 500",
        [(train, "LOGMEL", PROTOTYPE_LOGMEL)],
    ),
    "longproto": (
        "2 s windows and the 2019 design's resolution together (long and protofeat)",
        [*LONG_WINDOWS, (train, "LOGMEL", PROTOTYPE_LOGMEL)],
    ),
    "longproto2": (
        "longproto at another seed (training windows, initial weights, order)",
        [*LONG_WINDOWS, (train, "LOGMEL", PROTOTYPE_LOGMEL), (train, "SEED", train.SEED + 1)],
    ),
    "short": (
        "4 epochs instead of 12 (the 2019 design made 3-8 passes): less fitting to the training sources",
        [(loso, "LOSO_EPOCHS", SHORT_EPOCHS)],
    ),
    "topdb": (
        "log-mel patches floored at their peak minus 80 dB, as the 2019 design's power_to_db(top_db=80)",
        [(architectures.BandMeanRemoval, "call", _band_mean_removal_top_db)],
    ),
    "wide": (
        "mel models twice as wide (filters 48-96-128-192)",
        [(architectures, "MEL_FILTERS", (48, 96, 128, 192))],
    ),
    "nostride": (
        "mel models without the first block's stride (full-resolution first layer, 4x the MACs)",
        [(architectures, "mel_model", _mel_without_stride)],
    ),
    "protoarch": (
        "the 2019 design's mel body (full-resolution convolutions, flatten, dense 1024) on our features",
        [(architectures, "mel_model", _mel_prototype_body)],
    ),
}


@contextlib.contextmanager
def _swapped(changes: list[Change]) -> Iterator[None]:
    """Each (target, attribute, value) set while inside; the old values back on exit."""
    saved = [(target, name, getattr(target, name)) for target, name, _ in changes]
    try:
        for target, name, value in changes:
            setattr(target, name, value)
        yield
    finally:
        for target, name, value in reversed(saved):
            setattr(target, name, value)


def applied(variant: str) -> contextlib.AbstractContextManager[None]:
    """The recipe with `variant`'s changes; restored on exit."""
    return _swapped(VARIANTS[variant][1])


def ranking(labels: np.ndarray, scores: np.ndarray) -> dict:
    curve = recall_at_false_positives(labels, scores)
    return {
        "clip_auc": round(roc_auc(labels, scores), 4),
        **{f"recall_at_{n}_fp": recall_within(curve, n) for n in RECALL_AT_FALSE_POSITIVES},
    }


def held_out_ranking(probs: list[dict], labels: np.ndarray) -> dict:
    """Per model (its highest window) and fused (clip_scores): how the held-out clips rank."""
    per_model: dict[str, np.ndarray] = {m: np.array([p[m].max() for p in probs]) for m in probs[0]}
    return {name: ranking(labels, s) for name, s in {**per_model, "fused": clip_scores(probs)}.items()}


def run(variant: str, manifest: Path, source: str, score_only: bool = False) -> dict:
    """Train the variant's fold (unless `score_only`: score the one trained before) and score it.
    Its loso.json stays beside it: models/reports/loso.json is the shipped recipe's."""
    out = RUNS / f"ablation-{variant}"
    if not score_only:
        with applied(variant), _swapped([(loso, "REPORT", out / "loso.json")]):
            loso.main(manifest, out, loso.LOSO_EPOCHS, sources=(source,))
    fold = out / f"without-{source}"
    held = [c for c in load_clips(manifest, out / "cache") if c.source == source]
    probs, _ = clip_window_probs(fold, held)
    vote = loso.held_out_figures(fold, held, probs)["ensemble"]
    labels = np.array([c.label for c in held], dtype=bool)
    return {
        "tests": VARIANTS[variant][0],
        "vote": {k: vote[k] for k in ("recall", "f1", "fp")},
        "ranking": held_out_ranking(probs, labels),
        "rolled": held_out_ranking(clip_window_probs(fold, rolled(held))[0], labels),
        "command": f"python -m models.training.ablations {variant} --source {source}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--source", default="belize")
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    parser.add_argument("--score-only", action="store_true", help="score the folds trained before")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for variant in args.variants:
        result = run(variant, args.manifest, args.source, args.score_only)
        report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        report.setdefault(args.source, {})[variant] = result
        REPORT.write_text(json.dumps(report, indent=1))
        log.info("%s: %s", variant, json.dumps(result["ranking"]["fused"]))


if __name__ == "__main__":
    main()
