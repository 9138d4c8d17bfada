"""Training-only negatives from Debian game data and espeak-ng: what is picked (never a gun-like
sound, never a bundled test sound), how it is decoded and cut, cached, and the error when the
packages are missing; and the held-out game-sound test manifest. Built here from small files of
our own; the packages are not needed."""

from __future__ import annotations

import dataclasses
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from models.training import extra_negatives as extra
from models.training import game_test_set
from models.training.data import SAMPLE_RATE, load_clips

ROOT = Path(__file__).resolve().parent.parent


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.repeat((0.3 * np.sin(2 * np.pi * 440 * t))[:, None], channels, axis=1).astype(np.float32)


def ogg_bytes(seconds: float, rate: int = 44100, channels: int = 2) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, rate, channels), rate, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def wesnoth_source() -> extra.Source:
    return next(s for s in extra.SOURCES if s.name == "wesnoth-sounds")


def test_gun_like_sounds_and_the_bundled_test_sounds_are_never_picked():
    names = [
        "gunshot.wav",
        "thunderstick-miss.ogg",
        "dragonstick.ogg",
        "explosion.ogg",  # assets/negatives/wesnoth-explosion.flac: kept unheard
        "ambient/birds1.ogg",  # another source's
        "bat-hit-1.ogg",
        "cave-in.ogg",
        "README",
    ]
    assert extra.selected(names, wesnoth_source()) == ["bat-hit-1.ogg", "cave-in.ogg"]
    warzone = [s for s in extra.SOURCES if s.package == "warzone2100-data"]
    weapons = ["audio/sfx/weapons/mgbar1.ogg", "audio/sfx/explons/richet1.ogg", "audio/sfx/explons/lrgexpl.ogg"]
    assert [n for s in warzone for n in extra.selected(weapons, s)] == ["audio/sfx/explons/lrgexpl.ogg"]


def test_no_source_comes_from_the_packages_of_the_bundled_sounds():
    bundled = (ROOT / "assets" / "README.md").read_text()
    for package in ("hedgewars-data", "openarena-data"):
        assert package in bundled
        assert package not in extra.required_packages()


def test_a_zip_source_is_decoded_to_mono_at_the_models_rate_and_long_files_cut_into_excerpts(tmp_path):
    archive = tmp_path / "base.wz"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("audio/music/long.ogg", ogg_bytes(20.0))
        z.writestr("audio/music/short.ogg", ogg_bytes(0.5))
        z.writestr("audio/sfx/weapons/cannon.ogg", ogg_bytes(1.0))
    source = extra.Source("test-music", "some-package", str(archive), ("audio/*.ogg",), "music", "GPL", excerpts=3)
    items = [(name, extra.decode(data)) for name, data in extra.source_files(source)]
    assert [name for name, _ in items] == ["audio/music/long.ogg", "audio/music/short.ogg"]
    assert all(audio.ndim == 1 and audio.dtype == np.float32 for _, audio in items)
    assert abs(items[0][1].shape[0] - 20 * SAMPLE_RATE) < SAMPLE_RATE // 100
    clips = extra.clips_of(source, items)
    excerpt = round(extra.EXCERPT_SECONDS * SAMPLE_RATE)
    assert [c.audio.shape[0] for c in clips[:3]] == [excerpt] * 3
    assert len(clips) == 4 and clips[3].audio.shape[0] == items[1][1].shape[0]
    assert {(c.label, c.fold, c.category) for c in clips} == {(0, "train", "music")}
    again = extra.clips_of(source, items)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(clips, again, strict=True))  # same excerpts


def test_load_caches_the_clips_and_restores_them_the_same(tmp_path, monkeypatch):
    folder = tmp_path / "sounds"
    folder.mkdir()
    (folder / "club.ogg").write_bytes(ogg_bytes(0.8))
    soundfile.write(folder / "fist.wav", tone(0.3, 22050)[:, 0], 22050)
    source = dataclasses.replace(wesnoth_source(), root=str(folder))
    monkeypatch.setattr(extra, "SOURCES", (source,))
    monkeypatch.setattr(extra, "SPEECH_UTTERANCES", 2)
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (./setup.sh --test)")
    first = extra.load(("games",), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("extra-negatives-games-*.npz"))) == 1
    second = extra.load(("games",), tmp_path / "cache")
    assert [c.path for c in first] == [c.path for c in second]
    assert [c.source for c in first] == ["wesnoth-sounds"] * 2 + ["espeak-speech"] * 2
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(first, second, strict=True))
    speech = [c for c in second if c.category == "speech"]
    assert all(c.audio.shape[0] > SAMPLE_RATE for c in speech)  # a sentence, not a click


def test_missing_packages_are_named_with_the_command_that_installs_them(monkeypatch, tmp_path):
    gone = dataclasses.replace(wesnoth_source(), root=str(tmp_path / "not-installed"))
    monkeypatch.setattr(extra, "SOURCES", (gone,))
    with pytest.raises(extra.MissingPackages, match=r"wesnoth-1\.16-data.*apt-get install"):
        extra.load(("games",), tmp_path / "cache")


def test_an_unknown_group_is_named_with_the_groups_there_are():
    with pytest.raises(ValueError, match=r"no group steps \(groups: games, minetest\)"):
        extra.sources_of(("steps",))
    assert {s.package for s in extra.sources_of(("minetest",))} == {"minetest-data"}


def test_single_steps_are_strung_into_walks_of_one_surface_at_the_cadence():
    click = np.zeros(SAMPLE_RATE // 10, dtype=np.float32)
    click[0] = 1.0
    items = [
        ("default/sounds/default_grass_footstep.1.ogg", click),
        ("default/sounds/default_grass_footstep.2.ogg", 0.5 * click),
        ("default/sounds/default_wood_footstep.ogg", click),
    ]
    cadence = extra.Cadence(interval=(0.5, 0.5), sequences=2)
    walks = extra.strung(cadence, items)
    assert [name for name, _ in walks] == [
        "default_grass_footstep-0",
        "default_grass_footstep-1",
        "default_wood_footstep-0",
        "default_wood_footstep-1",
    ]
    for _, audio in walks:
        assert audio.shape[0] == round(extra.EXCERPT_SECONDS * SAMPLE_RATE)
        onsets = np.flatnonzero(audio) / SAMPLE_RATE
        assert abs(len(onsets) - extra.EXCERPT_SECONDS / 0.5) <= 1  # the first step: anywhere in one interval
        gaps = np.diff(onsets)
        assert np.all(np.abs(gaps - 0.5) <= 0.5 * extra.ONSET_JITTER + 1e-3)
    again = extra.strung(cadence, items)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(walks, again, strict=True))
    assert not np.array_equal(walks[0][1], walks[1][1])


def test_the_game_test_set_is_a_manifest_of_the_data_sets_form_without_ambiguous_weapons(tmp_path, monkeypatch):
    folder = tmp_path / "Sounds"
    (folder / "voices" / "British").mkdir(parents=True)
    for name in ("shotgunfire.ogg", "explosion.ogg", "mortar.ogg", "sinegun.ogg", "voices/British/Amazing.ogg"):
        (folder / name).write_bytes(ogg_bytes(0.4))
    sources = {
        s.name: dataclasses.replace(s, root=str(folder))
        for s in (*game_test_set.GUNFIRE, *game_test_set.OTHER)
        if s.package == "hedgewars-data"
    }
    monkeypatch.setattr(game_test_set, "GUNFIRE", (sources["hedgewars-gunfire"],))
    monkeypatch.setattr(game_test_set, "OTHER", (sources["hedgewars-sounds"], sources["hedgewars-voices"]))
    table = game_test_set.write_manifest(tmp_path / "set")
    assert sorted((r["origin"].split(": ")[1], r["label"]) for r in table) == [
        ("explosion.ogg", "other"),
        ("shotgunfire.ogg", "gunshot"),
        ("voices/British/Amazing.ogg", "other"),
    ]
    clips = load_clips(tmp_path / "set" / "manifest.csv", tmp_path / "cache")
    assert sorted(c.label for c in clips) == [0, 0, 1]
    assert all(abs(c.audio.shape[0] - 0.4 * SAMPLE_RATE) < SAMPLE_RATE // 100 for c in clips)
