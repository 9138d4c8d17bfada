"""What every pipeline process does first, and how it logs."""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import sys

LOG_FORMAT = "%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s"
_PR_SET_NAME = 15
_COMM_LENGTH = 15  # the kernel keeps 15 characters of a thread name


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines to stderr (journald keeps them under systemd); one write per line."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def process_setup(role: str, nice: int = 0) -> None:
    """Name the process `gs.<role>` (ps, top, htop), dump tracebacks on a fatal signal, log to stderr.

    SIGINT is ignored: a Ctrl-C goes to the whole process group, and shutdown is the supervisor's
    job (it sets the stop event and joins the processes in order).
    """
    title = f"gs.{role}"[:_COMM_LENGTH]
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, title.encode(), 0, 0, 0)
    faulthandler.enable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        with contextlib.suppress(OSError):  # raising priority needs privileges: best effort
            os.nice(nice)
    configure_logging()
