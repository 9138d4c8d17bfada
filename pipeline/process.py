"""What every pipeline process does first, and how it logs."""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.systemd import under_journald

LOG_LEVEL_ENV = "GUNSHOT_LOG_LEVEL"  # the level the command line chose, for the processes it starts
LOG_FORMAT = "%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s"
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1
ORPHAN_CHECK_SECONDS = 1.0
_COMM_LENGTH = 15  # the kernel keeps 15 characters of a thread name
CRASH_EXIT = 1  # a role that raised: as Python's own exit code for an uncaught exception
OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
# How much sooner than the supervisor and the forkserver (whose loss stops or restarts every process)
# the kernel's out-of-memory killer takes a process, added to its oom_score_adj (-1000..1000; raising
# one's own needs no privilege). Measured under a 140 MB cgroup limit, nothing set: the supervisor,
# as big as a model worker, was killed as often, and with it the whole detector.
OOM_FIRST = 300  # a model worker: the vote goes on, degraded, while it restarts
OOM_SECOND = 200  # the front end: restarted, it frames what the ring still holds
OOM_LAST = 100  # capture, aggregator, SMS: the path from a shot to a text


JOURNAL_FORMAT = "%(processName)s %(levelname)s %(name)s: %(message)s"  # journald stamps the time itself
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """Prefix `<priority>` (sd-daemon(3)) to each line, a traceback's too: journald then files each
    line at its level (`journalctl -p err`)."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, _SYSLOG_PRIORITY[logging.INFO])
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def configure_logging(level: int | None = None) -> None:
    """Log lines to stderr, one write per line; under systemd, in the journal's own form. `level`
    None: the one the command line chose (`-v`), which the processes it starts inherit through
    LOG_LEVEL_ENV; else INFO."""
    if level is None:
        level = logging.getLevelNamesMapping().get(os.environ.get(LOG_LEVEL_ENV, ""), logging.INFO)
    else:
        os.environ[LOG_LEVEL_ENV] = logging.getLevelName(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(JOURNAL_FORMAT) if under_journald() else logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def exit_with(target: Callable[..., int], *args: Any, brief_within: float = 0.0) -> None:
    """Run a process's role; its return value is the exit code (multiprocessing drops it). A crash is
    logged with its traceback (multiprocessing printed it line by line, at no level), or in one line
    within `brief_within` s of the start: the supervisor's crash loop, whose traceback was logged."""
    started = time.monotonic()
    try:
        code = target(*args)
    except Exception as exc:
        log = logging.getLogger(__name__)
        if time.monotonic() - started <= brief_within:
            log.error("crashed again: %s: %s", type(exc).__name__, exc)
        else:
            log.critical("crashed", exc_info=True)
        code = CRASH_EXIT
    sys.exit(code)


def process_setup(role: str, nice: int = 0, supervisor_pid: int | None = None, oom: int = OOM_LAST) -> None:
    """Name the process `gs.<role>` (ps, top, htop), dump tracebacks on a fatal signal, log to stderr,
    offer it to the out-of-memory killer `oom` sooner than the supervisor, and die with the supervisor
    (`supervisor_pid`).

    SIGINT and SIGTERM are ignored: a Ctrl-C, or a SIGTERM to the whole process group (`timeout`, a
    service manager killing the group), would cut the processes off mid-work, and shutdown is the
    supervisor's job (it sets the stop event and joins the processes in order). The SMS process
    handles SIGTERM itself; a hung process is killed with SIGKILL.
    """
    title = f"gs.{role}"[:_COMM_LENGTH]
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, title.encode(), 0, 0, 0)
    faulthandler.enable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging()
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:  # raising priority needs RLIMIT_NICE (the unit's LimitNICE) or root
            logging.getLogger(__name__).warning("%s keeps its priority (nice %d more: %s)", title, nice, exc)
    _raise_oom_score(oom)
    if supervisor_pid is not None:
        threading.Thread(target=_die_with, args=(supervisor_pid,), name="orphan-watch", daemon=True).start()


def die_with_parent(parent_pid: int) -> None:
    """In a child just forked by `parent_pid`: SIGKILL it when its parent dies (PR_SET_PDEATHSIG),
    and at once if the parent died before the death signal was set (the child is then no longer
    `parent_pid`'s). The pid must be read by the parent before the fork: read in the child, it may
    already be the reaper's. pipeline/forkserver_signals.py calls it in every child of the
    forkserver (see _die_with)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def _raise_oom_score(by: int) -> None:
    try:
        with open(OOM_SCORE_ADJ) as adj:
            inherited = int(adj.read())
        with open(OOM_SCORE_ADJ, "w") as adj:
            adj.write(str(min(1000, inherited + by)))
    except OSError as exc:  # no /proc: the kernel's own choice stands
        logging.getLogger(__name__).warning("oom_score_adj not raised: %s", exc)


def _die_with(supervisor_pid: int) -> None:
    """A crashed (SIGKILLed) supervisor must not leave orphans holding the microphone and the modem.

    The processes are children of the forkserver, not of the supervisor. PR_SET_PDEATHSIG (set as
    they are forked, die_with_parent) kills them with the forkserver: the supervisor takes a dead forkserver's
    processes for dead and starts them again, so survivors would run twice, on the same rings,
    channels and modem. But the forkserver was measured to outlive a SIGKILLed supervisor: watch
    the supervisor's pid too.
    """
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        try:
            os.kill(supervisor_pid, 0)
        except ProcessLookupError:
            logging.getLogger(__name__).error("supervisor %d is gone: exiting", supervisor_pid)
            os.kill(os.getpid(), signal.SIGKILL)
