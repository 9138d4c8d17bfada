"""TFLite (ai-edge-litert, the runtime) against the Keras models they were exported from, on real clips.

TensorFlow runs in a separate process: the runtime never imports it, and the two runtimes are
kept apart as they would be on the Pi.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capture.audio_file import read_audio
from capture.pcm import float_to_int16, int16_to_float
from inference.features import LogMelFrontend
from inference.model import SHIPPED_MODELS, TFLiteModel, load_ensemble
from tests.conftest import SHARED_DATA
from tests.shared_data import validation_rows

pytest.importorskip("tensorflow")
CLIPS_PER_LABEL = 6
# int8 weights and activations move a probability by a few hundredths on these models; the
# threshold search works on a 0.05-0.1 grid, so a tolerance of 0.05 keeps every decision honest
# except at the very edge.
TOLERANCE = 0.05

KERAS_SCRIPT = """
import sys, numpy as np, keras
import models.training.architectures  # registers the custom layers
model = keras.models.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x, verbose=0).reshape(-1))
"""


def validation_windows(length: int) -> np.ndarray:
    """A window of `length` samples from each clip, its loudest sample a quarter in."""
    windows = []
    for row in validation_rows(CLIPS_PER_LABEL):
        audio = read_audio(SHARED_DATA / row["path"], 16000)
        peak = int(np.argmax(np.abs(audio)))
        start = max(0, min(peak - length // 4, len(audio) - length))
        window = np.zeros(length, dtype=np.float32)
        piece = audio[start : start + length]
        window[: len(piece)] = piece
        windows.append(int16_to_float(float_to_int16(window)))
    return np.stack(windows)


@pytest.mark.parametrize("model_id", ["wave", "mel_fine", "mel_coarse"])
def test_tflite_matches_keras_on_real_clips(model_id, tmp_path):
    spec = next(m for m in load_ensemble("").models if m.id == model_id)
    waves = validation_windows(spec.window_samples)
    inputs = waves if spec.logmel is None else np.stack([LogMelFrontend(spec.logmel).frames(w) for w in waves])
    np.save(tmp_path / "x.npy", inputs)
    keras_file = SHIPPED_MODELS / "keras" / f"{model_id}.keras"
    result = subprocess.run(
        [sys.executable, "-c", KERAS_SCRIPT, str(keras_file), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    keras_probs = np.load(tmp_path / "y.npy")
    model = TFLiteModel(spec)
    tflite_probs = np.array([model.predict(x) for x in inputs])
    assert np.max(np.abs(keras_probs - tflite_probs)) < TOLERANCE, np.c_[keras_probs, tflite_probs]
    sidecar = json.loads((SHIPPED_MODELS / f"{model_id}.json").read_text())
    assert 0 < sidecar["threshold"] < 1
