"""Gammu's errors as ModemError: what is wrong, what to do, and what it means for the text in hand.

Each failure answers three questions:
- maybe_sent: could the text have gone out anyway (a part was handed to the modem and the answer
  was lost, or an earlier part went out)? Then the resend is marked as a repeat.
- retryable: can it clear without a person (a timeout, a missing or busy device, no network)?
  If not (a wrong PIN, no SIM, a bad setting) texts still wait and are retried, slowly, and the
  log says what to fix: a gunshot text is never dropped.
- modem_down: is the modem, not this one text, the problem? Then the pass stops and the modem is
  re-initialised before the next attempt; otherwise texts to other numbers are still tried.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import gammu

from pipeline.users import user_name

# SendSMS raised one of these: the part may have reached the network (the answer got lost).
UNKNOWN_FATE = frozenset(
    {
        "ERR_TIMEOUT",
        "ERR_NOTCONNECTED",
        "ERR_DEVICEREADERROR",
        "ERR_DEVICEWRITEERROR",
        "ERR_DEVICENOTWORK",
        "ERR_UNKNOWNRESPONSE",
        "ERR_UNKNOWNFRAME",
        "ERR_FRAMENOTREQUESTED",
        "ERR_ABORTED",
    }
)
# The modem answered and refused this text; the connection itself is fine.
TEXT_REFUSED = frozenset(
    {
        "ERR_UNKNOWN",  # most "+CMS ERROR" answers (e.g. 331 no network service, 330 SMSC unknown)
        "ERR_INVALIDDATA",
        "ERR_EMPTYSMSC",
        "ERR_GETTING_SMSC",
        "ERR_FULL",
        "ERR_MEMORY",
        "ERR_MOREMEMORY",
        "ERR_PHONE_INTERNAL",
        "ERR_NETWORK_ERROR",
    }
)
# Our own codes, for conditions Gammu does not report as errors.
NO_NETWORK = "NO_NETWORK"
NOT_CONNECTED = "NOT_CONNECTED"
BAD_TEXT = "BAD_TEXT"  # a malformed number in the outbox: no modem can send to it
SIM_LOCKED = "SIM_LOCKED"  # the SIM wants a code we do not have
PIN_REFUSED = "PIN_REFUSED"
NO_CONFIG = "NO_CONFIG"  # modem.gammurc names a missing file
DETECTOR_RUNNING = "DETECTOR_RUNNING"  # test-modem while the detector holds the modem
# Waiting will not fix these: a person must act (the texts are still retried, at the longest backoff).
# (A SIM asking for its PIN again, or "no SIM" while it is busy, can pass: reconnecting enters the PIN.)
NEEDS_A_PERSON = frozenset(
    {
        "ERR_UNKNOWNCONNECTIONTYPESTRING",
        "ERR_UNKNOWNMODELSTRING",
        "ERR_CANTOPENFILE",
        "ERR_FILENOTSUPPORTED",
        "ERR_USING_DEFAULTS",
        "ERR_NONE_SECTION",
        "ERR_UNCONFIGURED",
        "ERR_DEVICENODRIVER",
        "ERR_INVALIDDATA",
        "ERR_EMPTYSMSC",
        "ERR_NOTSUPPORTED",
        "ERR_NOTIMPLEMENTED",
        SIM_LOCKED,
        PIN_REFUSED,
        DETECTOR_RUNNING,
        NO_CONFIG,
        BAD_TEXT,
    }
)
# Errors about opening the device: the message depends on whether the device is there at all.
DEVICE_OPEN = frozenset({"ERR_DEVICEOPENERROR", "ERR_DEVICENOTEXIST", "ERR_DEVICENOPERMISSION", "ERR_DEVICENODRIVER"})
GAMMURC_EXAMPLE = "[gammu] line, then e.g. device = /dev/ttyUSB0 and connection = at"  # what a gammurc needs

NOT_FOUND_HINT = "modem device {device} not found: is the modem plugged in? see ls /dev/serial/by-id"
NO_PERMISSION_HINT = (  # {user}: the detector's, not the $USER of whoever types the fix
    "modem device {device} exists but cannot be opened by this user ({user}): add it to the dialout group "
    "(sudo usermod -aG dialout {user}), then restart the detector (or log in again)"
)
HINTS = {
    "ERR_DEVICENOTEXIST": NOT_FOUND_HINT,
    "ERR_DEVICENOPERMISSION": "modem device {device} cannot be opened (no permission): is this user ({user}) in "
    "the dialout group?",
    "ERR_DEVICEOPENERROR": "modem device {device} cannot be opened: is it plugged in and not used elsewhere?",
    "ERR_DEVICENODRIVER": "modem device {device} has no driver: is it a serial (tty) device?",
    "ERR_DEVICEBUSY": "modem device {device} is in use by another program (ModemManager? "
    "sudo systemctl disable --now ModemManager)",
    "ERR_DEVICELOCKED": "modem device {device} is locked by another program (ModemManager? another detector?)",
    "ERR_DEVICEREADERROR": "reading from modem device {device} failed (unplugged? loose cable?)",
    "ERR_DEVICEWRITEERROR": "writing to modem device {device} failed (unplugged? loose cable?)",
    "ERR_TIMEOUT": "the modem did not answer in time (unplugged, busy, or rebooting?)",
    "ERR_NOTCONNECTED": "the modem connection was lost (unplugged or rebooted?)",
    "ERR_NOSIM": "no SIM card in the modem (or it is not seated): insert it",
    "ERR_SECURITYERROR": "the SIM needs its PIN (or refused it): check modem.pin",
    "ERR_EMPTYSMSC": "no SMS centre number on the SIM: set modem.smsc",
    "ERR_GETTING_SMSC": "the SMS centre number could not be read from the SIM: set modem.smsc",
    "ERR_UNKNOWN": "the modem refused the text (no network, no credit, or a barred number?)",
    "ERR_NETWORK_ERROR": "the mobile network refused the text (no signal or no credit?)",
    "ERR_PHONEOFF": "the modem's radio is off",
    "ERR_UNKNOWNCONNECTIONTYPESTRING": "unknown Gammu connection {connection!r}: use e.g. at or at115200",
    "ERR_UNKNOWNMODELSTRING": "unknown Gammu model: leave modem.model empty",
    "ERR_CANTOPENFILE": "the Gammu config file (modem.gammurc) cannot be read: check that this user may read it",
    "ERR_FILENOTSUPPORTED": "the Gammu config file (modem.gammurc) is empty or not a Gammu config: it needs a "
    f"{GAMMURC_EXAMPLE}",
    "ERR_USING_DEFAULTS": "the Gammu config file (modem.gammurc) has no [gammu] section (Gammu reads only that one): "
    f"it needs a {GAMMURC_EXAMPLE}",
    "ERR_NOTSUPPORTED": "the modem does not support this",
    "ERR_NOTIMPLEMENTED": "Gammu does not implement this for this modem",
}
DEFAULT_HINT = "modem error"
# A send's own reading of codes that mean something else elsewhere.
SEND_HINTS = {
    **HINTS,
    "ERR_INVALIDDATA": "Gammu or the modem refused the text's data (usually a number): check modem.smsc (E.164: + "
    "and digits, no spaces; empty: the SIM's own, which may be malformed) and the recipient number",
}
TOO_LONG_HINT = "texts are made from alerts.template and site.name: shorten them (python cli.py check-config checks)"
# ModemManager opens serial modems as they appear and answers for them: Gammu then finds the port
# busy, or gets no answer, or garbled ones.
MODEMMANAGER_CODES = frozenset({*DEVICE_OPEN, "ERR_DEVICEBUSY", "ERR_DEVICELOCKED", "ERR_TIMEOUT"})
MODEMMANAGER_HINT = (
    "; ModemManager is running and may hold the modem: sudo systemctl disable --now ModemManager "
    "(or hide the modem from it with a udev rule, see the README)"
)


class ModemError(RuntimeError):
    """A modem failure with a message a person can act on, and how the sender should treat it."""

    def __init__(
        self,
        message: str,
        code: str = "",
        *,
        maybe_sent: bool = False,
        retryable: bool = True,
        modem_down: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.maybe_sent = maybe_sent
        self.retryable = retryable
        self.modem_down = modem_down


def translate(
    exc: gammu.GSMError, during: str, device: str = "", connection: str = "", hints: Mapping[str, str] = HINTS
) -> ModemError:
    """A python-gammu exception as a ModemError (maybe_sent is left False: only the caller knows);
    `hints`: SEND_HINTS for a send."""
    code = type(exc).__name__
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    detail = info.get("Text", str(exc))
    hint, retryable = hints.get(code, DEFAULT_HINT), code not in NEEDS_A_PERSON
    if code in DEVICE_OPEN:
        hint, retryable = _device_hint(code, device)
        if hint == NOT_FOUND_HINT:
            detail = "the device does not exist"  # Gammu's own text may say "no permission"
    message = hint.format(device=device or "(none set)", connection=connection, user=user_name())
    if code in MODEMMANAGER_CODES and modemmanager_running():
        message += MODEMMANAGER_HINT
    return ModemError(
        f"{message} ({code} during {during}: {detail})",
        code,
        retryable=retryable,
        modem_down=code not in TEXT_REFUSED,
    )


def _device_hint(code: str, device: str) -> tuple[str, bool]:
    """Gammu can say "no permission" for a missing device (the dummy driver does): look for ourselves.

    A missing device may be plugged in later (retryable); a permission problem needs a person."""
    if device.startswith("/"):
        path = Path(device)
        if not path.exists():
            return NOT_FOUND_HINT, True
        if not os.access(path, os.R_OK | os.W_OK):
            return NO_PERMISSION_HINT, False
    return HINTS[code], code not in NEEDS_A_PERSON


def modemmanager_running(proc: Path = Path("/proc")) -> bool:
    """Whether a process named ModemManager runs on this machine."""
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "ModemManager":
                return True
        except OSError:  # the process ended meanwhile
            continue
    return False
