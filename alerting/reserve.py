"""A few preallocated megabytes in the data folder, given up when the disk is full, so that a
decided alert still fits in the outbox (SQLite needs free pages to commit a row).

Something else may fill the SD card (another program, logs); our own clips stop at
storage.min_free_mb. The reserve is remade when space is back (at the hourly retention pass)."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

RESERVE_FILE = "outbox.reserve"
RESERVE_BYTES = 4 * 1024 * 1024  # far more than a day of texts (a row is well under 1 kB)

log = logging.getLogger(__name__)
T = TypeVar("T")


# SQLite's words for a full disk: no page for the row, or (opening a database anew) no room to
# extend its shared-memory index file, which it reports as "disk I/O error".
DISK_FULL_ERRORS = frozenset({"SQLITE_FULL", "SQLITE_IOERR_SHMSIZE"})


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc) or getattr(exc, "sqlite_errorname", None) in DISK_FULL_ERRORS
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def queue_in_order(pending: list[T], queue: Callable[[T], None], reserve: DiskReserve) -> BaseException | None:
    """Queue `pending` oldest first, each removed once queued; a full disk gives up the outbox
    reserve and tries again. The error that stopped it (the rest stay pending), or None."""
    while pending:
        try:
            queue(pending[0])
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc) and reserve.release():
                continue
            return exc
        pending.pop(0)
    return None


class DiskReserve:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / RESERVE_FILE

    def ensure(self) -> bool:
        """Make the reserve unless it exists; False (logged) when the disk has no room for it."""
        if self.path.exists() and self.path.stat().st_size >= RESERVE_BYTES:
            return True
        try:
            with self.path.open("wb") as reserve:
                os.posix_fallocate(reserve.fileno(), 0, RESERVE_BYTES)
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            log.warning("no room for the outbox reserve in %s (%s): free some space", self.path.parent, exc)
            return False
        return True

    def release(self) -> bool:
        """Give the space back to the filesystem; False if there was none to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:  # none, or another process gave it up a moment ago
            return False
        log.critical("the disk holding %s is full: released the outbox reserve to queue an alert", self.path.parent)
        return True
