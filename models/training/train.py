"""Train the three CNNs, export them to TFLite with sidecars, choose thresholds on validation.

    python cli.py train [--manifest ../shared/data/manifest.csv] [--out models/] [--epochs N] [--quick]

Deterministic (fixed seeds); the decoded clips and the augmented windows are cached under
OUT/cache/ so a rerun with the same settings skips straight to training. Each model trained is
recorded there too (cache/trained-MODEL.json): a run stopped midway resumes at the first model not
trained yet with the same windows, code and epochs, and chooses the thresholds again (--retrain
trains every model again).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from types import ModuleType
from typing import NamedTuple, TypedDict

import numpy as np

from capture.pcm import float_to_int16, int16_to_float
from inference import features
from inference.features import LogMelFrontend, LogMelSpec
from models.training import augment, extra_negatives, synthetic
from models.training.data import SAMPLE_RATE, Clip, load_clips
from models.training.evaluate import HOP, MERGE_GAP_S, choose_thresholds, clip_window_probs, window_metrics
from models.training.streaming import joined, stream_scores

SEED = 20261125
MODEL_IDS = ("wave", "mel_fine", "mel_coarse")
# What each model hears (n_fft, hop, mel bands; window samples): the mel models 2 s at the 2019
# design's resolution, the waveform model 1 s, scored as its best 1 s inside each 2 s vote window
# (inference/worker.py, WindowScorer). Chosen from the leave-one-source-out ablations by the
# ranking of the held-out sources other than the one judged (models/training/recipe_choice.py:
# "hybrid", until `shipped_smooth`, label smoothing on it, was run; see models/README.md); until
# 2026-12-04 every model heard 1 s (ablations.ONE_SECOND_RECIPE).
LOGMEL = {"mel_fine": (2048, 250, 128), "mel_coarse": (2048, 500, 128)}
WINDOW_SAMPLES = {"wave": augment.WINDOW, "mel_fine": 2 * SAMPLE_RATE, "mel_coarse": 2 * SAMPLE_RATE}
VOTES_CHOICES = (1, 2, 3)  # k of n: chosen on validation with the thresholds
CALIBRATION_HOURS = 4.0  # a validation mixture of this length per seed (memory: streaming.MEMORY_BYTES_PER_HOUR)
# Three mixtures, 10.5 h of background: 0.5 false alerts per hour allows five. One (3.5 h, one false
# alert) set thresholds that false-alerted 0.63 times an hour on 9 h of the reported proxy (seed 0).
CALIBRATION_SEEDS = (1, 2, 3)
FMIN, FMAX = 50.0, 8000.0
# The code that makes the training windows besides this module: a change to any of it rebuilds the
# cached windows (models/training/ablations.py adds its own module while a variant is applied).
WINDOW_CODE: tuple[ModuleType, ...] = (augment, synthetic, extra_negatives)
ARCHITECTURES = Path(__file__).with_name("architectures.py")  # imported with TensorFlow, when a model is built
# "synthetic": windows holding a synthetic shot (models/training/synthetic.py), about a fifth of the
# positives: what every shot shares, against the four recorded sources' own guns and places.
COPIES = {"positive": 4, "negative": 4, "ambient": 8, "noise": 1500, "synthetic": 1500}
# `--copies-scale 3 --epochs 20` was measured and not shipped (models/README.md, failure modes).
QUICK_COPIES = {"positive": 1, "negative": 1, "ambient": 1, "noise": 100, "synthetic": 20}
# Long ambient recordings from the gunshot sources' own places: the negatives most like a shot's
# surroundings, so the model must learn the shot and not the place.
AMBIENT = frozenset(
    {
        "background",
        "forest_other",
        "air_conditioner",
        "engine_idling",
        "street_music",
        "children_playing",
        "wind",
        "rain",
        "crickets",
        "insects",
    }
)
EPOCHS, QUICK_EPOCHS = 40, 2
BATCH = 64
HARD_NEGATIVE_WEIGHT = 2.0
PATIENCE = 8
# Polyak (exponential moving) average of the weights, used for validation, early stopping and export
# when set: None trains as before. 0.997 averages over about 330 steps (two leave-one-source-out epochs).
EMA_MOMENTUM: float | None = None
# The training loss: a keras.losses class name and its arguments (ablations swap it).
LOSS: tuple[str, dict] = ("BinaryCrossentropy", {})
REPRESENTATIVE_WINDOWS = 300
VAL_AUC = "val_auc"  # the metric early stopping follows: the validation windows' AUC
INT8_MAX_AUC_LOSS = 0.002  # quantisation is kept unless it costs more validation AUC than this
# Tried in order. Not full int8: its int8 output moves in steps of 1/256 and saturates at 0.996, so
# thresholds above 0.99 (which the false-alert target needs) cannot be told apart; and for the
# waveform model, int8 input quantisation (steps of 1/128) zeroes quiet audio.
QUANTISATION = ("dynamic", "float32")

log = logging.getLogger("train")


def logmel_spec(model_id: str) -> LogMelSpec:
    import librosa

    n_fft, hop, n_mels = LOGMEL[model_id]
    filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels, fmin=FMIN, fmax=FMAX)
    return LogMelSpec(SAMPLE_RATE, n_fft, hop, n_mels, FMIN, FMAX, filters)


def as_captured(x: np.ndarray) -> np.ndarray:
    """What the runtime sees: float audio quantised to int16 as a sound card delivers it."""
    return int16_to_float(float_to_int16(x))


def window_kind(clip: Clip) -> str:
    return "positive" if clip.label else "ambient" if clip.category in AMBIENT else "negative"


def bandlimit_probabilities(clips: list[Clip], copies: dict[str, int]) -> dict[int, float]:
    """Per label, how often its windows are band-limited (augment.balanced_bandlimit), from how many
    of them come from narrow-band clips (synthetic shots and synthetic noise are wide-band)."""
    windows = {1: copies["synthetic"], 0: copies["noise"]}
    narrow = {1: 0, 0: 0}
    for clip in clips:
        count = copies[window_kind(clip)]
        windows[clip.label] += count
        narrow[clip.label] += count * augment.narrowband(clip.audio)
    return augment.balanced_bandlimit({label: narrow[label] / max(windows[label], 1) for label in windows})


def build_windows(
    clips: list[Clip], copies: dict[str, int], seed: int, window: int = augment.WINDOW
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    negatives = [c for c in clips if not c.label]
    p_bandlimit = bandlimit_probabilities(clips, copies)
    log.info("band-limiting %.2f of the gunshot windows, %.2f of the others", p_bandlimit[1], p_bandlimit[0])
    windows, labels, weights = [], [], []
    for clip in clips:
        kind = window_kind(clip)
        for _ in range(copies[kind]):
            if clip.label:
                windows.append(augment.positive_window(rng, clip.audio, negatives, p_bandlimit[1], window))
            else:
                windows.append(augment.negative_window(rng, clip, negatives, p_bandlimit[0], window))
            labels.append(clip.label)
            weights.append(HARD_NEGATIVE_WEIGHT if clip.hard_negative or kind == "ambient" else 1.0)
    for _ in range(copies["synthetic"]):
        windows.append(augment.positive_window(rng, synthetic.gunshot(rng), negatives, p_bandlimit[1], window))
        labels.append(1)
        weights.append(1.0)
    for _ in range(copies["noise"]):
        noise = augment.colored_noise(rng, window, rng.choice(["white", "pink", "brown", "wind"]))
        windows.append(augment.finish(rng, augment.colour(rng, noise, p_bandlimit[0])))
        labels.append(0)
        weights.append(1.0)
    x = np.stack(windows)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"{int((~finite).sum())} of {len(x)} augmented training windows are not finite: a bug in augment.py"
        )
    x = as_captured(x)
    return x, np.asarray(labels, dtype=np.float32), np.asarray(weights, dtype=np.float32)


def plain_windows(clips: list[Clip], window: int = augment.WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Unaugmented validation windows: each shot at two positions, each negative at its start."""
    windows, labels = [], []
    for clip in clips:
        for position in (0.25, 0.6) if clip.label else (0.0,):
            windows.append(augment.plain_window(clip, position, window))
            labels.append(clip.label)
    return as_captured(np.stack(windows)), np.asarray(labels, dtype=np.float32)


class TrainingWindows(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    def counts(self) -> dict[str, int]:
        return {"train_windows": len(self.y_train), "val_windows": len(self.y_val)}


def training_windows(
    train: list[Clip], val: list[Clip], copies: dict[str, int], cache: Path, tag: str, window: int
) -> TrainingWindows:
    """Augmented training windows of `window` samples, and validation windows (augmented and
    plain), cached under `tag`. Every length is built from the same seeds."""
    x_tr, y_tr, w_tr = cached_windows(
        cache, f"train-{tag}-{window}", lambda: build_windows(train, copies, SEED, window)
    )
    x_va_aug, y_va_aug, _ = cached_windows(
        cache, f"val-aug-{tag}-{window}", lambda: build_windows(val, QUICK_COPIES, SEED + 1, window)
    )
    x_va_plain, y_va_plain = cached_windows(
        cache, f"val-plain-{_clips_digest(val)}-{window}", lambda: plain_windows(val, window)
    )
    log.info(
        "%d-sample windows: %d train (%d gunshot), %d val",
        window,
        len(y_tr),
        int(y_tr.sum()),
        len(y_va_aug) + len(y_va_plain),
    )
    return TrainingWindows(
        x_tr, y_tr, w_tr, np.concatenate([x_va_aug, x_va_plain]), np.concatenate([y_va_aug, y_va_plain])
    )


def model_inputs(model_id: str, waves: np.ndarray, spec: LogMelSpec | None) -> np.ndarray:
    if spec is None:
        return waves
    frontend = LogMelFrontend(spec)
    return np.stack([frontend.frames(w) for w in waves])


def cached_windows(cache: Path, name: str, build) -> tuple[np.ndarray, ...]:
    path = cache / f"{name}.npz"
    if path.exists():
        stored = np.load(path)
        return tuple(stored[k] for k in sorted(stored.files))
    arrays = build()
    np.savez(path, **{f"a{i}": a for i, a in enumerate(arrays)})
    return arrays


def new_model(model_id: str, x_train: np.ndarray, spec: LogMelSpec | None):
    """The model's architecture, untrained; a mel model standardises its input by the training windows'."""
    from models.training.architectures import mel_model, wave_model

    if spec is None:
        return wave_model()
    mean, std = float(np.mean(x_train[:2000])), float(np.std(x_train[:2000]))
    return mel_model(model_id, x_train.shape[1], x_train.shape[2], mean, std)


def callbacks(model_id: str, out_dir: Path, monitor: str = VAL_AUC) -> list:
    """Early stopping on the validation AUC (`monitor`), the learning rate halved on its plateaus, a CSV log."""
    import keras

    return [
        keras.callbacks.EarlyStopping(monitor, mode="max", patience=PATIENCE, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor, mode="max", factor=0.5, patience=2),
        keras.callbacks.CSVLogger(str(out_dir / "cache" / f"train-{model_id}.csv")),
    ]


def fit_info(model, history, started: float, monitor: str = VAL_AUC) -> dict:
    """What the run's metrics record of a trained model: epochs, best validation AUC, size, cost, time."""
    from models.training.architectures import count_macs

    return {
        "epochs_run": len(history.history["loss"]),
        "best_val_auc": float(max(history.history[monitor])),
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "train_seconds": round(time.monotonic() - started, 1),
    }


def train_one(model_id, x_train, y_train, w_train, x_val, y_val, epochs, spec, out_dir):
    import keras

    keras.utils.set_random_seed(SEED)
    model = new_model(model_id, x_train, spec)
    averaged = EMA_MOMENTUM is not None
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, use_ema=averaged, ema_momentum=EMA_MOMENTUM or 0.99),
        loss=getattr(keras.losses, LOSS[0])(**LOSS[1]),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="acc")],
    )
    # SwapEMAWeights first: the callbacks after it see (and early stopping keeps) the averaged weights.
    swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if averaged else []
    started = time.monotonic()
    history = model.fit(
        x_train,
        y_train,
        sample_weight=w_train,
        validation_data=(x_val, y_val),
        batch_size=BATCH,
        epochs=epochs,
        callbacks=swap + callbacks(model_id, out_dir),
        verbose=2,
        shuffle=True,
    )
    return model, fit_info(model, history, started)


def export(model, rep_inputs: np.ndarray, mode: str) -> bytes:
    """mode: "int8" (weights and activations, calibrated on real windows; float input/output),
    "dynamic" (int8 weights, float activations) or "float32"."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("int8", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":

        def representative():
            for x in rep_inputs:
                yield [x[None].astype(np.float32)]

        converter.representative_dataset = representative
    return converter.convert()


def main(
    manifest: Path,
    out: Path,
    epochs: int | None = None,
    quick: bool = False,
    only: tuple[str, ...] = MODEL_IDS,
    extra: tuple[str, ...] = (),
    copies_scale: int = 1,
    retrain: bool = False,
) -> None:
    """Train the models in `only` (the others keep their exported files), then calibrate all.
    `copies_scale` multiplies the augmented windows made of each clip (COPIES)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    schedule = "quick" if quick else "full"
    clips = load_clips(manifest, out / "cache")
    train_models(
        clips,
        out,
        epochs or (QUICK_EPOCHS if quick else EPOCHS),
        QUICK_COPIES if quick else scaled(COPIES, copies_scale),
        schedule,
        only,
        extra,
        retrain,
    )


def scaled(copies: dict[str, int], scale: int) -> dict[str, int]:
    return {kind: count * scale for kind, count in copies.items()}


def train_models(
    clips: list[Clip],
    out: Path,
    epochs: int,
    copies: dict[str, int],
    schedule: str,
    only: tuple[str, ...] = MODEL_IDS,
    extra: tuple[str, ...] = (),
    retrain: bool = False,
) -> None:
    """Train on the clips' training fold, export into `out`, calibrate on their validation fold.

    `schedule` names the run in the model version and keys the window cache (with the clips used).
    `extra`: the training fold gets these groups of extra negatives (models/training/extra_negatives.py).
    A model trained before with the same settings is kept unless `retrain`."""
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    train = [c for c in clips if c.fold == "train"] + (extra_negatives.load(extra) if extra else [])
    val = [c for c in clips if c.fold == "val"]
    log.info("clips: %d train, %d val", len(train), len(val))
    tag = f"{schedule}{''.join(f'-{g}' for g in sorted(extra))}-{_recipe_digest(copies)}-{_clips_digest(clips)}"
    version = f"{datetime.date.today():%Y.%m.%d}-{schedule}"
    report = {"version": version, "models": {}, "data": {}}
    kept = kept_figures(out, [m for m in MODEL_IDS if m not in only])
    report["models"].update(kept["models"])
    report["data"].update(kept["data"])
    windows: dict[int, TrainingWindows] = {}  # by window length, built when a model first needs it
    for model_id in (m for m in MODEL_IDS if m in only):
        length = WINDOW_SAMPLES[model_id]
        key = _training_key(tag, model_id, epochs)
        trained = None if retrain else _trained_before(out, model_id, key)
        if trained is None:
            if length not in windows:
                windows[length] = training_windows(train, val, copies, cache, tag, length)
            trained = train_and_export(model_id, windows[length], epochs, out, version)
            _record_trained(out, model_id, key, trained)
        report["models"][model_id] = trained["info"]
        report["data"][f"{length}_samples"] = trained["windows"]
    calibrate(out, val, version, report)


class Trained(TypedDict):
    """A trained model's figures for metrics.json, also kept in its record (cache/trained-MODEL.json)."""

    info: dict
    windows: dict[str, int]


def train_and_export(model_id: str, windows: TrainingWindows, epochs: int, out: Path, version: str) -> Trained:
    """One model trained, saved (Keras), exported to TFLite with its sidecar; its training figures."""
    x_tr, y_tr, w_tr, x_va, y_va = windows
    spec = logmel_spec(model_id) if model_id in LOGMEL else None
    inputs_tr = model_inputs(model_id, x_tr, spec)
    inputs_va = model_inputs(model_id, x_va, spec)
    model, info = train_one(model_id, inputs_tr, y_tr, w_tr, inputs_va, y_va, epochs, spec, out)
    (out / "keras").mkdir(exist_ok=True)
    model.save(out / "keras" / f"{model_id}.keras")
    keras_probs = model.predict(inputs_va, batch_size=256, verbose=0).reshape(-1)
    rep = inputs_tr[np.random.default_rng(SEED).choice(len(inputs_tr), REPRESENTATIVE_WINDOWS, replace=False)]
    info["keras_val"] = window_metrics(y_va, keras_probs)
    for mode in QUANTISATION:
        (out / f"{model_id}.tflite").write_bytes(export(model, rep, mode))
        metrics = window_metrics(y_va, _tflite_probs(out / f"{model_id}.tflite", inputs_va))
        info[f"{mode}_val"] = metrics
        info["quantisation"] = mode
        if info["keras_val"]["auc"] - metrics["auc"] <= INT8_MAX_AUC_LOSS:
            break
    info["tflite_bytes"] = (out / f"{model_id}.tflite").stat().st_size
    _write_sidecar(out, model_id, version, spec, info)
    log.info("%s: %s", model_id, json.dumps(info))
    return {"info": info, "windows": windows.counts()}


def _training_key(tag: str, model_id: str, epochs: int) -> str:
    """What a trained model was made of: its windows (`tag`: their code, copies, seed and clips), the
    code that builds and feeds it, and the epochs."""
    code = b"".join(path.read_bytes() for path in (ARCHITECTURES, Path(features.__file__)))
    return hashlib.sha1(code + f"{tag}-{model_id}-{epochs}".encode()).hexdigest()[:10]


def _record_path(out: Path, model_id: str) -> Path:
    return out / "cache" / f"trained-{model_id}.json"


def _record_trained(out: Path, model_id: str, key: str, trained: Trained) -> None:
    """Written whole or not at all (a kill mid-write leaves no record: the model is trained again)."""
    record = {"key": key, "tflite_sha1": _sha1(out / f"{model_id}.tflite"), **trained}
    partial = _record_path(out, model_id).with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, _record_path(out, model_id))


def _trained_before(out: Path, model_id: str, key: str) -> Trained | None:
    """A model this folder already holds, trained with the same `key` (a run stopped after it, or
    run again) and not replaced since: kept, so an interrupted training resumes at the next model."""
    record, model = _record_path(out, model_id), out / f"{model_id}.tflite"
    if not (record.exists() and model.exists() and (out / f"{model_id}.json").exists()):
        return None
    trained = json.loads(record.read_text())
    if trained["key"] != key or trained["tflite_sha1"] != _sha1(model):
        return None
    log.warning("%s: kept, trained before with the same windows, code and epochs (--retrain: train it again)", model_id)
    return Trained(info=trained["info"], windows=trained["windows"])


def kept_figures(out: Path, kept: list[str]) -> dict[str, dict]:
    """The training figures of the models not in `only` (only recalibrated), from the last run's metrics.json."""
    if not kept:
        return {"models": {}, "data": {}}
    last = json.loads((out / "metrics.json").read_text())
    lengths = {f"{WINDOW_SAMPLES[m]}_samples" for m in kept}
    return {
        "models": {m: last["models"][m] for m in kept},
        "data": {k: v for k, v in last["data"].items() if k in lengths},
    }


def calibrate(out: Path, val: list[Clip], version: str, report: dict) -> None:
    """Thresholds and vote chosen on the validation clips and validation mixtures (its background
    with its shots, other seeds than the reported streaming proxy) through the runtime path;
    figures saved."""
    probs, durations = clip_window_probs(out, val)
    stream = joined([stream_scores(out, val, HOP, CALIBRATION_HOURS, seed) for seed in CALIBRATION_SEEDS])
    rule, ensemble_figures = choose_thresholds(probs, val, durations, VOTES_CHOICES, stream)
    for model_id, threshold in rule.thresholds.items():
        sidecar = out / f"{model_id}.json"
        data = json.loads(sidecar.read_text())
        data["threshold"] = threshold
        data["validation"] = {"windows": data["validation"]["windows"], **ensemble_figures["per_model"][model_id]}
        sidecar.write_text(json.dumps(data, indent=1))
    report["ensemble"] = ensemble_figures
    ensemble = {
        "models": list(MODEL_IDS),
        "votes_required": rule.votes_required,
        **({"fused_threshold": rule.fused_threshold} if rule.fused_threshold is not None else {}),
        "version": version,
        "calibrated_at": {"hop_s": HOP / SAMPLE_RATE, "merge_gap_s": MERGE_GAP_S},
        "validation": ensemble_figures["ensemble"],
    }
    (out / "ensemble.json").write_text(json.dumps(ensemble, indent=1))
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    log.info("ensemble: %s", json.dumps(ensemble_figures["ensemble"]))


def recipe_of(models_dir: Path) -> dict[str, dict[str, int]]:
    """What each exported model hears, read from its sidecar: window and log-mel resolution."""
    recipe = {}
    for model_id in MODEL_IDS:
        sidecar = json.loads((Path(models_dir) / f"{model_id}.json").read_text())
        logmel = sidecar["input"].get("logmel") or {}
        recipe[model_id] = {"window_samples": sidecar["window_samples"]} | {
            key: logmel[key] for key in ("n_fft", "hop_length", "n_mels") if key in logmel
        }
    return recipe


def _recipe_digest(copies: dict[str, int]) -> str:
    """Cached windows are reused only for the same window code (WINDOW_CODE and this module, which
    builds the windows), copy counts and seed."""
    code = b"".join(Path(module.__file__).read_bytes() for module in WINDOW_CODE)
    code += Path(__file__).read_bytes()
    recipe = code + json.dumps({"copies": copies, "seed": SEED}, sort_keys=True).encode()
    return hashlib.sha1(recipe).hexdigest()[:10]


def recalibrate(manifest: Path, out: Path) -> None:
    """`python cli.py train --calibrate-only`: new thresholds and vote for the models in `out`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(out)
    recalibrate_clips(load_clips(manifest, out / "cache"), out)


def recalibrate_clips(clips: list[Clip], out: Path) -> None:
    """New thresholds and vote for the models in `out`, on the clips' validation fold."""
    report = json.loads((out / "metrics.json").read_text())
    version = json.loads((out / "ensemble.json").read_text())["version"]
    calibrate(out, [c for c in clips if c.fold == "val"], version, report)


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _clips_digest(clips: list[Clip]) -> str:
    """Which clips a cache entry was built from (a leave-one-source-out run uses fewer), in which fold."""
    return hashlib.sha1("\n".join(sorted(f"{c.path} {c.fold}" for c in clips)).encode()).hexdigest()[:8]


def _tflite_probs(path: Path, inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=2)
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    probs = np.empty(len(inputs), dtype=np.float32)
    for i, x in enumerate(inputs):
        interpreter.set_tensor(inp["index"], x[None].astype(np.float32))
        interpreter.invoke()
        probs[i] = interpreter.get_tensor(outp["index"]).reshape(-1)[0]
    return probs


def _write_sidecar(out: Path, model_id: str, version: str, spec: LogMelSpec | None, info: dict) -> None:
    sidecar = {
        "id": model_id,
        "version": version,
        "file": f"{model_id}.tflite",
        "sample_rate": SAMPLE_RATE,
        "window_samples": WINDOW_SAMPLES[model_id],
        "input": {"kind": "waveform"} if spec is None else {"kind": "logmel", "logmel": spec.to_json()},
        "threshold": 0.5,
        "validation": {"windows": info[f"{info['quantisation']}_val"]},
        "training": {k: v for k, v in info.items() if not k.endswith("_val")},
    }
    (out / f"{model_id}.json").write_text(json.dumps(sidecar, indent=1))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=MODEL_IDS,
        default=list(MODEL_IDS),
        help="train these models (unless trained before with the same settings); the others are only recalibrated",
    )
    parser.add_argument("--retrain", action="store_true", help="train again the models trained before, too")
    args = parser.parse_args()
    main(args.manifest, args.out, args.epochs, args.quick, tuple(args.only), retrain=args.retrain)


if __name__ == "__main__":
    cli()
