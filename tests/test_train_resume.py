"""A training stopped midway resumes at the first model it had not trained, and keeps no model that
other settings or code would train differently; `cli.py train` makes models `analyze` runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from models.training import train
from models.training.data import REQUIRED_COLUMNS, Clip

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
    pytest.importorskip("tensorflow")
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
    train.train_models(clips(), tmp_path, 1, TINY_COPIES, "quick", only=("mel_fine",), retrain=True)
    assert trained == ["mel_coarse", "wave", "mel_fine", "mel_fine"]  # --retrain


def test_the_training_key_follows_what_a_model_is_made_of(tmp_path, monkeypatch):
    key = train._training_key("quick-abc-123", "wave", 12)
    others = {
        train._training_key("quick-abd-123", "wave", 12),  # other windows (code, copies, seed or clips)
        train._training_key("quick-abc-123", "mel_fine", 12),
        train._training_key("quick-abc-123", "wave", 13),
    }
    assert key not in others and len(others) == 3
    architectures = tmp_path / "architectures.py"
    architectures.write_bytes(train.ARCHITECTURES.read_bytes())
    monkeypatch.setattr(train, "ARCHITECTURES", architectures)
    assert train._training_key("quick-abc-123", "wave", 12) == key
    architectures.write_text(architectures.read_text() + "\nWIDER = True\n")
    assert train._training_key("quick-abc-123", "wave", 12) != key


def test_a_record_keeps_a_model_only_while_its_key_and_file_match(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "wave.tflite").write_bytes(b"model")
    (tmp_path / "wave.json").write_text("{}")
    trained = train.Trained(info={"epochs_run": 3}, windows={"train_windows": 10, "val_windows": 2})
    train._record_trained(tmp_path, "wave", "k1", trained)
    assert train._trained_before(tmp_path, "wave", "k1") == trained
    assert train._trained_before(tmp_path, "wave", "k2") is None  # other settings
    (tmp_path / "wave.tflite").write_bytes(b"another model")
    assert train._trained_before(tmp_path, "wave", "k1") is None  # the file replaced since


def test_the_window_cache_tells_a_clip_s_fold():
    clip = Clip("a.flac", 1, "gunshot", "s", "g", "train", np.zeros(1, dtype=np.float32))
    moved = Clip("a.flac", 1, "gunshot", "s", "g", "val", np.zeros(1, dtype=np.float32))
    assert train._clips_digest([clip]) != train._clips_digest([moved])  # a manifest split again


def test_train_from_the_command_line_exports_models_that_analyze_loads(tmp_path, monkeypatch):
    """The documented command end to end, at a tiny scale: a manifest of the shared data's form in,
    models, thresholds and vote out, then scored by the runtime path (`analyze`) through a config."""
    pytest.importorskip("tensorflow")
    from cli import main

    monkeypatch.setattr(train, "CALIBRATION_HOURS", SHORT_MIXTURE_HOURS)
    monkeypatch.setattr(train, "QUICK_COPIES", TINY_COPIES)
    rows = []
    for clip in clips():
        soundfile.write(tmp_path / clip.path.replace("/", "-"), clip.audio, train.SAMPLE_RATE)
        label = "gunshot" if clip.label else "other"
        rows.append([clip.path.replace("/", "-"), label, clip.category, clip.source, clip.split_group, clip.fold])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(",".join(row) for row in [list(REQUIRED_COLUMNS), *rows]) + "\n")
    out = tmp_path / "models"
    trained = CliRunner().invoke(main, ["train", "--manifest", str(manifest), "--out", str(out), "--quick"])
    assert trained.exit_code == 0, trained.output
    assert {p.name for p in out.glob("*.tflite")} == {f"{m}.tflite" for m in train.MODEL_IDS}
    config = tmp_path / "config.toml"
    config.write_text(f'[detector]\nmodels_dir = "{out}"\n')
    recording = str(tmp_path / rows[0][0])
    scores = []
    for settings in (["--config", str(config)], []):  # the trained models, then the shipped ones
        scored = CliRunner().invoke(main, ["analyze", *settings, "--format", "jsonl", recording])
        assert scored.exit_code == 0, scored.output
        scores.append(json.loads(scored.output.splitlines()[-1])["score"])
    assert 0.0 <= scores[0] <= 1.0 and scores[0] != scores[1]
