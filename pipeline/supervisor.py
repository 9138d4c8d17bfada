"""The supervisor: builds the shared memory and channels, starts one OS process per role,
restarts what dies or hangs, and shuts everything down in order.

Restart rule: a process that exits (a role function's return value is its exit code), is killed,
or stops beating its heartbeat for HEARTBEAT_TIMEOUT s (a loop turn beats it, and so does starting
an item: one item taking that long is a hang too) is (killed and) restarted after a backoff of
1, 2, 4 ... MAX_BACKOFF s, from 1 again once it ran for RESTART_WINDOW s. More than RESTART_BURST
crashes in a row, each within RESTART_WINDOW s of the process's start (the backoffs between them
do not count), mark the detector degraded (logged as an error, texted) but it keeps trying:
an unattended detector must not give up. The one exception is the capture of a replayed source:
its exit ends the run, whatever its code (0: the recording ended; EXIT_SOURCE_DAMAGED: the file
broke off; any other: the capture failed; restarted, it would replay the file from its start and
text its shots again). The pipeline drains and stops, and the detector exits with that status, or
with EXIT_INCOMPLETE when the recording ended well but was not scored as a whole (a process died,
audio went unscored, the last windows were not decided): its events may lack some.

A stop (SIGTERM, SIGINT) scores the audio captured up to it the same way before the processes stop:
the capture listens a second more and exits, zeros complete its last window, and the windows left
are decided, so that a shot in the last second before a `systemctl stop` or `restart` is texted
(Supervisor.run).
"""

from __future__ import annotations

import fcntl
import logging
import math
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np

from alerting.outbox import Outbox, outbox_path, wal_path
from alerting.sender import run_sender
from capture.process import EXIT_SOURCE_DAMAGED, run_capture
from inference.aggregator import run_aggregator
from inference.frontend import feature_ring_capacity, hop_samples, run_frontend, tail_padding
from inference.model import Ensemble
from inference.worker import run_worker
from pipeline.channel import Channel
from pipeline.config import Config
from pipeline.health import HealthMonitor, RunFigures
from pipeline.layout import AUDIO_RING, AUDIO_SHAPE, STATS, Layout, feature_shape
from pipeline.messages import OutboxChanged
from pipeline.metrics import StatsTable
from pipeline.oom_kills import OOM_KILLED, OomKills
from pipeline.process import exit_with
from pipeline.ring import Ring
from pipeline.shm import SHM_DIR, new_run_id, remove_stale_segments, segment_name
from pipeline.stats import StatsReporter
from pipeline.storage import (
    STORAGE_CHECK,
    card_texts_stuck,
    fall_back_if_unwritable,
    give_back,
    take_over,
    unwritable_reason,
    volatile_data_dir,
)
from pipeline.systemd import Notifier

HEARTBEAT_TIMEOUT = 10.0
STARTUP_GRACE = 60.0  # loading models on a Pi 3B+ takes seconds; no heartbeat check before this
# A crash (or a hang kill) this soon after a process's start continues a crash loop: it covers a
# process that hangs before its first item, killed once STARTUP_GRACE is over.
RESTART_WINDOW = STARTUP_GRACE + HEARTBEAT_TIMEOUT
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
RESTART_BURST = 5
CRASH_LOG_EVERY = 10  # past RESTART_BURST crashes in a row, one in this many is logged (the child's own in brief)
RECOVERED_AFTER = 600.0  # s without a restart: a degraded detector is well again (and says so); doubled
RECOVERED_AFTER_MAX = 86400.0  # at each recovery up to this, so crash loops in bursts do not text on and on
JOIN_TIMEOUT = 5.0
WATCH_INTERVAL = 0.5
DRAIN_LIMIT = 30.0  # longest wait, after a replayed source ends, for the last votes and texts
# A stop (SIGTERM, SIGINT) first scores the audio captured up to it (Supervisor._score_until_the_stop):
# for at most STOP_DRAIN_LIMIT s from the signal: STOP_LISTEN s more of listening, so that a shot just
# before the signal keeps its tail (cut 0.1-0.3 s after its peak and completed with zeros, a shot was
# heard at some positions and not at others, offline), then at most CAPTURE_STOP_LIMIT for the capture
# to end its read (one audio.period, 1 s at most) and exit, or be killed. Normally about 1.5 s.
STOP_DRAIN_LIMIT = 5.0
STOP_LISTEN = 1.0
CAPTURE_STOP_LIMIT = 2.0
STOP_DRAIN_POLL = 0.05
EXIT_INCOMPLETE = 5  # a replayed recording ended, but was not scored as a whole (the log says why)
LOCK_FILE = "detector.lock"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PRELOAD = [
    "pipeline.forkserver_signals",
    "numpy",
    "capture.process",
    "inference.frontend",
    "inference.worker",
    "inference.aggregator",
    "alerting.sender",
]
SHUTDOWN_ORDER = ("capture", "frontend", "model.", "aggregator", "sms")
SINGLE_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

log = logging.getLogger(__name__)


class AlreadyRunning(RuntimeError):
    pass


class SharedMemoryLost(RuntimeError):
    """Our shared-memory segments were deleted under us (by hand, or a cleanup gone wrong): no
    process can attach again, so the detector exits non-zero for systemd to restart it afresh."""


@dataclass
class Managed:
    name: str
    target: Callable[..., int]
    args: tuple[Any, ...]
    process: multiprocessing.process.BaseProcess | None = None
    restarts: int = 0
    restart_at: float = -math.inf  # monotonic: when it was last (to be) restarted
    processed_at_start: float = 0.0  # its stats row's items when it was last (re)started
    backoff: float = FIRST_BACKOFF
    crashes_in_a_row: int = 0  # each within RESTART_WINDOW of its (re)start
    finished: bool = False  # the capture of a replayed source exited: the run ends
    exitcode: int = 0  # of the finished process


class Supervisor:
    def __init__(self, config: Config, ensemble: Ensemble, context: BaseContext | None = None) -> None:
        self.card_dir = Path(config.storage.data_dir)  # the configured one, whatever the fallback
        self.config, self.storage_problem = fall_back_if_unwritable(config)
        self.ensemble = ensemble
        self.context = context or _default_context()
        self.stop_event = self.context.Event()
        self.capture_stop = self.context.Event()  # the capture's own: a stop ends it first (run)
        self.data_dir = Path(self.config.storage.data_dir)
        self.run_id = new_run_id()
        self.degraded = False
        self._last_restart = 0.0  # monotonic
        self._recovered_after = RECOVERED_AFTER
        self._lock_fd: int | None = None
        self._owned: list[Any] = []
        self.managed: dict[str, Managed] = {}
        self._finished_at: float | None = None
        self._undecided = False  # the replayed source ended and its last windows were not decided in DRAIN_LIMIT
        self.notifier = Notifier()
        self._ready = False
        self._stop_requested: list[int] = []  # signals received
        self._next_storage_check = 0.0  # monotonic
        self._volatile_seen: float | None = None  # mtime of the in-memory outbox when last looked at
        self._died_since_probe = False
        self.oom_kills = OomKills()
        self._previous_handlers: dict[int, Any] = {}
        self.padding = 0  # zeros written after the capture's last row (not audio heard)

    # --- start -------------------------------------------------------------------------------
    def start(self) -> Layout:
        self._take_lock()
        self._settle_storage()
        try:
            remove_stale_segments()
            self._listen_for_stop()
            self.layout = self._build_layout()
            for name, target, args in self._roles():
                self.managed[name] = Managed(name, target, args)
                self._spawn(self.managed[name])
        except BaseException:
            self._abandon_start()
            raise
        self.reporter = StatsReporter(self)
        self.health = HealthMonitor(self.config, self.stats.slot("capture"))
        if self.storage_problem is not None:
            self.health.storage_failed(self.storage_problem)
        log.info("detector started: %s", ", ".join(self.managed))
        return self.layout

    def _settle_storage(self) -> None:
        """From memory: take over what the card holds; on the card: give back what memory took."""
        if self.storage_problem is not None:
            take_over(self.card_dir, self.data_dir)
            return
        try:
            give_back(self.card_dir, volatile_data_dir(self.card_dir))
        except (OSError, sqlite3.Error, ValueError, TypeError, KeyError) as exc:  # also a marker of another form
            log.error("the texts sent from memory are not marked on %s (%s): they may go again", self.card_dir, exc)

    def _watch_storage(self, now: float) -> str | None:
        """The first time the data folder cannot be written while running, the texts waiting there
        are taken over if the card cannot record their sending, and the recipients are told (its
        text; the texts themselves go out through the in-memory outbox). Looked at with a probe
        file every STORAGE_CHECK s, and at once when a text went to memory or a process died (on a
        failed card, a restarted aggregator keeps its events in memory)."""
        if self.storage_problem is not None:
            return None
        volatile = outbox_path(volatile_data_dir(self.data_dir))
        seen = max((t for t in (_mtime(volatile), _mtime(wal_path(volatile))) if t is not None), default=None)
        if seen == self._volatile_seen and now < self._next_storage_check and not self._died_since_probe:
            return None
        self._volatile_seen, self._died_since_probe = seen, False
        self._next_storage_check = now + STORAGE_CHECK
        if (reason := unwritable_reason(self.data_dir)) is None:
            return None
        self.storage_problem = f"cannot write the data folder {self.data_dir} ({reason})"
        log.critical("%s: texts go out from memory until the detector is restarted", self.storage_problem)
        try:  # the card's waiting texts, if the card cannot record their sending any more
            if card_texts_stuck(self.card_dir):
                take_over(self.card_dir, volatile_data_dir(self.card_dir))
        except OSError as exc:  # another user's folder in the in-memory folder's place
            log.critical("the texts waiting on %s cannot be taken over: %s", self.card_dir, exc)
        return self.health.storage_failed(self.storage_problem)

    def _abandon_start(self) -> None:
        """A start that failed half-way (the forkserver, fork or shared memory refused): what it
        started goes, and SIGTERM stops this process again, so that the error reaches the caller."""
        self.stop_event.set()
        for managed in self.managed.values():
            if managed.process is not None:
                managed.process.kill()
                managed.process.join(JOIN_TIMEOUT)
        self._release()

    def _release(self) -> None:
        """Shared memory unlinked, the data folder's lock and the stop signals given back."""
        for owned in reversed(self._owned):
            owned.close()
        self._owned.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)

    def _take_lock(self) -> None:
        """One detector per data folder. flock dies with its process, so a crash leaves no stale lock."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another detector is running on data folder {self.data_dir} (stop it, or use --data-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _build_layout(self) -> Layout:
        rate = self.ensemble.sample_rate
        capacity = round(self.config.audio.ring_seconds * rate)
        audio = Ring.create(segment_name(self.run_id, AUDIO_RING), capacity, AUDIO_SHAPE, rate)
        self._owned.append(audio)
        feature_rings = {}
        for index, (key, spec) in enumerate(self.ensemble.logmel_specs().items()):
            ring = Ring.create(
                segment_name(self.run_id, f"features{index}"),
                feature_ring_capacity(spec, capacity),
                feature_shape(spec.n_mels),
                rate / spec.hop_length,
            )
            self._owned.append(ring)
            feature_rings[key] = ring.name
        names = ("capture", "frontend", *(f"model.{m.id}" for m in self.ensemble.models), "aggregator", "sms")
        self.stats = StatsTable.create(segment_name(self.run_id, STATS), names)
        self._owned.append(self.stats)
        self.audio = audio
        return Layout(
            run_id=self.run_id,
            audio_ring=audio.name,
            stats=self.stats.segment_name,
            process_names=names,
            feature_rings=feature_rings,
            windows={m.id: Channel(f"windows.{m.id}") for m in self.ensemble.models},
            votes=Channel("votes"),
            outbox=Channel("outbox"),
            supervisor_pid=os.getpid(),
        )

    def _roles(self) -> list[tuple[str, Callable[..., int], tuple[Any, ...]]]:
        common = (self.layout, self.stop_event)
        roles = [
            ("capture", run_capture, (self.config, self.layout, self.capture_stop)),
            ("frontend", run_frontend, (self.config, *common)),
        ]
        roles += [(f"model.{m.id}", run_worker, (self.config, m.id, *common)) for m in self.ensemble.models]
        roles += [
            ("aggregator", run_aggregator, (self.config, *common)),
            ("sms", run_sender, (self.config, *common)),
        ]
        return roles

    def _spawn(self, managed: Managed) -> None:
        process = self.context.Process(
            target=exit_with,
            args=(managed.target, *managed.args),
            kwargs={"brief_within": RESTART_WINDOW if managed.crashes_in_a_row >= RESTART_BURST else 0.0},
            name=managed.name,
            daemon=False,
        )
        process.start()
        managed.process = process
        row = self.stats.slot(managed.name)
        row.started(process.pid)
        row.set("restarts", managed.restarts)
        managed.processed_at_start = row.get("processed")

    # --- watch -------------------------------------------------------------------------------
    def watch_once(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if missing := [name for name in self.layout.segment_names() if not (SHM_DIR / name).exists()]:
            raise SharedMemoryLost(f"shared memory {', '.join(missing)} was deleted while the detector ran")
        for managed in self.managed.values():
            if managed.finished:
                continue
            process = managed.process
            if process is None:
                if now >= managed.restart_at:
                    self._spawn(managed)
                continue
            if process.exitcode is None:
                self._check_health(managed, now)
                continue
            if self._source_ended(managed.name):
                managed.finished, managed.exitcode = True, _exit_status(process.exitcode)
                self._complete_the_last_window()
                level = logging.INFO if process.exitcode in (0, EXIT_SOURCE_DAMAGED) else logging.ERROR
                log.log(level, "%s finished (exit code %d)", managed.name, process.exitcode)
                continue
            self._died_since_probe = True
            self._schedule_restart(managed, now, f"died ({self._death(process.exitcode)})")
        self.check_recovered(now)

    def _complete_the_last_window(self) -> None:
        """The end of the audio is scored, as `analyze` scores a recording's: zeros complete its last
        window (the capture, the ring's only writer, has exited): at the end of a replayed recording,
        and at a stop."""
        hop = hop_samples(self.config, self.ensemble)
        end = self.audio.write_pos
        zeros = np.zeros(tail_padding(end, self.ensemble.window_samples, hop), np.int16)
        self.audio.write(zeros, captured_at=self.audio.time_of(end + zeros.shape[0]))  # times stay the capture's
        self.padding += zeros.shape[0]

    def _source_ended(self, name: str) -> bool:
        """Only the capture of a replayed source ends on its own, whatever its exit code (restarted,
        it would replay the file from its start and text its shots again): any other exit, also a
        clean one (the SMS process stops cleanly on a stray SIGTERM), is restarted."""
        return name == "capture" and bool(self.config.audio.source)

    def _check_health(self, managed: Managed, now: float) -> None:
        row = self.stats.slot(managed.name)
        if now - row.get("started") < STARTUP_GRACE and row.get("processed") == managed.processed_at_start:
            return  # not one item done since its (re)start: still loading
        silent_for = now - row.get("heartbeat")  # also while stuck on one item: busy() beat last
        if silent_for > HEARTBEAT_TIMEOUT:
            managed.process.kill()
            managed.process.join(JOIN_TIMEOUT)
            self._schedule_restart(managed, now, f"is hung (no heartbeat for {silent_for:.0f} s): killed")

    def _death(self, exitcode: int) -> str:
        """What the log says of a process's death; an out-of-memory kill is told from a person's."""
        if exitcode == -signal.SIGKILL and self.oom_kills.take_one():
            return f"exit code {exitcode}: {OOM_KILLED}, counted in {self.oom_kills.path}; see `journalctl -k`"
        if exitcode == -signal.SIGKILL:
            return f"exit code {exitcode}: killed, by a person or for lack of memory (`journalctl -k` says which)"
        return f"exit code {exitcode}"

    def _schedule_restart(self, managed: Managed, now: float, why: str = "died") -> None:
        """Log `why` the process ended (in a crash loop texted as degraded, only every CRASH_LOG_EVERY-th
        time: a model crashing at once on every start logged 21 lines every 30 s, the log audit) and
        restart it after its backoff."""
        managed.process.close()
        managed.process = None
        managed.restarts += 1
        self._last_restart = now
        # a crash soon after its (re)start continues a crash loop, however long the backoffs between
        managed.crashes_in_a_row = managed.crashes_in_a_row + 1 if now - managed.restart_at <= RESTART_WINDOW else 1
        if managed.crashes_in_a_row > RESTART_BURST and not self.degraded:
            self.degraded = True
            self.health.degraded(
                f"{managed.name} crashed {managed.crashes_in_a_row} times in a row, each within"
                f" {RESTART_WINDOW:.0f} s of its start"
            )
            self.layout.outbox.send(OutboxChanged())
        if managed.crashes_in_a_row == 1:
            managed.backoff = FIRST_BACKOFF
        managed.restart_at = now + managed.backoff
        looping = managed.crashes_in_a_row > RESTART_BURST
        quiet = looping and managed.crashes_in_a_row % CRASH_LOG_EVERY
        log.log(logging.DEBUG if quiet else logging.ERROR, "%s %s", managed.name, why)
        log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "restarting %s in %.0f s%s",
            managed.name,
            managed.backoff,
            f" (crash {managed.crashes_in_a_row} in a row: every {CRASH_LOG_EVERY}th is logged)" if looping else "",
        )
        managed.backoff = min(managed.backoff * 2, MAX_BACKOFF)

    def check_recovered(self, now: float) -> None:
        """Degraded, then no restart for RECOVERED_AFTER s: well again, so that a later crash loop
        is texted too."""
        if self.degraded and now - self._last_restart >= self._recovered_after:
            self.degraded = False
            self.health.recovered(f"no process restarted for {self._recovered_after / 60:.0f} minutes")
            self.layout.outbox.send(OutboxChanged())
            self._recovered_after = min(2 * self._recovered_after, RECOVERED_AFTER_MAX)

    def source_finished(self) -> bool:
        return self.managed["capture"].finished

    def _listen_for_stop(self) -> None:
        """From the start on, SIGTERM and SIGINT ask `run` to stop; the handlers are given back at
        the end of `shutdown` (so a second signal does not cut a shutdown in order short, though it
        ends the scoring of the last audio before it), or by a start that failed."""
        self._previous_handlers = {
            sig: signal.signal(sig, lambda signum, _frame: self._stop_requested.append(signum)) for sig in STOP_SIGNALS
        }

    def run(self, until: Callable[[], bool] | None = None, last_look: Callable[[], None] | None = None) -> int:
        """Watch until SIGTERM/SIGINT, `until()` is true, or the replayed source has ended and drained;
        on a signal, score the audio captured up to it; then call `last_look()` while the processes
        still run (the profiler takes its figures there)."""
        try:
            while not self._stop_requested and not (until and until()):
                self.watch_once()
                self.notifier.watchdog()
                self._notify_ready()
                if self.reporter.maybe_report() is not None:
                    self.notifier.status(self.status_line())
                self.health.queue_unqueued()
                if any(text is not None for text in self._health_texts()):
                    self.layout.outbox.send(OutboxChanged())
                if self.source_finished() and self._drained(time.monotonic()):
                    break
                time.sleep(WATCH_INTERVAL)
            if self._stop_requested:
                self._score_until_the_stop()
            if last_look is not None:
                last_look()
            gaps = self._replay_gaps()
        finally:
            self.shutdown()
        if gaps:
            log.error("%s was not scored as a whole: %s", self.config.audio.source, "; ".join(gaps))
            return EXIT_INCOMPLETE
        return self.managed["capture"].exitcode

    def _replay_gaps(self) -> list[str]:
        """What kept a replayed recording that ended well from being scored as `analyze` scores it
        (the memory audit's replays exited 0 with model workers OOM-killed and shots missed)."""
        if not self.source_finished() or self.managed["capture"].exitcode:
            return []
        gaps = []
        if restarts := self._restarts():
            gaps.append(f"{restarts} process restarts (the log says which died and why)")
        if unheard := self._unheard_seconds():
            gaps.append(f"{unheard:.1f} s of it never scored (the detector fell behind)")
        if self._undecided:
            gaps.append(f"its last windows were not decided within {DRAIN_LIMIT:.0f} s of its end")
        return gaps

    def _health_texts(self) -> tuple[str | None, ...]:
        """Each health watch once per loop turn: a text it queued, or None."""
        return (
            self.health.check(),
            self.health.heartbeat(self.run_figures()),
            self._watch_storage(time.monotonic()),
            self.health.check_behind(self.behind_seconds(), self._unheard_seconds()) if self._ready else None,
        )

    def behind_seconds(self) -> float:
        """How far the decisions trail the microphone: audio captured after the end of the first
        window the aggregator has not decided (normally under the vote timeout and a hop)."""
        decided_to = self.stats.slot("aggregator").get("cursor") * hop_samples(self.config, self.ensemble)
        return max(0, self.audio.write_pos - decided_to - self.ensemble.window_samples) / self.audio.rate

    def _unheard_seconds(self) -> float:
        return self.stats.slot("frontend").get("unheard") / self.audio.rate

    def _notify_ready(self) -> None:
        """Tell systemd we are up once the first window was decided (or the start-up grace ran out:
        capture may be waiting for its device, which the health texts report)."""
        if self._ready:
            return
        aggregator = self.stats.slot("aggregator")
        if aggregator.get("processed") > 0 or time.monotonic() - aggregator.get("started") > STARTUP_GRACE:
            self._ready = True
            self.notifier.ready(self.status_line())

    def run_figures(self) -> RunFigures:
        lost = self.audio.lost / self.audio.rate + self._unheard_seconds()
        return RunFigures(lost, self._restarts(), self.degraded)

    def _restarts(self) -> int:
        return sum(managed.restarts for managed in self.managed.values())

    def status_line(self) -> str:
        """One line for `systemctl status`: windows decided, lost audio, restarts, health."""
        restarts = self._restarts()
        state = "DEGRADED" if self.degraded else "listening"
        aggregator = self.stats.slot("aggregator")
        decided = f"{aggregator.get('processed'):.0f} windows decided"
        if without := aggregator.get("partial_votes"):
            decided += f" ({without:.0f} without every model)"
        unheard = f", {unheard:.0f} s never scored (fell behind)" if (unheard := self._unheard_seconds()) else ""
        return (
            f"{state}; {decided}, {self.audio.overruns} overruns ({self.audio.lost} samples lost){unheard},"
            f" {restarts} restarts"
        )

    def _drained(self, now: float) -> bool:
        """After the source ended: every window decided and every text handed on (or DRAIN_LIMIT)."""
        if self._finished_at is None:
            self._finished_at = now
        if now - self._finished_at > DRAIN_LIMIT:
            log.warning("pipeline did not drain within %.0f s of the source's end", DRAIN_LIMIT)
            self._undecided = not self._windows_decided()
            return True
        return self._windows_decided() and self._outbox_idle()

    def _windows_decided(self) -> bool:
        """Every window of the audio in the ring announced by the front end and decided by the
        aggregator (its alert, if any, queued: the aggregator moves its cursor after that)."""
        hop = round(self.config.detector.hop * self.ensemble.sample_rate)
        last_window = (self.audio.write_pos - self.ensemble.window_samples) // hop
        cursors = (self.stats.slot(name).get("cursor") for name in ("frontend", "aggregator"))
        return all(cursor > last_window for cursor in cursors)

    def _score_until_the_stop(self) -> None:
        """At a stop, the audio captured up to it is scored like the end of a replayed recording: the
        capture listens STOP_LISTEN s more, ends its read and exits, zeros complete the last window,
        and the front end, the models and the aggregator decide the windows left, so that the alert
        for a shot in the last second is in the outbox before the processes stop (the SMS process,
        stopped last, sends what is due). At most STOP_DRAIN_LIMIT s; a second signal, or a front end or aggregator not
        running, ends it at once. Before, the windows not complete at the stop were never scored."""
        started = time.monotonic()
        deadline = started + STOP_DRAIN_LIMIT
        self.notifier.stopping()
        if self._second_stop_signal():
            return
        if not self.source_finished():
            if not self._listen_until(started + STOP_LISTEN):
                return
            if not self._stop_capture(min(deadline, time.monotonic() + CAPTURE_STOP_LIMIT)):
                return
            if self.audio.write_pos == 0:
                return  # nothing heard
            self._complete_the_last_window()
        log.info(
            "stopping: deciding the windows up to the stop (%.2f s of zeros complete the last)",
            self.padding / self.audio.rate,
        )
        while not self._windows_decided():
            if self._second_stop_signal():
                return
            if stopped := [n for n in ("frontend", "aggregator") if not _running(self.managed[n])]:
                log.warning("%s not running: stopping without deciding the last windows", " and ".join(stopped))
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "the last windows were not decided within %.0f s of the stop: stopping without them",
                    STOP_DRAIN_LIMIT,
                )
                return
            time.sleep(STOP_DRAIN_POLL)
        log.info("the audio up to the stop was scored in %.1f s", time.monotonic() - started)

    def _listen_until(self, when: float) -> bool:
        """The capture goes on until `when`; False if a second signal came meanwhile."""
        while time.monotonic() < when:
            if self._second_stop_signal():
                return False
            time.sleep(STOP_DRAIN_POLL)
        return True

    def _stop_capture(self, deadline: float) -> bool:
        """The capture, the ring's only writer, ends its read and exits; killed if it has not by
        `deadline` (a device that blocks). False if it still runs, or a second signal came."""
        self.capture_stop.set()
        process = self.managed["capture"].process
        if process is None:
            return True  # waiting for its restart: nothing writes
        while process.exitcode is None:
            if self._second_stop_signal():
                return False
            if time.monotonic() >= deadline:
                log.error("capture did not stop in %.0f s: killed", CAPTURE_STOP_LIMIT)
                process.kill()
                process.join(JOIN_TIMEOUT)
                return process.exitcode is not None
            process.join(STOP_DRAIN_POLL)
        return True

    def _second_stop_signal(self) -> bool:
        """A second SIGTERM/SIGINT (whenever it came: the loop may have seen both at once) asks for
        the stop without the scoring of the last audio."""
        if len(self._stop_requested) < 2:
            return False
        log.warning("second stop signal: stopping without deciding the last windows")
        return True

    def _outbox_idle(self) -> bool:
        """No text waiting that could be sent: in the data folder's outbox (unless a failing card
        lost it) or in the in-memory one."""
        return not any(_pending_texts(folder) for folder in (self.data_dir, volatile_data_dir(self.data_dir)))

    # --- stop --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop event, then join in data-flow order (the SMS process last, so it flushes), kill
        stragglers, unlink shared memory, release the lock."""
        self.notifier.stopping()
        self.capture_stop.set()
        self.stop_event.set()
        for prefix in SHUTDOWN_ORDER:
            for managed in self.managed.values():
                if managed.name.startswith(prefix) and managed.process is not None:
                    managed.process.join(JOIN_TIMEOUT)
                    if managed.process.exitcode is None:
                        log.error("%s did not stop in %.0f s: killed", managed.name, JOIN_TIMEOUT)
                        managed.process.kill()
                        managed.process.join(JOIN_TIMEOUT)
        self.reporter.report(log_it=True)
        self.health.retry_at = 0.0
        self.health.queue_unqueued()  # a last try
        for text in self.health.unqueued:
            log.critical("health text LOST, the outbox could not be written: %s", text)
        self._release()
        self.notifier.close()
        log.info("detector stopped")


def _mtime(path: Path) -> float | None:
    """None for a file that is not there (SQLite removes a -wal file when its last user closes)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def detector_running(data_dir: Path) -> bool:
    """Whether a detector holds the lock of `data_dir` (Supervisor._take_lock)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _pending_texts(data_dir: Path) -> int:
    if not outbox_path(data_dir).exists():
        return 0
    try:
        with Outbox(outbox_path(data_dir)) as outbox:
            return outbox.pending_count()
    except sqlite3.Error:
        return 0


def _running(managed: Managed) -> bool:
    return managed.process is not None and managed.process.exitcode is None


def _exit_status(exitcode: int) -> int:
    """A process's exit code as a shell reports it: 128 + N for death by signal N."""
    return exitcode if exitcode >= 0 else 128 - exitcode


def _default_context() -> BaseContext:
    """forkserver: children fork from a clean, thread-free server that preloaded the heavy modules
    (numpy, LiteRT), so they start fast and share those pages.

    One BLAS thread per process (measured: with OpenBLAS's default pool the front end's small
    matrix product cost 167 ms of CPU per second of audio, spinning threads; with one, 3 ms)."""
    for variable in SINGLE_THREAD_ENV:
        os.environ[variable] = "1"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
