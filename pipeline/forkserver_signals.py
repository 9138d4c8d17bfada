"""Imported first by multiprocessing's forkserver (the supervisor's PRELOAD), never elsewhere: the
forkserver ignores SIGTERM, and so do the processes it forks until `process_setup` takes over.

A SIGTERM to the whole process group (`timeout`, a service manager) must reach the supervisor
alone, which then stops everything in order. Killed at once, the forkserver would take the
supervisor's view of its children with it (their exit status comes through it). Ignoring SIGTERM in
the supervisor while it starts the forkserver (which keeps an ignored signal across exec) would
lose a SIGTERM sent meanwhile: it is process-wide, so blocking it in one thread does not keep it.
(multiprocessing's resource tracker ignores SIGTERM itself.)
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
