"""A training stopped midway resumes at the first model it had not trained (real Keras training and
TFLite export on a few synthetic clips, one epoch; real calibration on short mixtures)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.training import train
from models.training.data import Clip

pytest.importorskip("tensorflow")

TINY_COPIES = {"positive": 2, "negative": 2, "ambient": 2, "noise": 200, "synthetic": 120}
SHORT_MIXTURE_HOURS = 0.02  # 72 s: two inserted shots per calibration mixture


class Stopped(Exception):
    """Stands in for the kill (OOM, power cut) that ends a long training run."""


def clips() -> list[Clip]:
    rng = np.random.default_rng(0)
    made = []
    for fold in ("train", "val"):
        for i in range(4):
            bed = (rng.standard_normal(48000) * 0.01).astype(np.float32)
            shot = bed.copy()
            shot[20000:20800] += np.hanning(800).astype(np.float32) * rng.uniform(0.3, 0.9)
            made.append(Clip(f"{fold}/shot{i}.flac", 1, "gunshot", "s", f"{fold}{i}", fold, shot))
            made.append(Clip(f"{fold}/rain{i}.flac", 0, "rain", "s", f"{fold}{i}", fold, bed))
    return made


def test_a_stopped_training_resumes_at_the_model_it_had_not_trained(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "CALIBRATION_HOURS", SHORT_MIXTURE_HOURS)
    real_train_one = train.train_one
    trained: list[str] = []

    def train_one(model_id, *args):
        if model_id == stop_at:
            raise Stopped(model_id)
        trained.append(model_id)
        return real_train_one(model_id, *args)

    monkeypatch.setattr(train, "train_one", train_one)
    stop_at = "mel_coarse"
    with pytest.raises(Stopped):
        train.train_models(clips(), tmp_path, 1, TINY_COPIES, "quick")
    assert trained == ["wave", "mel_fine"] and not (tmp_path / "ensemble.json").exists()
    wave_model = (tmp_path / "wave.tflite").read_bytes()

    stop_at, trained[:] = None, []
    train.train_models(clips(), tmp_path, 1, TINY_COPIES, "quick")
    assert trained == ["mel_coarse"]  # the two trained before are kept, not trained again
    assert (tmp_path / "wave.tflite").read_bytes() == wave_model
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert set(report["models"]) == set(train.MODEL_IDS)  # the kept models' figures from their records
    assert report["data"]["16000_samples"]["train_windows"] > 0 and (tmp_path / "ensemble.json").exists()

    train.train_models(clips(), tmp_path, 1, TINY_COPIES, "quick")
    assert trained == ["mel_coarse"]  # run again with the same settings: nothing to train
    train.train_models(clips(), tmp_path, 2, TINY_COPIES, "quick", only=("wave",))
    assert trained == ["mel_coarse", "wave"]  # other epochs: trained again
    (tmp_path / "mel_fine.tflite").write_bytes((tmp_path / "mel_coarse.tflite").read_bytes())
    train.train_models(clips(), tmp_path, 1, TINY_COPIES, "quick", only=("mel_fine",))
    assert trained == ["mel_coarse", "wave", "mel_fine"]  # its file replaced since: not the model it trained
