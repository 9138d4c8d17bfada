"""Recipe ablations left one source out: which of the 2019 design's differences lets it rank a new
source's shots better than our recipe (belize held out: its clip AUC 0.966, ours 0.898), and does a
change chosen on some held-out sources (or aimed at new microphones: pcen) help on the others?

    python -m models.training.ablations VARIANT [VARIANT ...] [--source belize] [--manifest ...]

Each variant changes one part of our recipe (models/training/train.py, augment.py, architectures.py)
to the 2019 design's choice (models/training/prototype.py), trains the leave-one-source-out fold
as `python cli.py train --leave-one-source-out` does (into models/runs/ablation-VARIANT), and
scores the held-out source's clips through the runtime path: per model and fused, clip AUC and
recall at as many false-positive clips as the 2019 design had, of the clips as cut and rolled
(evaluate.rolled: each shot away from where the clip's cutting put it). Results are merged into
models/reports/ablations.json. One run per variant, but ours is run four times (ours_rerun: the
same seed again on another machine; ours2, ours3: other seeds) and longproto twice: its fused
held-out AUC moves by up to 0.05 between runs of one recipe, so smaller differences are noise.
Combinations (COMBINATIONS: the hybrid, a seed ensemble) are scored from two variants' folds.
The variants change our recipe as it was until 2026-12-04 (ONE_SECOND_RECIPE), which their runs
measured; since then train.py ships the hybrid trained as one, which "shipped" runs (and the
variants in ON_SHIPPED_RECIPE change). The shipped_no_*_shots variants train without one more
source's gunshots (its other sounds kept), and shipped_thinned and shipped_thinned_more without as
many shots drawn from every source: does a source of guns and recorders more, not only more shots,
move how a new source ranks?
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from inference.vote import logit, sigmoid
from models.training import architectures, augment, extra_gunfire, loso, prototype, train
from models.training.data import SAMPLE_RATE, Clip, load_clips
from models.training.evaluate import (
    HOP,
    clip_scores,
    clip_window_probs,
    recall_at_false_positives,
    recall_within,
    roc_auc,
    rolled,
)
from models.training.transfer import Scored, outcome, scored, target_rule

REPORT = Path("models/reports/ablations.json")
RUNS = Path("models/runs")
LONG_WINDOW = 32000  # the 2019 design's 2 s
PROTOTYPE_LOGMEL = {"mel_fine": (2048, 250, 128), "mel_coarse": (2048, 500, 128)}  # its 128 bands, 2048 samples
SHORT_EPOCHS = 4
QUIET_BELOW_PEAK_DB = 6.0  # shot_free_bed: a frame this far under a clip's loudest is background
BED_GUARD_S = 0.5  # and this far from every louder frame (the shot's onset, tail and echoes)
MIN_BED_S = 0.25
BED_SAMPLES = 2 * SAMPLE_RATE
PCEN_TIME_CONSTANT_S = 0.4  # librosa.pcen's defaults (r 0.5: the square root below)
PCEN_ALPHA, PCEN_DELTA, PCEN_EPS = 0.98, 2.0, 1e-6
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
    return _band_mean_removal(self, ops.maximum(x, ops.max(x, axis=(1, 2), keepdims=True) - prototype.TOP_DB))


def pcen_smoothing(frames: int, hop_s: float) -> np.ndarray:
    """librosa.pcen's first-order smoother over a patch as a (frames, frames) matrix: row t weighs
    frames 0..t, started in steady state at the first frame's value (librosa starts it at 1)."""
    b = PCEN_TIME_CONSTANT_S / hop_s
    s = (np.sqrt(1 + 4 * b**2) - 1) / (2 * b**2)
    t, k = np.arange(frames)[:, None], np.arange(frames)[None, :]
    weights = np.where(k <= t, s * (1 - s) ** np.maximum(t - k, 0), 0.0)
    weights[:, 0] += (1 - s) ** (np.arange(frames) + 1)
    return weights.astype(np.float32)


def _contrast_and_pcen(self, x):
    """Our contrast channel and PCEN (each band's power over its own smoothed past, root-compressed:
    Lostanlen et al. 2019, robust across sensors) in place of the absolute level."""
    frames = x.shape[1]
    smoothing = ops.convert_to_tensor(pcen_smoothing(frames, architectures.WAVE_SAMPLES / SAMPLE_RATE / frames))
    power = ops.exp(x * (np.log(10.0) / 10.0))  # the front end's dB back to power
    gain = ops.power(PCEN_EPS + ops.matmul(smoothing, power), -PCEN_ALPHA)
    pcen = ops.sqrt(power * gain + PCEN_DELTA) - np.sqrt(PCEN_DELTA)
    contrast = (x - ops.mean(x, axis=1, keepdims=True)) / self.std
    return ops.stack([contrast, pcen], axis=-1)


def shot_free_bed(clip: Clip) -> Clip | None:
    """A gunshot clip's own background without its shot, as a negative clip of the same recorder and
    place (None when too little of it is quiet): its longest stretch of 10 ms frames more than
    QUIET_BELOW_PEAK_DB under the loudest, kept BED_GUARD_S away from every louder frame, mirrored
    out to BED_SAMPLES (mirroring keeps the joins free of clicks)."""
    frame = SAMPLE_RATE // 100
    frames = len(clip.audio) // frame
    energy = 10 * np.log10(np.mean(clip.audio[: frames * frame].reshape(frames, frame) ** 2, axis=1) + 1e-12)
    loud = energy >= energy.max() - QUIET_BELOW_PEAK_DB
    guard = int(BED_GUARD_S * 100)
    near = np.convolve(loud.astype(float), np.ones(2 * guard + 1), mode="same") > 0
    best, start = (0, 0), None
    for i, quiet in enumerate([*~near, False]):
        if quiet and start is None:
            start = i
        elif not quiet and start is not None:
            best, start = max(best, (i - start, start)), None
    length, first = best
    if length * frame < MIN_BED_S * SAMPLE_RATE:
        return None
    bed = clip.audio[first * frame : (first + length) * frame]
    bed = np.pad(bed, (0, max(0, BED_SAMPLES - len(bed))), mode="symmetric")
    return dataclasses.replace(clip, path=f"{clip.path}#bed", label=0, category="shot_free_bed", audio=bed)


_build_windows = train.build_windows


def _with_shot_free_beds(clips: list[Clip], copies: dict[str, int], seed: int, window: int = augment.WINDOW):
    """build_windows with each gunshot clip's shot-free background added as a negative clip, so that a
    recorder's sound is not a sign of a gunshot (most of elp's clips are gunshots)."""
    beds = [bed for bed in map(shot_free_bed, (c for c in clips if c.label)) if bed is not None]
    log.info("shot-free beds: %d of %d gunshot clips", len(beds), sum(c.label for c in clips))
    return _build_windows(clips + beds, copies, seed, window)


Windows = tuple[np.ndarray, np.ndarray, np.ndarray]  # train.build_windows' (x, y, weights)


def _is_training_fold(clips: list[Clip]) -> bool:
    """train.training_windows builds the training fold's windows and the validation fold's apart."""
    return bool(clips) and all(c.fold == "train" for c in clips)


def _with_game_gunfire(clips: list[Clip], copies: dict[str, int], seed: int, window: int = augment.WINDOW):
    """build_windows with the game gunfire (models/training/extra_gunfire.py) among the training
    fold's gunshots; validation windows as they were."""
    return _build_windows(clips + extra_gunfire.load() if _is_training_fold(clips) else clips, copies, seed, window)


def _training_clips_kept(keep: Callable[[Clip], bool]) -> Callable[..., Windows]:
    """train.build_windows with only the training fold's clips that `keep` passes; the synthetic
    shots, the noise windows and the validation windows as they were."""

    def build(clips: list[Clip], copies: dict[str, int], seed: int, window: int = augment.WINDOW) -> Windows:
        if not _is_training_fold(clips):
            return _build_windows(clips, copies, seed, window)
        kept = [c for c in clips if keep(c)]
        shots, others = sum(c.label for c in kept), sum(not c.label for c in kept)
        log.info("training clips kept: %d gunshots, %d others, of %d", shots, others, len(clips))
        return _build_windows(kept, copies, seed, window)

    return build


def _training_shots_kept(keep: Callable[[Clip], bool]) -> Callable[..., Windows]:
    """_training_clips_kept for the gunshot clips alone: every other sound kept."""
    return _training_clips_kept(lambda clip: not clip.label or keep(clip))


def _not_from(source: str) -> Callable[[Clip], bool]:
    return lambda clip: clip.source != source


# Shares of the belize fold's 1261 real training shots: the Kaggle rifles' (371) and elp's (810).
# Thinned by them, as many shots go as leaving that source out takes there, from every source (a
# few small split groups lose all their shots). The us8k fold has 1575: the same share is 493 there.
BELIZE_FOLD_KAGGLE_SHARE = 371 / 1261
BELIZE_FOLD_ELP_SHARE = 810 / 1261


def _thinned(share: float) -> Callable[[Clip], bool]:
    """Keeps a clip when a hash of its path, read as a number in [0, 1], is at least `share`: the same
    clips in every run, and a larger share drops a superset of a smaller one's."""

    def keep(clip: Clip) -> bool:
        return int(hashlib.sha1(clip.path.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF >= share

    return keep


def _mel_without_stride(name: str, frames: int, mels: int, mean: float, std: float):
    """Our mel model with its first block at full resolution (no stride 2)."""
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


FREQMIX_P, FREQMIX_ALPHA = 0.4, 0.3  # CP-JKU's DCASE device-generalisation settings (Schmid et al. 2022-23)


@keras.saving.register_keras_serializable(package="gunshot")
class FreqMixStyle(layers.Layer):
    """Frequency-wise MixStyle while training (Kim et al. 2022, the device-generalisation step of most
    DCASE acoustic-scene systems since): with probability `p` a batch's log-mel patches are each
    normalised per band over time and given per-band means and spreads mixed with another patch's
    (weight ~ Beta(alpha, alpha)): another recorder's colouring and dynamics, the same sound. The
    identity at inference and export."""

    def __init__(self, p: float = FREQMIX_P, alpha: float = FREQMIX_ALPHA, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.p, self.alpha, self.seed = float(p), float(alpha), int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        batch = ops.shape(x)[0]
        mean = ops.mean(x, axis=1, keepdims=True)
        spread = ops.sqrt(ops.var(x, axis=1, keepdims=True) + 1e-6)
        weight = keras.random.beta((batch, 1, 1), self.alpha, self.alpha, seed=self.seed_generator)
        other = keras.random.shuffle(ops.arange(batch), seed=self.seed_generator)
        mixed_mean = weight * mean + (1 - weight) * ops.take(mean, other, axis=0)
        mixed_spread = weight * spread + (1 - weight) * ops.take(spread, other, axis=0)
        mixed = (x - mean) / spread * mixed_spread + mixed_mean
        apply = keras.random.uniform((), seed=self.seed_generator) < self.p
        return ops.where(apply, mixed, x)

    def get_config(self):
        return {**super().get_config(), "p": self.p, "alpha": self.alpha, "seed": self.seed}


_mel_model = architectures.mel_model


def _mel_freqmix(name: str, frames: int, mels: int, mean: float, std: float):
    """Our mel model with FreqMixStyle on its log-mel input."""
    inner = _mel_model(name, frames, mels, mean, std)
    x = keras.Input((frames, mels), name="logmel")
    return keras.Model(x, inner(FreqMixStyle()(x)), name=name)


_wave_model = architectures.wave_model


def _wave_best_stretch():
    """Our 1 s waveform model on each 1 s stretch of the 2 s window, every HOP, shared weights; the
    window scores its best stretch (the hybrid's waveform model, trained as one; the thought: pooled
    over 2 s, a shot is diluted by twice the background)."""
    one = _wave_model()
    inner = keras.Model(one.input, one.output, name="wave_stretch")
    stretch = architectures.WAVE_SAMPLES
    x = keras.Input((LONG_WINDOW,), name="waveform")
    scores = [inner(x[:, start : start + stretch]) for start in range(0, LONG_WINDOW - stretch + 1, HOP)]
    return keras.Model(x, layers.Maximum(name="gunshot_best")(scores), name="wave")


LOG_FLOOR = 1e-5  # -100 dB under a full-scale filter output: the envelope's log never meets 0
ENVELOPE_FILTERS, ENVELOPE_TAPS, ENVELOPE_STRIDE = 48, 64, 8  # 4 ms filters, sampled at 2 kHz
ENVELOPE_FRAME = 20  # their rectified output averaged over 10 ms frames, as the mel models' hop


@keras.saving.register_keras_serializable(package="gunshot")
class LogEnvelope(layers.Layer):
    """Band-pass filter outputs to a log envelope: rectified, averaged over `frame` samples, logged."""

    def __init__(self, frame: int = ENVELOPE_FRAME, **kwargs):
        super().__init__(**kwargs)
        self.frame = int(frame)

    def call(self, x):
        return ops.log(ops.average_pool(ops.abs(x), self.frame, self.frame) + LOG_FLOOR)

    def get_config(self):
        return {**super().get_config(), "frame": self.frame}


def _wave_log_envelope():
    """A 1D CNN on the waveform with a compressive front end: learned band-pass filters, their
    rectified output averaged over 10 ms and log-compressed, with each filter's mean over the window
    removed as a second view (as BandMeanRemoval does for the mel models), then 1D convolutions over
    time. The thought: the shipped waveform model ranks new sources worst of the three (37 of 45
    runs); linear filters and ReLU see level and phase, a log envelope sees what the mel models see
    on a scale that ignores the microphone's gain and colouring."""
    x = keras.Input((architectures.WAVE_SAMPLES,), name="waveform")
    y = layers.Reshape((architectures.WAVE_SAMPLES, 1))(architectures.PeakNormalize()(x))
    y = layers.Conv1D(ENVELOPE_FILTERS, ENVELOPE_TAPS, strides=ENVELOPE_STRIDE, padding="same", use_bias=False)(y)
    y = LogEnvelope()(y)
    y = layers.Concatenate()([y, y - ops.mean(y, axis=1, keepdims=True)])
    y = layers.BatchNormalization()(y)
    y = architectures._conv_block(y, 64, 5, layers.Conv1D, layers.MaxPooling1D(2))
    y = architectures._conv_block(y, 96, 3, layers.Conv1D, layers.MaxPooling1D(2))
    y = architectures._conv_block(y, 96, 3, layers.Conv1D)
    pools = [layers.GlobalMaxPooling1D, layers.GlobalAveragePooling1D]
    return keras.Model(x, architectures._head(y, pools), name="wave")


NARROW_FMAX = 4000.0  # the forest recorders' band (8 kHz sampling): what every source has
LOWPASS_TAPS = 63
LOWPASS_CUTOFF_HZ = 0.95 * NARROW_FMAX  # the 63-tap filter's transition band ends about at NARROW_FMAX


def _wave_narrow():
    """Our waveform model behind a fixed low-pass FIR (windowed sinc at NARROW_FMAX): part of the
    exported model, so the runtime is unchanged."""
    from scipy import signal

    taps = signal.firwin(LOWPASS_TAPS, LOWPASS_CUTOFF_HZ, fs=SAMPLE_RATE).astype(np.float32)
    inner = _wave_model()
    x = keras.Input((architectures.WAVE_SAMPLES,), name="waveform")
    lowpass = layers.Conv1D(1, LOWPASS_TAPS, padding="same", use_bias=False, trainable=False, name="lowpass")
    y = lowpass(layers.Reshape((architectures.WAVE_SAMPLES, 1))(x))
    lowpass.set_weights([taps[::-1].reshape(LOWPASS_TAPS, 1, 1)])
    return keras.Model(x, inner(layers.Reshape((architectures.WAVE_SAMPLES,))(y)), name="wave")


def window_sources(clips: list[Clip], copies: dict[str, int]) -> np.ndarray:
    """Each training window's source, in train.build_windows' order."""
    recorded = [c.source for c in clips for _ in range(copies[train.window_kind(c)])]
    return np.array(recorded + ["synthetic"] * copies["synthetic"] + ["noise"] * copies["noise"])


def _source_balanced_windows(clips: list[Clip], copies: dict[str, int], seed: int, window: int = augment.WINDOW):
    """train.build_windows with the gunshot windows reweighted: each source's shots (the synthetic
    ones a source too) weigh alike in total, and all of them as much as before."""
    x, y, w = _build_windows(clips, copies, seed, window)
    sources, shots = window_sources(clips, copies), y == 1
    names = np.unique(sources[shots])
    total = w[shots].sum()
    for name in names:
        mine = shots & (sources == name)
        w[mine] *= total / len(names) / w[mine].sum()
    return x, y, w


ADVERSARY_STRENGTH = 0.5  # the gradient reversal's strength once ramped up (Ganin et al. 2016's schedule)
ADVERSARY_BEFORE_DROPOUT = False  # the adversaries read the features as the gunshot output does, after its dropout
ADVERSARY_UNITS = 64
ADVERSARY_RAMP = 10.0  # strength(p) = ADVERSARY_STRENGTH * (2 / (1 + exp(-ADVERSARY_RAMP p)) - 1), p: training done
CLASSES = 2  # y + CLASSES * source index: a training window's label and source in one float array
NOT_THIS_CLASS = -1  # a source target the source head of the other class ignores


def _with_sources(clips: list[Clip], copies: dict[str, int], seed: int, window: int = augment.WINDOW):
    """build_windows with each training window's source carried in its label (label + CLASSES * source index,
    decoded by _train_one_adversarial). train.training_windows calls it for the training fold and for the
    validation fold: clips all of the training fold are the first, and only their windows carry a source
    (so the training log's count of gunshot windows, the sum of the labels, is not one in this variant)."""
    x, y, w = _build_windows(clips, copies, seed, window)
    if not clips or not all(c.fold == "train" for c in clips):
        return x, y, w
    sources = window_sources(clips, copies)
    return x, y + CLASSES * np.unique(sources, return_inverse=True)[1].astype(np.float32), w


class GradientReversal(layers.Layer):
    """The identity forward, the gradient times -strength backward (Ganin et al. 2016): what follows it
    learns to tell the sources apart, what precedes it learns features that cannot."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.strength = self.add_weight(shape=(), initializer="zeros", trainable=False, name="strength")

    def call(self, x):
        strength = ops.convert_to_tensor(self.strength)

        @ops.custom_gradient
        def reverse(y):
            def backward(*args, upstream=None):  # TensorFlow and JAX pass it in args, torch by name
                return -strength * (args[0] if upstream is None else upstream)

            return ops.copy(y), backward

        return reverse(x)


class RampReversal(keras.callbacks.Callback):
    """The reversal's strength from 0 up to ADVERSARY_STRENGTH over training: the adversaries learn first."""

    def __init__(self, reversal: GradientReversal, epochs: int):
        super().__init__()
        self.reversal, self.epochs = reversal, epochs

    def on_epoch_begin(self, epoch, logs=None):
        done = epoch / self.epochs
        self.reversal.strength.assign(ADVERSARY_STRENGTH * (2 / (1 + np.exp(-ADVERSARY_RAMP * done)) - 1))


def _source_loss(y_true, y_pred):
    """Cross-entropy of the source, 0 for windows of the other class (target NOT_THIS_CLASS)."""
    y_true = ops.reshape(y_true, (-1,))
    mine = ops.cast(y_true != NOT_THIS_CLASS, y_pred.dtype)
    return mine * keras.losses.sparse_categorical_crossentropy(ops.maximum(y_true, 0), y_pred)


def _source_targets(label: np.ndarray, source: np.ndarray) -> dict[str, np.ndarray]:
    """Each source head's targets: the window's source where it is of the head's class."""
    return {
        "gunshot_source": np.where(label == 1, source, NOT_THIS_CLASS),
        "other_source": np.where(label == 0, source, NOT_THIS_CLASS),
    }


def _train_one_adversarial(model_id, x_train, y_train, w_train, x_val, y_val, epochs, spec, out_dir):
    """train.train_one with two adversaries on the features the gunshot output reads (after its dropout, or
    before it with ADVERSARY_BEFORE_DROPOUT): one tells the gunshot windows' sources apart, one the other
    windows' (class-conditional, so the class itself is not reversed away), both through a gradient
    reversal. Each adversary's loss is 0 on the other class's windows and averaged over the batch, so it
    weighs as much as its class's share of the windows. The exported model is the gunshot output alone."""
    keras.utils.set_random_seed(train.SEED)
    model = train.new_model(model_id, x_train, spec)
    label, source = y_train % CLASSES, y_train // CLASSES
    head_dropout = [layer for layer in model.layers if isinstance(layer, layers.Dropout)][-1]
    features = head_dropout.input if ADVERSARY_BEFORE_DROPOUT else model.get_layer("gunshot").input
    reversal = GradientReversal()
    hidden = layers.Dense(ADVERSARY_UNITS, activation="relu")(reversal(features))
    outputs = {"gunshot": model.output}
    for name in ("gunshot_source", "other_source"):
        outputs[name] = layers.Dense(int(source.max()) + 1, activation="softmax", name=name)(hidden)
    with_adversaries = keras.Model(model.input, outputs)
    with_adversaries.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={
            "gunshot": getattr(keras.losses, train.LOSS[0])(**train.LOSS[1]),
            "gunshot_source": _source_loss,
            "other_source": _source_loss,
        },
        metrics={"gunshot": [keras.metrics.AUC(name="auc")]},
    )
    monitor = "val_gunshot_auc"
    no_source = np.full_like(y_val, NOT_THIS_CLASS)  # validation windows carry none
    started = time.monotonic()
    history = with_adversaries.fit(
        x_train,
        {"gunshot": label, **_source_targets(label, source)},
        sample_weight=w_train,
        validation_data=(x_val, {"gunshot": y_val, **dict.fromkeys(("gunshot_source", "other_source"), no_source)}),
        batch_size=train.BATCH,
        epochs=epochs,
        callbacks=[RampReversal(reversal, epochs), *train.callbacks(model_id, out_dir, monitor)],
        verbose=2,
        shuffle=True,
    )
    return model, train.fit_info(model, history, started, monitor)


# Per variant: (module, attribute, value) changes, and what it tests.
Change = tuple[object, str, object]
# Every variant but those of ON_SHIPPED_RECIPE changes the recipe as it was until 2026-12-04, which their runs
# measured: 1 s windows for every model, our own log-mel resolution.
ONE_SECOND_RECIPE: list[Change] = [
    (train, "WINDOW_SAMPLES", dict.fromkeys(train.MODEL_IDS, augment.WINDOW)),
    (train, "LOGMEL", {"mel_fine": (512, 160, 64), "mel_coarse": (1024, 320, 96)}),
]
ALL_LONG = dict.fromkeys(train.MODEL_IDS, LONG_WINDOW)
LONG_WINDOWS: list[Change] = [(train, "WINDOW_SAMPLES", ALL_LONG), (architectures, "WAVE_SAMPLES", LONG_WINDOW)]
SMOOTHED: Change = (train, "LOSS", ("BinaryCrossentropy", {"label_smoothing": 0.1}))
WIDER_MEL: Change = (architectures, "MEL_FILTERS", (48, 96, 128, 192))
GAME_GUNFIRE: Change = (train, "build_windows", _with_game_gunfire)
ADVERSARIES: list[Change] = [(train, "build_windows", _with_sources), (train, "train_one", _train_one_adversarial)]
VARIANTS: dict[str, tuple[str, list[Change]]] = {
    "shipped": (
        "the recipe shipped since 2026-12-04 (train.py): the hybrid trained as one, longproto's 2 s mel models "
        "and our 1 s waveform model, scored as its best 1 s window inside each 2 s vote window",
        [],
    ),
    "ours": ("our recipe until 2026-12-04, unchanged: the reference at the same seed", []),
    "ours_rerun": (
        "our recipe until 2026-12-04 at the same seed, trained again on another machine: training is not "
        "bit-reproducible",
        [],
    ),
    "ours2": (
        "our recipe until 2026-12-04 at another seed (training windows, initial weights, order): the run-to-run spread",
        [(train, "SEED", train.SEED + 1)],
    ),
    "ours3": (
        "our recipe until 2026-12-04 at a third seed: the run-to-run spread, and a second member of a seed ensemble",
        [(train, "SEED", train.SEED + 2)],
    ),
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
    "longmax": (
        "longproto with the waveform model of the hybrid trained as one: our 1 s model on every 1 s stretch "
        "of the 2 s window (each HOP), the best stretch's score",
        [
            (train, "WINDOW_SAMPLES", ALL_LONG),
            (train, "LOGMEL", PROTOTYPE_LOGMEL),
            (architectures, "wave_model", _wave_best_stretch),
        ],
    ),
    "hardneg": (
        "hard negatives (knocks, claps, thunder, glass, fireworks, ...) weigh 5 in the loss instead of 2: "
        "the validation negatives that set every fold's threshold are of these kinds (fusion.py)",
        [(train, "HARD_NEGATIVE_WEIGHT", 5.0)],
    ),
    "wavelog": (
        "the waveform model with a compressive front end: learned 4 ms band-pass filters, rectified, averaged "
        "over 10 ms and log-compressed (and each filter's mean removed), then 1D convolutions over time",
        [(architectures, "wave_model", _wave_log_envelope)],
    ),
    "balanced": (
        "each gunshot source (the synthetic shots one too) weighs alike in the loss, not by its number of clips: "
        "the biggest source's guns and recorders do not set what a shot is",
        [(train, "build_windows", _source_balanced_windows)],
    ),
    "balanced2": (
        "balanced at another seed (ours2's): is its lead more than a seed moves?",
        [(train, "build_windows", _source_balanced_windows), (train, "SEED", train.SEED + 1)],
    ),
    "narrow": (
        "every model hears only 50-4000 Hz, the band all sources share: mel bands up to 4 kHz, the waveform "
        "model behind a fixed low-pass (no bandwidth cue at all, rather than balanced band-limiting)",
        [(train, "FMAX", NARROW_FMAX), (architectures, "wave_model", _wave_narrow)],
    ),
    "short": (
        "4 epochs instead of 12 (the 2019 design made 3-8 passes): less fitting to the training sources",
        [(loso, "LOSO_EPOCHS", SHORT_EPOCHS)],
    ),
    "topdb": (
        "log-mel patches floored at their peak minus 80 dB, as the 2019 design's power_to_db(top_db=80)",
        [(architectures.BandMeanRemoval, "call", _band_mean_removal_top_db)],
    ),
    "pcen": (
        "the mel models see per-channel energy normalisation (PCEN) and the band contrast, not the absolute level",
        [(architectures.BandMeanRemoval, "call", _contrast_and_pcen)],
    ),
    "shotfree": (
        "each gunshot clip's background without its shot is a negative clip too (the recorder is no sign of a gunshot)",
        [(train, "build_windows", _with_shot_free_beds)],
    ),
    "freqmix": (
        "the mel models' log-mel input gets frequency-wise MixStyle while training (each band's mean and spread "
        "over time mixed with another window's): other recorders' colouring and dynamics, the runtime unchanged",
        [(architectures, "mel_model", _mel_freqmix)],
    ),
    "freqmix2": (
        "freqmix at another seed (ours2's): is its gain more than a seed moves?",
        [(architectures, "mel_model", _mel_freqmix), (train, "SEED", train.SEED + 1)],
    ),
    "gunfire": (
        "game gunfire (machine guns, a musket, shotguns, a submachine gun from Debian's free game data) among the "
        "training gunshots: more guns, as close-range wide-band sound effects (models/training/extra_gunfire.py)",
        [GAME_GUNFIRE],
    ),
    "gunfire2": (
        "gunfire at another seed (ours2's): is its gain on elp and its loss on belize more than a seed moves?",
        [GAME_GUNFIRE, (train, "SEED", train.SEED + 1)],
    ),
    "ema": (
        "an exponential moving average of the weights (momentum 0.997, about two epochs) is validated, kept by "
        "early stopping and exported: flatter minima, which carry to unseen domains (SWAD, Cha et al. 2021)",
        [(train, "EMA_MOMENTUM", 0.997)],
    ),
    "focal": (
        "focal loss (gamma 2, Lin et al. 2017): the easy windows weigh little, the hardest shots (quiet, "
        "distant, band-limited) and the hardest negatives (knocks, footsteps) most",
        [(train, "LOSS", ("BinaryFocalCrossentropy", {"gamma": 2.0}))],
    ),
    "smooth": (
        "label smoothing 0.1: targets 0.05 and 0.95, no push towards certainty on the training sources",
        [SMOOTHED],
    ),
    "smooth2": (
        "smooth at another seed (ours2's): is its lead on belize and us8k more than a seed moves?",
        [SMOOTHED, (train, "SEED", train.SEED + 1)],
    ),
    "shipped_smooth": (
        "label smoothing 0.1 on the shipped recipe (smooth's change on the hybrid trained as one)",
        [SMOOTHED],
    ),
    "wide": (
        "mel models twice as wide (filters 48-96-128-192)",
        [WIDER_MEL],
    ),
    "shipped_adversarial": (
        "the shipped recipe with class-conditional source adversaries (DANN, Ganin et al. 2016): the features "
        "the gunshot output reads are trained, through a gradient reversal, so that neither a gunshot's nor "
        "another sound's source can be told from them (the recorder, place and gun set of each source)",
        ADVERSARIES,
    ),
    "shipped_adversarial_strong": (
        "shipped_adversarial with a stronger reversal (1.0, Ganin et al.'s) and the adversaries on the features "
        "before the head's dropout: a probe trained afterwards told the sources apart from shipped_adversarial's "
        "features as well as from the shipped recipe's",
        [
            *ADVERSARIES,
            (sys.modules[__name__], "ADVERSARY_STRENGTH", 1.0),
            (sys.modules[__name__], "ADVERSARY_BEFORE_DROPOUT", True),
        ],
    ),
    "shipped_gunfire": (
        "gunfire's game gunfire on the shipped recipe: close-range, wide-band firearms (machine guns among them) "
        "for the fold that never hears the Kaggle rifles",
        [GAME_GUNFIRE],
    ),
    "shipped_gunfire2": (
        "shipped_gunfire at another seed: are its belize loss and its Kaggle gain more than a seed moves?",
        [GAME_GUNFIRE, (train, "SEED", train.SEED + 1)],
    ),
    "shipped_gunfire3": (
        "shipped_gunfire at a third seed: is its belize loss more than a seed moves?",
        [GAME_GUNFIRE, (train, "SEED", train.SEED + 2)],
    ),
    "shipped_gunfire_light": (
        "shipped_gunfire at a quarter of the dose (each game gun 5 times, not 20): does less keep the Kaggle "
        "gain without the belize loss?",
        [GAME_GUNFIRE, (extra_gunfire, "REPEATS", 5)],
    ),
    "shipped_no_us8k_shots": (
        "the shipped recipe without the us8k gunshots in training (its other sounds kept): one source of guns "
        "and recorders fewer (80 of the belize fold's 1261 real training shots)",
        [(train, "build_windows", _training_shots_kept(_not_from("us8k")))],
    ),
    "shipped_no_kaggle_shots": (
        "the shipped recipe without the Kaggle rifles in training: one source of guns fewer (371 of the belize "
        "fold's 1261 real training shots, 371 of the us8k fold's 1575)",
        [(train, "build_windows", _training_shots_kept(_not_from("kaggle_guns")))],
    ),
    "shipped_no_elp_shots": (
        "the shipped recipe without the elp gunshots in training (its other sounds kept): one source of guns "
        "and recorders fewer (810 of the belize fold's 1261 real training shots)",
        [(train, "build_windows", _training_shots_kept(_not_from("elp")))],
    ),
    "shipped_no_elp": (
        "the shipped recipe without any elp clip in training, its gunshots and its 19 other clips: "
        "shipped_no_elp_shots without its recorder heard in negatives only",
        [(train, "build_windows", _training_clips_kept(_not_from("elp")))],
    ),
    "shipped_no_belize_shots": (
        "the shipped recipe without the belize gunshots in training (its other sounds kept): one source of guns "
        "and recorders fewer (394 of the us8k fold's 1575 real training shots)",
        [(train, "build_windows", _training_shots_kept(_not_from("belize")))],
    ),
    "shipped_thinned": (
        "the shipped recipe with each real training shot kept with probability 1 - 371/1261 (by a hash of its "
        "path): in the belize fold as many shots fewer as shipped_no_kaggle_shots (in the us8k fold 493 of "
        "1575), from every source",
        [(train, "build_windows", _training_shots_kept(_thinned(BELIZE_FOLD_KAGGLE_SHARE)))],
    ),
    "shipped_thinned_more": (
        "the shipped recipe with each real training shot kept with probability 1 - 810/1261 (by a hash of its "
        "path): in the belize fold as many shots fewer as shipped_no_elp_shots, from every source",
        [(train, "build_windows", _training_shots_kept(_thinned(BELIZE_FOLD_ELP_SHARE)))],
    ),
    "shipped_wide": (
        "the shipped recipe with mel models twice as wide (filters 48-96-128-192; about 4x their MACs)",
        [WIDER_MEL],
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


ON_SHIPPED_RECIPE = {
    "shipped",
    "shipped_smooth",
    "shipped_gunfire",
    "shipped_gunfire2",
    "shipped_gunfire3",
    "shipped_gunfire_light",
    "shipped_wide",
    "shipped_no_us8k_shots",
    "shipped_no_kaggle_shots",
    "shipped_no_elp_shots",
    "shipped_no_elp",
    "shipped_no_belize_shots",
    "shipped_thinned",
    "shipped_thinned_more",
    "shipped_adversarial",
    "shipped_adversarial_strong",
}


def applied(variant: str) -> contextlib.AbstractContextManager[None]:
    """The recipe with `variant`'s changes (on ONE_SECOND_RECIPE but for ON_SHIPPED_RECIPE); restored on
    exit. Its windows are cached under this module's code too (and the modules its variants draw on):
    a variant changed here rebuilds them."""
    base = [] if variant in ON_SHIPPED_RECIPE else ONE_SECOND_RECIPE
    window_code = (train, "WINDOW_CODE", (*train.WINDOW_CODE, sys.modules[__name__], extra_gunfire, prototype))
    return _swapped([*base, *VARIANTS[variant][1], window_code])


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
    clips = load_clips(manifest, out / "cache")
    held = [c for c in clips if c.source == source]
    probs, _ = clip_window_probs(fold, held)
    figures = loso.held_out_figures(fold, held, probs)
    vote = figures["ensemble"]
    labels = np.array([c.label for c in held], dtype=bool)
    result = {
        "tests": VARIANTS[variant][0],
        "vote": {k: vote[k] for k in ("recall", "f1", "fp")},
        "command": f"python -m models.training.ablations {variant} --source {source}",
        "calibration_background_hours": figures["calibration_background_hours"],
    }
    if labels.all():  # a source of gunshots only (kaggle_guns): no sounds of its own to rank them against
        return {**result, "against_validation": against_validation(fold, source, probs, clips)}
    return {
        **result,
        "ranking": held_out_ranking(probs, labels),
        "rolled": held_out_ranking(clip_window_probs(fold, rolled(held))[0], labels),
    }


def against_validation(fold: Path, source: str, held_probs: list[dict], clips: list[Clip]) -> dict:
    """A held-out source's shots ranked against the fold's validation negatives: the other sources'
    sounds that set its thresholds, never trained on. How far above them an unseen gun scores."""
    negatives = [c for c in clips if c.fold == "val" and not c.label and c.source != source]
    labels = np.r_[np.ones(len(held_probs), dtype=bool), np.zeros(len(negatives), dtype=bool)]
    return held_out_ranking(held_probs + clip_window_probs(fold, negatives)[0], labels)


def wave_inside(long: dict[str, np.ndarray], short: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A clip's 2 s window scores with the waveform model's replaced by the best of the 1 s windows
    inside each (both start every HOP: window i of 2 s holds the 1 s windows i .. i + inside - 1)."""
    inside = (LONG_WINDOW - augment.WINDOW) // HOP + 1
    wave = np.array([short["wave"][i : i + inside].max() for i in range(len(long["wave"]))])
    return {**long, "wave": wave}


def seed_mean(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each model's window scores averaged in log-odds over two trainings of one recipe."""
    return {m: sigmoid((logit(a[m]) + logit(b[m])) / 2) for m in a}


@dataclasses.dataclass(frozen=True)
class Combination:
    """Scored, not trained: the folds of two variants, one clip's window scores from each combined."""

    parts: tuple[str, str]
    combine: Callable[[dict, dict], dict]
    what: str  # {0}, {1}: the parts

    @property
    def tests(self) -> str:
        return "scored, not trained: " + self.what.format(*self.parts)


HYBRID = (
    "{0}'s mel models with {1}' 1 s waveform model (its best 1 s window inside each 2 s window); "
    "chosen after seeing the held-out sources"
)
COMBINATIONS = {
    "hybrid": Combination(("longproto", "ours"), wave_inside, HYBRID),
    "hybrid2": Combination(("longproto2", "ours"), wave_inside, HYBRID),
    "seeds": Combination(
        ("ours", "ours3"), seed_mean, "{0} and {1} (two seeds of one recipe), each model's log-odds averaged"
    ),
}


def _scored_by_system(name: str, source: str, clips: list[Clip]) -> dict[str, Scored]:
    """The clips scored by the combination `name` and by each of its parts' folds alone."""
    what = COMBINATIONS[name]
    alone = {part: scored(RUNS / f"ablation-{part}" / f"without-{source}", clips) for part in what.parts}
    first, second = alone.values()
    combined = [what.combine(a, b) for a, b in zip(first.probs, second.probs, strict=True)]
    return {name: Scored(clips, combined, first.durations), **alone}


def combination(name: str, manifest: Path, source: str) -> dict:
    """The combination's folds, trained before, scored together on the held-out source and on the
    validation fold beside each part alone (validation and held-out sources disagree about them),
    and for each the vote the calibration chooses on the validation clips alone (no mixture)."""
    clips = load_clips(manifest, RUNS / f"ablation-{COMBINATIONS[name].parts[1]}" / "cache")
    held = _scored_by_system(name, source, [c for c in clips if c.source == source])
    val = _scored_by_system(name, source, [c for c in clips if c.fold == "val" and c.source != source])
    return {
        "tests": COMBINATIONS[name].tests,
        "command": f"python -m models.training.ablations {name} --source {source}",
        "ranking": held_out_ranking(held[name].probs, held[name].labels),
        "validation_clip_auc": {s: round(roc_auc(v.labels, clip_scores(v.probs)), 4) for s, v in val.items()},
        "vote_on_validation_clips": {s: outcome(target_rule(v), held[s]) for s, v in val.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", choices=[*sorted(VARIANTS), *COMBINATIONS])
    parser.add_argument("--source", default="belize")
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    parser.add_argument("--score-only", action="store_true", help="score the folds trained before")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for variant in args.variants:
        if variant in COMBINATIONS:
            result = combination(variant, args.manifest, args.source)
        else:
            result = run(variant, args.manifest, args.source, args.score_only)
        report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        report.setdefault(args.source, {})[variant] = result
        REPORT.write_text(json.dumps(report, indent=1))
        log.info("%s: %s", variant, json.dumps(result["ranking"]["fused"] if "ranking" in result else result["vote"]))


if __name__ == "__main__":
    main()
