"""A GSM modem that speaks AT commands on a pseudo-terminal, for Gammu's real AT driver: what the
dummy phone cannot do (a SIM locked by a PIN, a slow answer to a send).

Run as a process: `python -m tests.at_modem LINK LOG [--pin CODE] [--send-delays S,S,...]`. LINK
becomes a symlink to the terminal (give it to Gammu as `device`, `connection = at`); LOG gets one
line per command, per PIN attempt and per text handed on.

`silent_terminal()` is a modem that never answers (hung firmware, or the wrong port of a stick).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
END_OF_PDU = b"\x1a"  # Ctrl-Z ends the text after AT+CMGS
WRONG_PIN = "+CME ERROR: 16"  # "incorrect password" (3GPP TS 27.007)
READY_TIMEOUT = 10.0
SWALLOW_POLL = 0.1  # s
ANSWERS = {
    "AT+CGMI": "Acme",
    "AT+CGMM": "AT-1",
    "AT+CGMR": "1.0",
    "AT+CGSN": "123456789012345",
    "AT+CIMI": "234150000000000",
    "AT+CREG?": '+CREG: 2,1,"1234","5678"',
    "AT+CGREG?": '+CGREG: 2,1,"1234","5678"',
    "AT+CEREG?": '+CEREG: 2,1,"1234","5678"',
    "AT+COPS?": '+COPS: 0,2,"23415"',
    "AT+CSQ": "+CSQ: 20,99",
    "AT+CGATT?": "+CGATT: 1",
    "AT+CSCA?": '+CSCA: "+447785016005",145',
    "AT+CSCS=?": '+CSCS: ("GSM","UCS2","IRA")',
    "AT+CSCS?": '+CSCS: "GSM"',
    "ATI": "Acme AT-1",
}
ACCEPTED = {"AT", "ATZ"}  # and commands that begin with one of these; any other is an ERROR
ACCEPTED_PREFIXES = ("ATE", "AT+CMEE", "AT+CMGF", "AT+CREG=", "AT+CGREG=", "AT+CFUN", "AT+CSCS=", "AT+CSMP", "AT+CPMS")


@dataclass
class Modem:
    terminal: int
    log: object
    pin: str | None  # the SIM asks for it until it is entered
    send_delays: list[float] = field(default_factory=lambda: [0.0])
    sent: int = 0

    def answer(self, command: str, pending: bytes) -> bytes:
        """Answer one command; returns what is left of the input."""
        self.log.write(f"{time.time():.1f} command {command}\n")
        self._write(command + "\r")  # echo
        upper = command.upper()
        if upper.startswith("AT+CMGS="):
            return self._take_text(pending)
        if upper == "AT+CPIN?":
            self._reply("+CPIN: SIM PIN" if self.pin else "+CPIN: READY")
        elif upper.startswith("AT+CPIN="):
            self._enter_pin(command.split("=", 1)[1].strip('"'))
        elif upper in ANSWERS:
            self._reply(ANSWERS[upper])
        elif upper in ACCEPTED or upper.startswith(ACCEPTED_PREFIXES):
            self._reply()
        else:
            self._write("\r\nERROR\r\n")
        return pending

    def _enter_pin(self, code: str) -> None:
        self.log.write(f"{time.time():.1f} PIN attempt {code}\n")
        if self.pin is None or code == self.pin:
            self.pin = None
            self._reply()
        else:
            self._write(f"\r\n{WRONG_PIN}\r\n")

    def _take_text(self, pending: bytes) -> bytes:
        self._write("\r\n> ")
        while END_OF_PDU not in pending:
            pending += os.read(self.terminal, 4096)
        _, pending = pending.split(END_OF_PDU, 1)
        self.sent += 1
        self.log.write(f"{time.time():.1f} text {self.sent} handed to the network\n")
        time.sleep(self.send_delays[min(self.sent, len(self.send_delays)) - 1])
        self._reply(f"+CMGS: {self.sent}")
        return pending

    def _reply(self, line: str = "") -> None:
        self._write((f"\r\n{line}\r\n" if line else "") + "\r\nOK\r\n")

    def _write(self, text: str) -> None:
        os.write(self.terminal, text.encode())


def serve(link: Path, log_path: Path, pin: str | None, send_delays: list[float]) -> None:
    terminal, device = os.openpty()
    tty.setraw(device)
    link.unlink(missing_ok=True)
    link.symlink_to(os.ttyname(device))
    with log_path.open("a", buffering=1) as log:
        modem = Modem(terminal, log, pin, send_delays)
        log.write("ready\n")
        pending = b""
        while True:
            if not select.select([terminal], [], [], 1.0)[0]:
                continue
            pending += os.read(terminal, 4096)
            while b"\r" in pending:
                line, pending = pending.split(b"\r", 1)
                if command := line.decode(errors="replace").strip():
                    pending = modem.answer(command, pending)


def start(folder: Path, pin: str | None = None, send_delays: tuple[float, ...] = (0.0,)) -> subprocess.Popen:
    """The modem as a child process, once its terminal is there (stop it with .kill())."""
    link, log = folder / "ttyAT", folder / "at-modem.log"
    args = [sys.executable, "-m", "tests.at_modem", str(link), str(log)]
    args += ["--send-delays", ",".join(map(str, send_delays))] + (["--pin", pin] if pin else [])
    process = subprocess.Popen(args, cwd=ROOT)
    deadline = time.monotonic() + READY_TIMEOUT
    while not (log.exists() and "ready" in log.read_text()):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the AT modem did not start")
        time.sleep(0.05)
    return process


@contextlib.contextmanager
def silent_terminal() -> Iterator[str]:
    """A terminal (its device path) whose modem reads every command and never answers."""
    controller, device = os.openpty()
    tty.setraw(device)
    done = threading.Event()
    swallower = threading.Thread(target=_swallow, args=(controller, done), name="silent-modem", daemon=True)
    swallower.start()
    try:
        yield os.ttyname(device)
    finally:
        done.set()
        swallower.join()
        os.close(controller)
        os.close(device)


def _swallow(controller: int, done: threading.Event) -> None:
    while not done.is_set():
        if select.select([controller], [], [], SWALLOW_POLL)[0]:
            os.read(controller, 4096)


def gammurc(folder: Path) -> Path:
    """A Gammu config for the AT modem `start` made in `folder`."""
    rc = folder / "gammurc-at"
    lines = [
        f"device = {folder / 'ttyAT'}",
        "connection = at",
        f"logfile = {folder / 'gammu-at.log'}",
        "logformat = textall",
    ]
    rc.write_text("\n".join(["[gammu]", *lines, ""]))
    return rc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("link", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("--pin")
    parser.add_argument("--send-delays", default="0")
    options = parser.parse_args()
    serve(options.link, options.log, options.pin, [float(s) for s in options.send_delays.split(",")])
