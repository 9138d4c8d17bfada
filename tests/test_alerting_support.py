"""Helpers for the alerting tests (no tests here): Gammu's dummy phone with a reader for what it
was sent, and a state machine that wraps the real dummy and raises python-gammu's own exception
classes on cue, for the faults the dummy cannot produce."""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gammu

from pipeline.config import Config, override
from tests.gammu_env import dummy_gammurc

NUMBERS = ("+447700900123", "+12025550143")
DEADLINE = 20.0  # s: longest wait for a child process in a test
POLL = 0.02  # s: how often a waiting test looks at the condition it waits for
_RECIPIENT = re.compile(r'^Recipient number "(.*)"$')
_UDH_CONCAT = (0x05, 0x00, 0x03)  # UDH length, IE "concatenated, 8-bit reference", IE length
# Gammu's dump of the 6 UDH bytes, 4 characters each: hex, the byte as a character, "|"
# ("05 |00 |03 |C6 |322|01"). Read by position: a reference byte 0x7C is "7C||", which split at
# "|" made an empty token (a CI failure, 1 multi-part text in 256).
_UDH_BYTE = 4


def config_for(tmp_path: Path, **changes: Any) -> Config:
    """A validated config: the dummy phone, data in tmp_path/data, both NUMBERS as recipients."""
    base = {
        "storage.data_dir": str(tmp_path / "data"),
        "modem.gammurc": str(dummy_gammurc(tmp_path)),
        "alerts.recipients": list(NUMBERS),
        "modem.retry_initial": 1.0,
        "modem.retry_max": 8.0,
        "site.name": "North gate",
        "site.timezone": "Africa/Nairobi",
    }
    return override(Config(), {**base, **changes})


@dataclass(frozen=True)
class SentPart:
    recipient: str
    text: str
    reference: int | None  # the concatenation reference, None for a single-part text
    total: int
    index: int


def sent_parts(folder: Path) -> list[SentPart]:
    """Every part the dummy phone was given, in order, from its Gammu logs (gammu*.log) in `folder`."""
    parts = []
    for log in sorted(folder.glob("gammu*.log")):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        start = None
        for i, line in enumerate(lines):
            if line == "Entering GSM_SendSMS":
                start = i
            elif line == "Leaving GSM_SendSMS" and start is not None:
                parts.append(_part(lines[start:i]))
                start = None
    return parts


def sent_texts(folder: Path) -> list[tuple[str, str]]:
    """(recipient, whole text) per message the dummy phone was given, parts joined, in order."""
    texts, pending = [], {}
    for part in sent_parts(folder):
        if part.reference is None:
            texts.append((part.recipient, part.text))
            continue
        key = (part.recipient, part.reference)
        pending.setdefault(key, []).append(part.text)
        if part.index == part.total:
            texts.append((part.recipient, "".join(pending.pop(key))))
    return texts


def _part(block: list[str]) -> SentPart:
    recipient = next(m.group(1) for line in block if (m := _RECIPIENT.match(line)))
    reference, total, index = None, 1, 1
    if "UDH, length 6" in block:
        dump = block[block.index("UDH, length 6") + 2]
        udh = [int(dump[i : i + 2], 16) for i in range(0, 6 * _UDH_BYTE, _UDH_BYTE)]
        if tuple(udh[:3]) == _UDH_CONCAT:
            reference, total, index = udh[3], udh[4], udh[5]
    return SentPart(recipient, block[-1], reference, total, index)


# --- faults around the real dummy phone ---------------------------------------------------------------
@dataclass(frozen=True)
class After:
    """The real call runs (the dummy takes the part), then this error: the answer was lost."""

    error: type[gammu.GSMError]


@dataclass(frozen=True)
class Hang:
    """The call never comes back (a hung modem), for `seconds`; for a test that kills the process."""

    seconds: float = DEADLINE


@dataclass(frozen=True)
class Returns:
    """Return this instead of calling the dummy (e.g. a network state the dummy never reports)."""

    value: Any


def gammu_error(error: type[gammu.GSMError], where: str) -> gammu.GSMError:
    """An exception as python-gammu raises it."""
    return error({"Text": "injected by the test", "Where": where, "Code": gammu.Errors[error.__name__]})


@dataclass
class FaultScript:
    """Steps per StateMachine method, used in call order across every machine it makes: None (the
    real call), a gammu error class (raised instead), After(error), Returns(value) or Hang()."""

    folder: Path
    steps: dict[str, list[Any]] = field(default_factory=dict)
    calls: collections.Counter = field(default_factory=collections.Counter)
    machines: int = 0

    def machine(self) -> FaultyMachine:
        """A new state machine (the Modem's machine_factory); each logs to its own gammu-NNN.log."""
        self.machines += 1
        return FaultyMachine(self, self.folder / f"gammu-{self.machines:03d}.log")

    def next_step(self, method: str) -> Any:
        self.calls[method] += 1
        queue = self.steps.get(method)
        return queue.pop(0) if queue else None


class FaultyMachine:
    """A real gammu.StateMachine on the dummy phone, with the script's faults around its calls."""

    def __init__(self, script: FaultScript, log_file: Path) -> None:
        self._real = gammu.StateMachine()
        self._script = script
        self._log_file = log_file

    def ReadConfig(self, **kwargs: Any) -> None:
        self._real.ReadConfig(**kwargs)
        settings = self._real.GetConfig(0)
        settings.update(DebugFile=str(self._log_file), DebugLevel="textall")  # Init truncates a log
        self._real.SetConfig(0, settings)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        real = getattr(self._real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            step = self._script.next_step(name)
            if isinstance(step, Returns):
                return step.value
            if isinstance(step, Hang):
                threading.Event().wait(step.seconds)
            if isinstance(step, type) and issubclass(step, gammu.GSMError):
                raise gammu_error(step, name)
            result = real(*args, **kwargs)
            if isinstance(step, After):
                raise gammu_error(step.error, name)
            return result

        return call


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(POLL)
