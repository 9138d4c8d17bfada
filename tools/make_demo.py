"""Build the bundled demo recording and test sounds from Debian's freely licensed game data.

    apt-get install wesnoth-1.16-data hedgewars-data openarena-data
    python tools/make_demo.py

Deterministic (fixed seed). Writes assets/demo.flac (40 s: a synthetic outdoor background with
gunshots at known times), assets/demo.json (the times and each sound's source and licence),
and assets/shots/*.flac, assets/negatives/*.flac (the single sounds, for tests).
"""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 16000
SEED = 7
DURATION = 40.0
ASSETS = Path(__file__).resolve().parent.parent / "assets"
WESNOTH = next(Path("/usr/share/games/wesnoth").glob("*/data/core/sounds"), None)
OPENARENA = Path("/usr/share/games/openarena/baseoa/pak0.pk3")
HEDGEWARS = Path("/usr/share/games/hedgewars/Data/Sounds")

SOUNDS = {
    # name: (how to get it, package, path inside it, licence)
    "wesnoth-gunshot": ("wesnoth", "wesnoth-1.16-data", "data/core/sounds/gunshot.wav", "GPL-2.0-or-later"),
    "wesnoth-thunderstick": ("wesnoth", "wesnoth-1.16-data", "data/core/sounds/thunderstick.ogg", "GPL-2.0-or-later"),
    "openarena-shotgun": ("openarena", "openarena-data", "sound/weapons/shotgun/sshotf1b.wav", "GPL-2.0-or-later"),
    "openarena-machinegun": (
        "openarena",
        "openarena-data",
        "sound/weapons/machinegun/machgf1b.wav",
        "GPL-2.0-or-later",
    ),
    "hedgewars-shotgun": ("hedgewars", "hedgewars-data", "Data/Sounds/shotgunfire.ogg", "GFDL-1.3"),
    "wesnoth-explosion": ("wesnoth", "wesnoth-1.16-data", "data/core/sounds/explosion.ogg", "GPL-2.0-or-later"),
    "openarena-rocket-explosion": (
        "openarena",
        "openarena-data",
        "sound/weapons/rocket/rocklx1a.wav",
        "GPL-2.0-or-later",
    ),
}
SHOTS = ["wesnoth-gunshot", "openarena-shotgun", "hedgewars-shotgun", "wesnoth-thunderstick"]
NEGATIVES = ["wesnoth-explosion", "openarena-rocket-explosion"]
DEMO_SHOTS = [
    (6.0, "wesnoth-gunshot", -6.0),
    (15.5, "openarena-shotgun", -9.0),
    (24.23, "openarena-machinegun", -4.0),  # not Hedgewars: its GFDL-1.3 sounds cannot be mixed with GPL ones
    (33.0, "wesnoth-thunderstick", -8.0),
]
SPEECH = "Morning check. The north gate is closed. The water pump is running. All quiet near the river."


def load(name: str) -> np.ndarray:
    where, _, inner, _ = SOUNDS[name]
    if where == "openarena":
        with zipfile.ZipFile(OPENARENA) as pk3:
            data = pk3.read(inner)
    elif where == "wesnoth":
        data = (WESNOTH / Path(inner).name).read_bytes()
    else:
        data = (HEDGEWARS / Path(inner).name).read_bytes()
    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    mono = soxr.resample(mono, rate, RATE, quality="HQ") if rate != RATE else mono
    return (mono / (np.max(np.abs(mono)) + 1e-9)).astype(np.float32)


def background(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / RATE
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 1.0)
    wind = np.fft.irfft(spectrum / f, n)
    wind *= np.interp(t, np.linspace(0, t[-1], 12), rng.uniform(0.3, 1.0, 12))
    wind /= np.sqrt(np.mean(wind**2))
    rumble = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * (f < 200), n)
    rumble /= np.sqrt(np.mean(rumble**2))
    hiss = rng.standard_normal(n)
    out = 0.012 * wind + 0.006 * rumble + 0.001 * hiss
    for start in rng.uniform(0, t[-1] - 0.3, 40):  # bird chirps: short rising sweeps
        length = int(rng.uniform(0.05, 0.15) * RATE)
        tt = np.arange(length) / RATE
        f0, f1 = rng.uniform(2500, 4500), rng.uniform(4000, 6500)
        chirp = np.sin(2 * np.pi * (f0 * tt + (f1 - f0) * tt**2 / (2 * tt[-1]))) * np.hanning(length)
        i = int(start * RATE)
        out[i : i + length] += rng.uniform(0.003, 0.012) * chirp
    return out.astype(np.float32)


def speech(path: Path) -> np.ndarray:
    wav = path.with_suffix(".speech.wav")
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), SPEECH], check=True)
    audio, rate = soundfile.read(wav, dtype="float32")
    wav.unlink()
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(SEED)
    n = int(DURATION * RATE)
    demo = background(rng, n)
    voice = speech(ASSETS / "demo")
    start = int(9.0 * RATE)
    demo[start : start + voice.shape[0]] += 0.03 * voice[: n - start]
    for at, name, peak_db in DEMO_SHOTS:
        shot = load(name) * 10 ** (peak_db / 20)
        i = int(at * RATE) - int(np.argmax(np.abs(shot)))
        demo[i : i + shot.shape[0]] += shot[: n - i]
    (ASSETS / "shots").mkdir(parents=True, exist_ok=True)
    (ASSETS / "negatives").mkdir(parents=True, exist_ok=True)
    soundfile.write(ASSETS / "demo.flac", np.clip(demo, -1, 1), RATE, subtype="PCM_16")
    for name in SHOTS:
        soundfile.write(ASSETS / "shots" / f"{name}.flac", load(name) * 0.7, RATE, subtype="PCM_16")
    for name in NEGATIVES:
        soundfile.write(ASSETS / "negatives" / f"{name}.flac", load(name) * 0.7, RATE, subtype="PCM_16")
    index = {
        "rate": RATE,
        "duration": DURATION,
        "shots": [{"time": at, "sound": name} for at, name, _ in DEMO_SHOTS],
        "speech": {"time": 9.0, "source": "espeak-ng (generated)"},
        "sounds": {
            name: {"package": pkg, "path": inner, "license": lic} for name, (_, pkg, inner, lic) in SOUNDS.items()
        },
    }
    (ASSETS / "demo.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    main()
