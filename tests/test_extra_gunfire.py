"""Training-only gunfire from Debian game data: what is picked (never a bundled test sound), how it
enters the training windows (training fold only), and the error when the packages are missing.
Built here from small files of our own; the packages are not needed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.training import ablations, extra_gunfire, extra_negatives, train
from models.training.data import Clip
from tests.test_extra_negatives import ogg_bytes


def test_the_game_guns_are_picked_but_never_the_bundled_test_sounds():
    wesnoth = next(s for s in extra_gunfire.SOURCES if s.name == "wesnoth-gunfire")
    names = ["dragonstick.ogg", "thunderstick.ogg", "gunshot.wav", "explosion.ogg"]
    assert extra_negatives.selected(names, wesnoth, never=()) == ["dragonstick.ogg"]
    redeclipse = next(s for s in extra_gunfire.SOURCES if s.name == "redeclipse-gunfire")
    names = ["shotgun/primary.ogg", "shotgun/reload.ogg", "smg/primary.ogg", "sword/primary.ogg"]
    assert extra_negatives.selected(names, redeclipse, never=()) == ["shotgun/primary.ogg", "smg/primary.ogg"]


def test_each_game_gun_becomes_repeated_training_gunshots(tmp_path, monkeypatch):
    (tmp_path / "smg").mkdir()
    (tmp_path / "smg" / "primary.ogg").write_bytes(ogg_bytes(0.4))
    source = dataclasses.replace(extra_gunfire.SOURCES[-1], root=str(tmp_path))
    monkeypatch.setattr(extra_gunfire, "SOURCES", (source,))
    clips = extra_gunfire.load()
    assert len(clips) == extra_gunfire.REPEATS
    assert {(c.label, c.fold, c.category) for c in clips} == {(1, "train", "game_gunfire")}
    assert len({c.path for c in clips}) == extra_gunfire.REPEATS
    assert clips[0].audio.shape == (round(0.4 * 16000),)


def test_missing_game_packages_are_named_with_the_install_command(monkeypatch):
    gone = dataclasses.replace(extra_gunfire.SOURCES[0], root="/nonexistent/base.wz")
    monkeypatch.setattr(extra_gunfire, "SOURCES", (gone,))
    with pytest.raises(extra_negatives.MissingPackages, match="apt-get install warzone2100-data"):
        extra_gunfire.load()


def test_the_gunfire_variant_adds_game_guns_to_the_training_windows_only(monkeypatch):
    audio = np.zeros(16000, dtype=np.float32)
    audio[8000:8100] = 0.5
    game = [Clip("extra/g/gun.ogg#0", 1, "game_gunfire", "g", "extra:g", "train", audio)]
    monkeypatch.setattr(extra_gunfire, "load", lambda: game)
    negative = Clip("n.flac", 0, "rain", "s", "n", "train", np.full(16000, 0.01, dtype=np.float32))
    copies = {"positive": 3, "negative": 1, "ambient": 1, "noise": 0, "synthetic": 0}
    with ablations.applied("gunfire"):
        _, trained, _ = train.build_windows([negative], copies, seed=0)
        _, validated, _ = train.build_windows([dataclasses.replace(negative, fold="val")], copies, seed=1)
    assert trained.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert validated.tolist() == [0.0]
