"""Shared fixtures: every test must leave no gs-* shared memory behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHM_DIR = Path("/dev/shm")
SHARED_DATA = ROOT.parent / "shared" / "data"


def _segments() -> set[str]:
    return {p.name for p in SHM_DIR.glob("gs-*")}


@pytest.fixture(autouse=True)
def no_leaked_shared_memory():
    before = _segments()
    yield
    leaked = _segments() - before
    for name in leaked:
        (SHM_DIR / name).unlink(missing_ok=True)
    assert not leaked, f"test leaked shared memory segments: {sorted(leaked)}"


@pytest.fixture(scope="session", autouse=True)
def _child_path():
    """Child processes (forkserver/spawn) import the project from the repo root."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
