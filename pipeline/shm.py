"""Named shared-memory segments: the supervisor creates and unlinks them, processes only attach.

Names are `gs-<run_id>-<what>`. An attaching process unregisters the segment from the
resource tracker, so a dying child never unlinks a segment the pipeline still uses.
A crashed run leaves segments behind; `remove_stale_segments` deletes those whose run is dead.
"""

from __future__ import annotations

import logging
import os
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import psutil

SHM_PREFIX = "gs-"
SHM_DIR = Path("/dev/shm")

log = logging.getLogger(__name__)


def segment_name(run_id: str, what: str) -> str:
    return f"{SHM_PREFIX}{run_id}-{what}"


def new_run_id() -> str:
    """The supervisor's pid in hex: stale-segment cleanup checks whether that pid still runs."""
    return f"{os.getpid():x}"


def create_segment(name: str, size: int) -> shared_memory.SharedMemory:
    return shared_memory.SharedMemory(name=name, create=True, size=size)


def attach_segment(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without registering it with a resource tracker.

    Python 3.11 registers every attach. A tracker of another process tree would unlink the segment
    when that tree ends (a `stats` reader could destroy a live detector's ring), and unregistering
    afterwards removes the creator's own registration when the tracker is shared. So: never register.
    """
    register = resource_tracker.register
    resource_tracker.register = lambda *_: None  # SharedMemory looks it up at call time
    try:
        return shared_memory.SharedMemory(name=name, create=False)
    finally:
        resource_tracker.register = register


def unlink_segment(segment: shared_memory.SharedMemory) -> None:
    """Unlink a segment we created; one deleted under us already is only forgotten by the tracker."""
    try:
        segment.unlink()
    except FileNotFoundError:
        resource_tracker.unregister(segment._name, "shared_memory")


def remove_stale_segments() -> list[str]:
    """Unlink this user's `gs-<pid>-*` segments whose supervisor pid is no longer running a detector.

    Another user's are left to their owner: /dev/shm is sticky, so unlinking them fails, and that
    failure stopped every start (a detector run by hand as root and killed, then the service)."""
    removed = []
    for path in SHM_DIR.glob(f"{SHM_PREFIX}*"):
        run_id = path.name[len(SHM_PREFIX) :].split("-", 1)[0]
        if not _is_run_id(run_id) or _run_alive(run_id):
            continue  # not named by a detector (someone else's "gs-..."), or its detector still runs
        try:
            if path.stat().st_uid != os.geteuid():
                continue
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            continue
    if removed:
        log.warning("removed %d stale shared-memory segments of a crashed run: %s", len(removed), removed)
    return removed


def _is_run_id(run_id: str) -> bool:
    return bool(run_id) and all(c in "0123456789abcdef" for c in run_id)


def _run_alive(run_id: str) -> bool:
    pid = int(run_id, 16)
    if pid == os.getpid():
        return True
    try:
        return psutil.Process(pid).is_running() and "python" in psutil.Process(pid).name().lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
