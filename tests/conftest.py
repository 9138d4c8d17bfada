"""Shared fixtures: every test must leave no gs-* shared memory behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import shm, storage

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHM_DIR = Path("/dev/shm")
SHARED_DATA = ROOT.parent / "shared" / "data"


TEST_RUN = "test"


def own_run_id() -> str:
    """The run id of segments a test makes itself (`gs-test<pid>x<random>-<what>`): the leak check
    below tells them from another pytest session's by the pid, and no detector's stale-segment
    cleanup takes them for a crashed run's (not a hex pid)."""
    return f"{TEST_RUN}{os.getpid():x}x{uuid.uuid4().hex[:6]}"


def _segments() -> set[str]:
    return {p.name for p in SHM_DIR.glob("gs-*")}


def _ours(name: str) -> bool:
    """Made by this pytest session: by one of its tests, or by a detector run that has ended by
    teardown (`gs-<supervisor pid in hex>-<what>`). Another session running at the same time makes
    segments too: neither its leak nor ours to remove. Left: a detector of that session that
    died during one of our tests, its segments not yet cleaned, still counts as ours."""
    run_id = name.split("-")[1]
    if run_id.startswith(TEST_RUN):
        return run_id[len(TEST_RUN) :].split("x")[0] == f"{os.getpid():x}"
    if not shm._is_run_id(run_id):
        return False  # someone else's "gs-..." (tests/test_shm.py removes its own)
    return int(run_id, 16) == os.getpid() or not shm._run_alive(run_id)


@pytest.fixture(autouse=True)
def no_leaked_shared_memory():
    before = _segments()
    yield
    leaked = {name for name in _segments() - before if _ours(name)}
    for name in leaked:
        (SHM_DIR / name).unlink(missing_ok=True)
    assert not leaked, f"test leaked shared memory segments: {sorted(leaked)}"


@pytest.fixture(autouse=True)
def _keep_umask():
    """cli.main sets the umask (0027) of the process it runs in: a command run in-process (CliRunner)
    must not change what later tests make."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture(scope="session", autouse=True)
def _child_path():
    """Child processes (forkserver/spawn) import the project from the repo root."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@contextlib.contextmanager
def tmpfs(folder: Path, megabytes: int) -> Iterator[Path]:
    """`folder` (made) with a tmpfs of its own mounted on it: a small disk of its own. Skips the
    test where mounting is refused (it needs root)."""
    folder.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}): the test needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def in_memory(tmp_path, monkeypatch) -> Path:
    """The in-memory folders of a failing data folder (pipeline/storage.py) in one of the test's own."""
    root = tmp_path / "shm"
    monkeypatch.setattr(storage, "VOLATILE_ROOT", root)
    return root
