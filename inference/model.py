"""The exported models: sidecar specs and a LiteRT interpreter per model.

Only `ai_edge_litert` is imported here; TensorFlow and librosa stay out of runtime processes.
A sidecar that does not match its .tflite file (or the other models) is refused at load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.features import LogMelSpec
from inference.litert_log import litert_lines_to_log
from inference.vote import VoteRule

ENSEMBLE_FILE = "ensemble.json"
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"
LITERT_THREADS = 1  # measured: one thread per model process is fastest for these small models


class ModelError(ValueError):
    """A model folder or sidecar problem; the message names the file."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    version: str
    path: Path
    sample_rate: int
    window_samples: int
    threshold: float
    logmel: LogMelSpec | None  # None: the model takes the raw waveform

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.logmel is None:
            return (1, self.window_samples)
        return (1, self.logmel.frames_in(self.window_samples), self.logmel.n_mels)


@dataclass(frozen=True)
class Ensemble:
    models: tuple[ModelSpec, ...]
    votes_required: int
    fused_threshold: float | None = None  # set: the fused vote decides (inference/vote.py)
    calibrated_at: tuple[float, float] | None = None  # (hop, merge gap) in s the thresholds were chosen at

    def rule(self, votes_required: int = 0, fused_threshold: float = 0.0) -> VoteRule:
        """The stored vote; a nonzero `votes_required` (detector.votes_required) asks for k of n
        with the models' own thresholds instead, a nonzero `fused_threshold`
        (detector.fused_threshold) for the fused vote at that threshold."""
        thresholds = {m.id: m.threshold for m in self.models}
        if votes_required:
            return VoteRule(thresholds, votes_required)
        return VoteRule(thresholds, self.votes_required, fused_threshold or self.fused_threshold)

    @property
    def sample_rate(self) -> int:
        return self.models[0].sample_rate

    @property
    def window_samples(self) -> int:
        """The longest model window: the window the vote decides. A model with a shorter one
        scores its best window inside it (inference/worker.py, WindowScorer)."""
        return max(m.window_samples for m in self.models)

    def model(self, model_id: str) -> ModelSpec:
        return next(m for m in self.models if m.id == model_id)

    def logmel_specs(self) -> dict[str, LogMelSpec]:
        """Distinct log-mel streams by key: each is computed once, whichever models share it."""
        return {m.logmel.key: m.logmel for m in self.models if m.logmel is not None}


def models_dir_of(configured: str) -> Path:
    """The configured models folder, or the shipped one when the setting is empty."""
    return Path(configured) if configured else SHIPPED_MODELS


def load_ensemble(models_dir: Path | str) -> Ensemble:
    models_dir = models_dir_of(str(models_dir))
    index = _read_json(models_dir / ENSEMBLE_FILE)
    try:
        ids, votes_required = index["models"], int(index["votes_required"])
        fused = index.get("fused_threshold")
        fused = None if fused is None else float(fused)
        at = index.get("calibrated_at")
        calibrated_at = None if at is None else (float(at["hop_s"]), float(at["merge_gap_s"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{models_dir / ENSEMBLE_FILE}: missing or bad key {exc}") from None
    if fused is not None and not 0.0 < fused < 1.0:
        raise ModelError(f"{models_dir / ENSEMBLE_FILE}: fused_threshold {fused} must be between 0 and 1")
    models = tuple(load_spec(models_dir, model_id) for model_id in ids)
    if not models:
        raise ModelError(f"{models_dir / ENSEMBLE_FILE}: lists no models")
    first = models[0]
    for model in models[1:]:
        if model.sample_rate != first.sample_rate:
            raise ModelError(
                f"model {model.id} expects {model.sample_rate} Hz audio, model {first.id} "
                f"{first.sample_rate} Hz: they cannot vote together"
            )
    ensemble = Ensemble(models, votes_required, fused, calibrated_at)
    try:
        ensemble.rule()
    except ValueError as exc:
        raise ModelError(f"{models_dir / ENSEMBLE_FILE}: {exc}") from None
    return ensemble


def load_spec(models_dir: Path | str, model_id: str) -> ModelSpec:
    models_dir = models_dir_of(str(models_dir))
    sidecar = models_dir / f"{model_id}.json"
    data = _read_json(sidecar)
    try:
        kind = data["input"]["kind"]
        logmel = LogMelSpec.from_json(data["input"]["logmel"]) if kind == "logmel" else None
        if kind not in ("logmel", "waveform"):
            raise ModelError(f"{sidecar}: input.kind {kind!r} is neither 'logmel' nor 'waveform'")
        spec = ModelSpec(
            id=data["id"],
            version=str(data["version"]),
            path=models_dir / data["file"],
            sample_rate=int(data["sample_rate"]),
            window_samples=int(data["window_samples"]),
            threshold=float(data["threshold"]),
            logmel=logmel,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{sidecar}: missing or bad key {exc}") from None
    if spec.id != model_id:
        raise ModelError(f"{sidecar}: id is {spec.id!r}, expected {model_id!r}")
    if not spec.path.is_file():
        raise ModelError(f"{sidecar}: model file {spec.path} is missing")
    if spec.logmel is not None and spec.logmel.sample_rate != spec.sample_rate:
        raise ModelError(f"{sidecar}: features at {spec.logmel.sample_rate} Hz, model at {spec.sample_rate} Hz")
    return spec


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing (train with `python cli.py train` or restore models/)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} cannot be read: {exc}") from None


class TFLiteModel:
    """One LiteRT interpreter, allocated once, tensor indices bound once."""

    def __init__(self, spec: ModelSpec, num_threads: int = LITERT_THREADS) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec = spec
        with litert_lines_to_log():
            self._interpreter = Interpreter(model_path=str(spec.path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        (out,) = self._interpreter.get_output_details()
        if tuple(inp["shape"]) != spec.input_shape:
            raise ModelError(
                f"{spec.path}: input shape {tuple(inp['shape'])} does not match its sidecar {spec.input_shape}"
            )
        self._input, self._output = inp["index"], out["index"]
        self._input_buffer = np.zeros(spec.input_shape, dtype=np.float32)

    def predict(self, x: np.ndarray) -> float:
        """Gunshot probability of one window (waveform or (frames, mels) features, no batch axis)."""
        self._input_buffer[0] = x
        self._interpreter.set_tensor(self._input, self._input_buffer)
        self._interpreter.invoke()
        return float(self._interpreter.get_tensor(self._output).reshape(-1)[0])
