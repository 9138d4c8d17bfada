"""Run a check as a user without root's powers: as root, open(2) and access(2) ignore file modes,
so a test of "this user cannot read it" forks, drops to `nobody` (no supplementary groups) in the
child, and runs the check there, for real (the tests skip when not run as root)."""

from __future__ import annotations

import contextlib
import encodings.utf_8_sig  # noqa: F401 - the config's encoding, loaded before a fork (as below)
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeline.users  # noqa: F401 - before any fork: nobody may not read this interpreter's modules (under /root)

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to become nobody")


def as_nobody(check: Callable[..., Any], *args: Any) -> Any:
    """`check(*args)` in a child running as nobody: its result, or the exception it raised (raised
    here again, as a RuntimeError naming its type and message if it cannot be pickled)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                answer = ("result", check(*args))
            except Exception as exc:  # handed to the parent
                answer = ("raised", exc)
            try:
                data = pickle.dumps(answer)
            except Exception as exc:
                data = pickle.dumps(("raised", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]} ({exc})")))
            with os.fdopen(writer, "wb") as stream:
                stream.write(data)
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as stream:
        data = stream.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and data, f"the child as nobody failed (status {status})"
    kind, value = pickle.loads(data)
    if kind == "raised":
        raise value
    return value


@contextlib.contextmanager
def open_folder() -> Iterator[Path]:
    """A folder nobody may enter and read (pytest's tmp_path is root's alone, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="gs-test-other-user-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
