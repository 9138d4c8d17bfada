"""LiteRT's own stderr lines into this process's log, as one line each.

LiteRT's C++ logging writes a line to fd 2 in three writes ("INFO: ", the text, "\\n"; seen with
strace). Every model process creates its interpreter at the same moment at start-up, on the stderr
they share with the other processes, so another process's line can land inside LiteRT's: under
systemd that line loses its `<priority>` prefix and the journal files it at the wrong level.
While an interpreter is made, fd 2 goes to an in-memory file; its lines are then logged whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

log = logging.getLogger(__name__)
_LEVELS = {"ERROR": logging.ERROR, "WARNING": logging.WARNING}  # LiteRT's "INFO"/"VERBOSE": DEBUG


def _log_line(line: str) -> None:
    severity, _, text = line.partition(": ")
    log.log(_LEVELS.get(severity, logging.DEBUG), "LiteRT: %s", text if text else line)


@contextlib.contextmanager
def litert_lines_to_log() -> Iterator[None]:
    """Within the block, what native code writes to fd 2 is kept, then logged line by line."""
    sys.stderr.flush()
    saved = os.dup(2)
    sink = os.memfd_create("litert-stderr")
    os.dup2(sink, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        with open(sink, "rb") as kept:  # closes the memfd
            kept.seek(0)
            for line in kept.read().decode(errors="replace").splitlines():
                if line.strip():
                    _log_line(line)
