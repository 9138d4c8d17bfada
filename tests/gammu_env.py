"""Gammu's dummy phone: the real python-gammu path, no modem."""

from __future__ import annotations

from pathlib import Path

DUMMY_DEVICE = "phone"  # the dummy phone's folder, beside the gammurc: remove it for a modem outage
DUMMY_GAMMURC = """[gammu]
device = {device}
connection = none
model = dummy
logfile = {log}
logformat = textall
"""


def dummy_gammurc(folder: Path) -> Path:
    """A Gammu config for the dummy phone in `folder` (its device folder `phone/`, log `gammu.log`)."""
    device = folder / DUMMY_DEVICE
    device.mkdir(parents=True, exist_ok=True)
    rc = folder / "gammurc"
    rc.write_text(DUMMY_GAMMURC.format(device=device, log=folder / "gammu.log"))
    return rc
