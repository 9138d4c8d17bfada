"""Gammu's dummy phone (the real python-gammu path, no modem) and a fake for faults it cannot make."""

from __future__ import annotations

from pathlib import Path

import gammu

from alerting.modem import Modem

DUMMY_GAMMURC = """[gammu]
device = {device}
connection = none
model = dummy
logfile = {log}
logformat = textall
"""


def dummy_gammurc(folder: Path) -> Path:
    device = folder / "dummy-phone"
    device.mkdir(parents=True, exist_ok=True)
    rc = folder / "gammurc"
    rc.write_text(DUMMY_GAMMURC.format(device=device, log=folder / "gammu.log"))
    return rc


class FlakyStateMachine:
    """Stands in for gammu.StateMachine: raises python-gammu's own exceptions on cue."""

    def __init__(self, faults: list[type[gammu.GSMError] | None], init_faults: list | None = None) -> None:
        self.faults = list(faults)
        self.init_faults = list(init_faults or [])
        self.sent: list[dict] = []

    def SetConfig(self, *_args) -> None:
        pass

    def ReadConfig(self, **_kwargs) -> None:
        pass

    def Init(self) -> None:
        if self.init_faults and (fault := self.init_faults.pop(0)) is not None:
            raise fault({"Text": "injected", "Where": "Init", "Code": 0})

    def GetSecurityStatus(self):
        return None

    def SendSMS(self, part: dict) -> int:
        if self.faults and (fault := self.faults.pop(0)) is not None:
            raise fault({"Text": "injected", "Where": "SendSMS", "Code": 0})
        self.sent.append(part)
        return 255

    def Terminate(self) -> None:
        pass


class FakeModem(Modem):
    """A Modem whose state machine is a FlakyStateMachine (the rest is the real code)."""

    def __init__(self, config, machine: FlakyStateMachine) -> None:
        super().__init__(config)
        self.fake = machine

    def connect(self) -> None:
        original = gammu.StateMachine
        gammu.StateMachine = lambda: self.fake
        try:
            super().connect()
        finally:
            gammu.StateMachine = original
