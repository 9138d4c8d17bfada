"""Shared fixtures: every test must leave no gs-* shared memory behind."""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHM_DIR = Path("/dev/shm")
SHARED_DATA = ROOT.parent / "shared" / "data"


def _segments() -> set[str]:
    return {p.name for p in SHM_DIR.glob("gs-*")}


def _of_another_live_run(name: str) -> bool:
    """A running detector other than ours (another pytest session in this tree): not our leak.

    Segment names are `gs-<supervisor pid in hex>-<what>`; a run of ours has ended by teardown."""
    run_id = name.split("-")[1]
    if not all(c in string.hexdigits for c in run_id):  # e.g. gs-test-...: made in this process
        return False
    pid = int(run_id, 16)
    return pid != os.getpid() and psutil.pid_exists(pid)


@pytest.fixture(autouse=True)
def no_leaked_shared_memory():
    before = _segments()
    yield
    leaked = {name for name in _segments() - before if not _of_another_live_run(name)}
    for name in leaked:
        (SHM_DIR / name).unlink(missing_ok=True)
    assert not leaked, f"test leaked shared memory segments: {sorted(leaked)}"


@pytest.fixture(scope="session", autouse=True)
def _child_path():
    """Child processes (forkserver/spawn) import the project from the repo root."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
