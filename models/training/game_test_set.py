"""A test manifest the models never train or tune on: the Hedgewars and OpenArena game sounds
(Debian packages; the bundled test sounds in assets/ come from them too). Their gunfire (pistols,
shotguns, machine guns, a minigun) against their other sounds (explosions, impacts, a whip crack,
a pneumatic hammer, footsteps, screams, voices in several accents and languages).

    apt-get install hedgewars-data openarena-data
    python -m models.training.game_test_set reports/game-sounds
    python cli.py evaluate reports/game-sounds/manifest.csv --fold all --out reports/game-sounds-eval

Game sound effects are a weak stand-in for field recordings: a check for loud sounds never heard,
and for machine-gun fire, not a measure of field recall. The audio is not ours to redistribute
(GFDL-1.3 / GPL-2.0-or-later): it is written outside the repository.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import soundfile

from models.training.data import SAMPLE_RATE
from models.training.extra_negatives import Source, decode, source_files

HEDGEWARS = "/usr/share/games/hedgewars/Data/Sounds"
OPENARENA = "/usr/share/games/openarena/baseoa/pak0.pk3"
HEDGEWARS_LICENCE = "GFDL-1.3 (Hedgewars)"
OPENARENA_LICENCE = "GPL-2.0-or-later (OpenArena)"
# Science-fiction and ambiguous weapons, artillery, launchers, reloads and ricochets: in neither class.
NEITHER = (
    "*sinegun*",
    "*landgun*",
    "*drillgun*",
    "*portal*",
    "*ropeshot*",
    "*mortar*",
    "*reload*",
    "*/bfg/*",
    "*/railgun/*",
    "*/lightning/*",
    "*buletby*",
    "*/ric*",
    "*grenlf*",
    "*rocklf*",
)
GUNFIRE = (
    Source(
        "hedgewars-gunfire",
        "hedgewars-data",
        HEDGEWARS,
        ("gun.ogg", "shotgunfire.ogg", "minigun.ogg"),
        "game_gunfire",
        HEDGEWARS_LICENCE,
    ),
    Source(
        "openarena-gunfire",
        "openarena-data",
        OPENARENA,
        ("sound/weapons/machinegun/machgf*.wav", "sound/weapons/shotgun/*.wav", "sound/weapons/vulcan/vulcanf*.wav"),
        "game_gunfire",
        OPENARENA_LICENCE,
    ),
)
OTHER = (
    Source(
        "hedgewars-sounds",
        "hedgewars-data",
        HEDGEWARS,
        ("*.ogg",),
        "game_sound",
        HEDGEWARS_LICENCE,
        exclude=("voices/*", *GUNFIRE[0].patterns),
    ),
    Source("hedgewars-voices", "hedgewars-data", HEDGEWARS, ("voices/*.ogg",), "speech", HEDGEWARS_LICENCE),
    Source(
        "openarena-explosions",
        "openarena-data",
        OPENARENA,
        (
            "sound/weapons/rocket/rocklx*.wav",
            "sound/weapons/plasma/plasmx*.wav",
            "sound/weapons/proxmine/*expl*.wav",
            "sound/weapons/grenade/hgren*.wav",
        ),
        "game_explosion",
        OPENARENA_LICENCE,
    ),
    Source(
        "openarena-sounds",
        "openarena-data",
        OPENARENA,
        ("sound/world/*.wav", "sound/player/*.wav", "sound/items/*.wav", "sound/movers/*.wav", "sound/misc/*.wav"),
        "game_sound",
        OPENARENA_LICENCE,
    ),
)
FIELDS = ("path", "label", "category", "source", "origin", "license", "orig_sr", "duration_s", "split_group", "fold")


def rows(out: Path) -> list[dict]:
    """Writes each selected sound as 16 kHz FLAC under `out`, returns its manifest rows."""
    table = []
    for sources, label in ((GUNFIRE, 1), (OTHER, 0)):
        for source in sources:
            if not Path(source.root).exists():
                sys.exit(f"{source.root} is missing: apt-get install {source.package}")
            for name, data in source_files(source, never=NEITHER):
                table.append(_write(out, source, label, name, decode(data)))
    return table


def _write(out: Path, source: Source, label: int, name: str, audio: np.ndarray) -> dict:
    path = Path("audio") / source.name / (name.replace("/", "_").rsplit(".", 1)[0] + ".flac")
    (out / path).parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out / path, audio, SAMPLE_RATE)
    return {
        "path": str(path),
        "label": "gunshot" if label else "other",
        "category": source.category,
        "source": source.name,
        "origin": f"{source.package}: {name}",
        "license": source.licence,
        "orig_sr": SAMPLE_RATE,
        "duration_s": round(audio.shape[0] / SAMPLE_RATE, 3),
        "split_group": f"{source.name}:{name}",
        "fold": "test",
    }


def write_manifest(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    table = rows(out)
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    table = write_manifest(out)
    gunfire = sum(r["label"] == "gunshot" for r in table)
    print(f"{out / 'manifest.csv'}: {gunfire} gunfire, {len(table) - gunfire} other sounds")


if __name__ == "__main__":
    main()
