"""Gunfire from outside the data set, for training only: the firearm sound effects of Debian's free
game data packages (machine guns, a musket, shotguns, a submachine gun), as extra gunshot clips.

The data set's close-range, wide-band gunfire is one source (Kaggle: five firearms, a few recordings
each); trained without it, the models hear 1-3 % of its shots, and with it they hear none of the
unseen AK-12 in the validation fold nor any of the game test set's gunfire. These are sound
effects, not field recordings: more guns and more mixing desks, not more places. The files the
bundled test sounds come from (assets/: Wesnoth's gunshot and thunderstick) and the game test set's
packages (Hedgewars, OpenArena) stay out.

    apt-get install warzone2100-data wesnoth-1.16-data redeclipse-data
    python -m models.training.ablations gunfire --source SOURCE
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from models.training import extra_negatives
from models.training.data import Clip
from models.training.extra_negatives import Source

REDECLIPSE = "/usr/share/games/redeclipse/data/sounds/weapons"
# Each file stands for one gun: it is repeated so that the game guns give about as many training
# windows as the synthetic shots (a few hundred), not a dozen among thousands.
REPEATS = 20
MACHINE_GUNS = ("mgbar1", "mgbar2", "mgbar3", "mgtower", "mgheavy", "asltmg")
SOURCES = (
    Source(
        "warzone-gunfire",
        "warzone2100-data",
        extra_negatives.WARZONE,
        tuple(f"audio/sfx/weapons/{name}.ogg" for name in MACHINE_GUNS),
        "game_gunfire",
        "GPL-2.0-or-later",
    ),
    Source(
        "wesnoth-gunfire",
        "wesnoth-1.16-data",
        f"{extra_negatives.WESNOTH}/sounds",
        ("dragonstick.ogg",),  # gunshot.wav and thunderstick.ogg: the bundled test sounds
        "game_gunfire",
        "GPL-2.0-or-later",
    ),
    Source(
        "redeclipse-gunfire",
        "redeclipse-data",
        REDECLIPSE,
        ("shotgun/primary*.ogg", "smg/primary*.ogg"),
        "game_gunfire",
        "CC-BY-SA-3.0",
    ),
)


def missing_packages() -> list[str]:
    return sorted({s.package for s in SOURCES if not Path(s.root).exists()})


def load() -> list[Clip]:
    """Every game gunshot as REPEATS training-fold gunshot clips (each its own split group)."""
    if missing := missing_packages():
        raise extra_negatives.MissingPackages(f"game gunfire needs: apt-get install {' '.join(missing)}")
    clips = []
    for source in SOURCES:
        for name, data in extra_negatives.source_files(source, never=()):
            group, audio = f"extra:{source.name}:{name}", extra_negatives.decode(data)
            clip = Clip(f"extra/{source.name}/{name}", 1, source.category, source.name, group, "train", audio)
            clips += [dataclasses.replace(clip, path=f"{clip.path}#{k}") for k in range(REPEATS)]
    return clips
