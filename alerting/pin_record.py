"""What became of the PIN entered last, remembered in the data folder across restarts.

Three wrong PINs lock a SIM (then only the operator's PUK opens it), and every restart of the SMS
process or of the detector, and every run of `test-modem`, would otherwise enter the same wrong PIN
again. A PIN the SIM called wrong is never entered again. One whose entry failed otherwise (a
timeout: the SIM may or may not have counted it) is entered once more, and never after a second
such failure: that always leaves the SIM a try for a person.

The file holds a salted hash of the PIN, not the PIN, readable by its owner only, and the state;
it is written whole (fsync, rename) so that a power cut cannot leave half a record. It makes the
data folder if there is none yet (`test-modem` before the first start): run that as the service's
user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

RECORD_FILE = "pin-refused"
REFUSED, UNCERTAIN = "refused", "uncertain"  # the SIM called it wrong; its entry failed otherwise
SALT_BYTES = 16

log = logging.getLogger(__name__)


class PinRecordError(RuntimeError):
    """The record cannot be read: what became of the PIN is unknown."""


class PinRecord:
    def __init__(self, data_dir: Path | None) -> None:
        """`data_dir` None: remembered for this object's life only."""
        self.path = None if data_dir is None else Path(data_dir) / RECORD_FILE
        self._in_memory: tuple[str, str] | None = None  # (pin, state)

    def state(self, pin: str) -> str | None:
        """REFUSED, UNCERTAIN or None (never failed) for `pin`; raises PinRecordError."""
        if self._in_memory is not None and self._in_memory[0] == pin:
            return self._in_memory[1]
        if self.path is None:
            return None
        try:
            if not self.path.exists():
                return None
            salt, digest, state = self.path.read_text(encoding="ascii").split()
            if state not in (REFUSED, UNCERTAIN):
                raise ValueError(f"unknown state {state!r}")
            return state if _digest(bytes.fromhex(salt), pin) == digest else None
        except (OSError, ValueError) as exc:
            raise PinRecordError(f"cannot read {self.path} ({exc}): delete it if modem.pin is right") from None

    def entering(self, pin: str, before: str | None) -> str:
        """Before the PIN goes to the SIM: record the state that stands if the outcome stays unknown
        (a timeout, a crash, a power cut): UNCERTAIN after a first try, REFUSED after a second."""
        standing = UNCERTAIN if before is None else REFUSED
        self._record(pin, standing)
        return standing

    def refused(self, pin: str) -> None:
        """The SIM called the PIN wrong."""
        self._record(pin, REFUSED)

    def taken(self) -> None:
        """The SIM took the PIN: no failure stands."""
        self._in_memory = None
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("could not remove %s: %s", self.path, exc)

    def _record(self, pin: str, state: str) -> None:
        """A file that cannot be written is logged; the state is kept for this object's life."""
        self._in_memory = (pin, state)
        if self.path is None:
            return
        salt = secrets.token_bytes(SALT_BYTES)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_whole(self.path, f"{salt.hex()} {_digest(salt, pin)} {state}\n")
        except OSError as exc:
            log.error("could not keep the PIN's state in %s (%s): a restart may enter it again", self.path, exc)


def _digest(salt: bytes, pin: str) -> str:
    return hashlib.sha256(salt + pin.encode()).hexdigest()


def _write_whole(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
