"""systemd's service protocol without a dependency: READY, WATCHDOG, STATUS and STOPPING messages
to $NOTIFY_SOCKET (sd_notify(3)), and whether our log lines go to the journal.

Outside systemd (no NOTIFY_SOCKET) every call does nothing. The watchdog is pinged at half of
WatchdogSec, from the supervisor's own loop: if that loop stops, systemd kills and restarts the
whole detector.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

WATCHDOG_SHARE = 0.5  # ping at this fraction of WatchdogSec, as sd_watchdog_enabled(3) advises
_USEC = 1e-6

log = logging.getLogger(__name__)


def under_journald(environ: Mapping[str, str] = os.environ) -> bool:
    """stderr is the journal (systemd sets JOURNAL_STREAM=device:inode of the stream it gave us)."""
    stream = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        stat = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_seconds(environ) * WATCHDOG_SHARE
        self._last_ping = float("-inf")
        self._socket: socket.socket | None = None
        self._stopping = False
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def stopping(self) -> None:
        """Said once, when the stop begins (the last audio is scored, then the processes stop)."""
        if not self._stopping:
            self._stopping = True
            self._send("STOPPING=1")

    def watchdog(self, now: float | None = None) -> None:
        """Ping if WatchdogSec is set and half of it has passed since the last ping."""
        now = time.monotonic() if now is None else now
        if self.watchdog_interval and now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:  # systemd gone or restarting: the detector itself goes on
            log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)


def _watchdog_seconds(environ: Mapping[str, str]) -> float:
    """WatchdogSec in seconds if it is meant for this process (WATCHDOG_PID unset or ours), else 0."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return 0.0
    try:
        return max(0.0, int(environ.get("WATCHDOG_USEC", "0")) * _USEC)
    except ValueError:
        return 0.0
