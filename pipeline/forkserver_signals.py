"""Imported first by multiprocessing's forkserver (the supervisor's PRELOAD), never elsewhere: the
forkserver ignores SIGTERM, and so do the processes it forks until `process_setup` takes over; and
each process it forks dies with it (pipeline.process.die_with_parent), set before the child runs
anything else.

A SIGTERM to the whole process group (`timeout`, a service manager) must reach the supervisor
alone, which then stops everything in order. Killed at once, the forkserver would take the
supervisor's view of its children with it (their exit status comes through it). Ignoring SIGTERM in
the supervisor while it starts the forkserver (which keeps an ignored signal across exec) would
lose a SIGTERM sent meanwhile: it is process-wide, so blocking it in one thread does not keep it.
(multiprocessing's resource tracker ignores SIGTERM itself.)
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)  # first: the sooner, the shorter the window

import os  # noqa: E402

from pipeline.process import die_with_parent  # noqa: E402

_forking_pid = 0  # the process that forks, read before each fork: the parent of the child


def _remember_forking_pid() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


os.register_at_fork(before=_remember_forking_pid, after_in_child=lambda: die_with_parent(_forking_pid))
