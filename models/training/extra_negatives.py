"""Negatives from outside the data set, for training only: loud and everyday non-gun sounds from
Debian's free game data packages (impacts, explosions, creatures, machines, music, radio speech)
and espeak-ng speech in several languages.

The data set has ~110 minutes of non-gun audio and no explosions, music or speech to speak of, so
a model can learn "loud and sudden means gunshot". Gun-like sounds (firearms, cannons, mortars,
ricochets) are left out by name; so are the packages and files the bundled test sounds come from
(Hedgewars, OpenArena, assets/), so that the demo and the pipeline tests stay unheard.

    apt-get install wesnoth-1.16-data wesnoth-1.16-music warzone2100-data espeak-ng
    python cli.py train --extra-negatives [--leave-one-source-out]

Measured and not shipped (models/README.md): with synthetic automatic fire beside it, the
validation and streaming recall and the held-out sources' mean recall were lower.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from models.training.data import SAMPLE_RATE, Clip

log = logging.getLogger(__name__)

CACHE = Path(__file__).resolve().parents[1] / "cache"
EXCERPT_SECONDS = 6.0  # long files (music, ambience) are cut into excerpts of this length
MIN_SECONDS = 0.05
GUN_LIKE = (
    "*gun*",
    "*shot*",
    "*thunderstick*",
    "*dragonstick*",
    "*musket*",
    "*rifle*",
    "*pistol*",
    "*cannon*",
    "*mortar*",
    "*richet*",
    "*/weapons/*",
)
WESNOTH = "/usr/share/games/wesnoth/1.16/data/core"
WARZONE = "/usr/share/games/warzone2100/base.wz"


@dataclass(frozen=True)
class Source:
    name: str
    package: str  # the Debian package holding it
    root: str  # a folder or a zip archive
    patterns: tuple[str, ...]  # fnmatch patterns of paths relative to root
    category: str
    licence: str
    excerpts: int = 0  # > 0: each file gives this many random excerpts of EXCERPT_SECONDS
    exclude: tuple[str, ...] = ()  # besides GUN_LIKE


SOURCES = (
    Source(
        "wesnoth-sounds",
        "wesnoth-1.16-data",
        f"{WESNOTH}/sounds",
        ("*.ogg", "*.wav"),
        "game_sound",
        "GPL-2.0-or-later",
        exclude=("explosion.ogg", "ambient/*", "horn-signals/*"),  # explosion.ogg: assets/negatives
    ),
    Source(
        "wesnoth-ambience",
        "wesnoth-1.16-data",
        f"{WESNOTH}/sounds",
        ("ambient/*.ogg",),
        "game_ambience",
        "GPL-2.0-or-later",
        excerpts=4,
    ),
    Source(
        "wesnoth-music",
        "wesnoth-1.16-music",
        f"{WESNOTH}/music",
        ("*.ogg",),
        "music",
        "GPL-2.0-or-later",
        excerpts=8,
    ),
    Source(
        "warzone-explosions",
        "warzone2100-data",
        WARZONE,
        ("audio/sfx/explons/*.ogg",),
        "explosion",
        "GPL-2.0-or-later",
    ),
    Source(
        "warzone-machines",
        "warzone2100-data",
        WARZONE,
        ("audio/sfx/building/*.ogg", "audio/sfx/vehicle/*.ogg", "audio/sfx/misc/*.ogg", "audio/sfx/interfce/*.ogg"),
        "game_sound",
        "GPL-2.0-or-later",
        exclude=("*silence*",),
    ),
    Source(
        "warzone-speech",
        "warzone2100-data",
        WARZONE,
        ("audio/memressp/*.ogg", "audio/tutorial/*.ogg", "audio/taunts/*.ogg", "audio/vtoltalk/*.ogg"),
        "speech",
        "GPL-2.0-or-later",
    ),
)
SPEECH_VOICES = ("en", "en-us", "fr", "de", "es", "pt", "sw", "hi", "ar", "ru", "cmn", "id")
SPEECH_VARIANTS = ("", "+m3", "+f2", "+f4", "+croak", "+whisper")
SPEECH_TEXTS = (
    "Good morning everyone, please take your seats, the class is about to begin.",
    "Hey! Over here! Bring the truck round to the back gate, quickly.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "The rangers will meet at the river crossing before the sun goes down.",
    "Attention please: the market closes in ten minutes. Thank you for shopping with us.",
    "Stop! Stop! Don't touch that, it is hot!",
)
SPEECH_UTTERANCES = 72
SPEECH = Source("espeak-speech", "espeak-ng", "espeak-ng", (), "speech", "GPL-3.0-or-later (generated)")


class MissingPackages(RuntimeError):
    pass


def required_packages() -> list[str]:
    return sorted({s.package for s in (*SOURCES, SPEECH)})


def check_installed() -> None:
    missing = sorted({s.package for s in SOURCES if not Path(s.root).exists()})
    if shutil.which("espeak-ng") is None:
        missing.append(SPEECH.package)
    if missing:
        raise MissingPackages(
            f"training negatives need Debian packages {', '.join(missing)}: "
            f"apt-get install {' '.join(required_packages())}"
        )


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p) for p in patterns)


def selected(names: list[str], source: Source, never: tuple[str, ...] = GUN_LIKE) -> list[str]:
    """The names matching the source's patterns, minus `never` and its exclusions; sorted."""
    return sorted(n for n in names if _matches(n, source.patterns) and not _matches(n, (*never, *source.exclude)))


def source_files(source: Source, never: tuple[str, ...] = GUN_LIKE) -> list[tuple[str, bytes]]:
    """(relative name, file bytes) of the selected files of a folder or zip source."""
    root = Path(source.root)
    if root.is_dir():
        names = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
        return [(n, (root / n).read_bytes()) for n in selected(names, source, never)]
    with zipfile.ZipFile(root) as archive:
        return [(n, archive.read(n)) for n in selected(archive.namelist(), source, never)]


def decode(data: bytes) -> np.ndarray:
    """Mono float32 at the models' rate."""
    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return mono if rate == SAMPLE_RATE else soxr.resample(mono, rate, SAMPLE_RATE).astype(np.float32)


def excerpts(audio: np.ndarray, count: int, seed_text: str) -> list[np.ndarray]:
    """`count` random excerpts of a long file, the same ones every run (seeded by its name)."""
    n = round(EXCERPT_SECONDS * SAMPLE_RATE)
    if count == 0 or audio.shape[0] <= n:
        return [audio]
    rng = np.random.default_rng(int(hashlib.sha1(seed_text.encode()).hexdigest()[:8], 16))
    return [audio[s : s + n] for s in sorted(rng.integers(0, audio.shape[0] - n, count))]


def speech_audio() -> list[tuple[str, np.ndarray]]:
    """espeak-ng utterances: the texts in several voices, speeds and pitches (deterministic)."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(SPEECH_UTTERANCES):
        voice = SPEECH_VOICES[i % len(SPEECH_VOICES)] + SPEECH_VARIANTS[rng.integers(len(SPEECH_VARIANTS))]
        speed, pitch = int(rng.integers(110, 220)), int(rng.integers(20, 80))
        text = SPEECH_TEXTS[i % len(SPEECH_TEXTS)]
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
            check=True,
            capture_output=True,
        ).stdout
        out.append((f"{i:03d}-{voice}", decode(wav)))
    return out


def clips_of(source: Source, items: list[tuple[str, np.ndarray]]) -> list[Clip]:
    return [
        _clip(source, name, k, piece)
        for name, audio in items
        for k, piece in enumerate(excerpts(audio, source.excerpts, name))
        if piece.shape[0] >= MIN_SECONDS * SAMPLE_RATE and np.any(piece)
    ]


def _clip(source: Source, name: str, k: int, audio: np.ndarray) -> Clip:
    path = f"extra/{source.name}/{name}#{k}"
    return Clip(path, 0, source.category, source.name, f"extra:{source.name}:{name}", "train", audio)


def load(cache_dir: Path = CACHE) -> list[Clip]:
    """Every extra negative as a training-fold clip; decoded once and cached."""
    check_installed()
    cache = Path(cache_dir) / f"extra-negatives-{_digest()}.npz"
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        return _unpack(stored)
    log.info("decoding the extra negatives (cached in %s)", cache)
    clips = []
    for source in SOURCES:
        clips += clips_of(source, [(n, decode(data)) for n, data in source_files(source)])
    clips += clips_of(SPEECH, speech_audio())
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.array([c.path for c in clips]), **{f"a{i}": c.audio for i, c in enumerate(clips)})
    log.info("extra negatives: %d clips, %.1f min", len(clips), sum(c.audio.shape[0] for c in clips) / SAMPLE_RATE / 60)
    return clips


def _unpack(stored) -> list[Clip]:
    by_name = {s.name: s for s in (*SOURCES, SPEECH)}
    clips = []
    for i, path in enumerate(stored["paths"]):
        _, source, rest = str(path).split("/", 2)
        name, k = rest.rsplit("#", 1)
        clips.append(_clip(by_name[source], name, int(k), stored[f"a{i}"]))
    return clips


def _digest() -> str:
    """The cache is rebuilt when this module (its sources, lists, texts) changes."""
    return hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:10]
