"""The SMS process: sends what the outbox holds, oldest first per recipient, until the modem
accepted it.

A failed text waits an exponential backoff (+-25 % jitter) from modem.retry_initial to
modem.retry_max; so does the modem after it failed as a whole (it is re-initialised before the
next attempt). A text the modem refused does not hold up texts to other numbers. The process
reads the outbox on every wake-up from the aggregator and at least every POLL_INTERVAL seconds
(a wake-up can be lost), and logs one line when a failure starts or changes and one when it
clears, never one per retry.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path
from typing import Any

from alerting.clock import clock_synchronised
from alerting.compose import network_back_text, release_summaries
from alerting.faults import NO_NETWORK, ModemError
from alerting.modem import Modem, ModemLike
from alerting.outbox import Outbox, OutboxRow, outbox_path
from alerting.phone import masked
from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.metrics import BlockedCall, LatencyTracker, StatsSlot, StatsTable
from pipeline.process import process_setup
from pipeline.storage import private_dir, queue_durably, volatile_data_dir

POLL_INTERVAL = 1.0  # s: longest wait between two reads of the outbox
MIN_WAIT = 0.05  # s: never a busy loop, whatever the clock says
JITTER = 0.25  # backoffs vary by +-25 % so retries do not fall into step
MAX_TEXTS_PER_PASS = 100  # then the loop turns (heartbeat, stop check) before going on
MODEM_SCOPE = "modem"
OUTBOX_RETRY = 10.0  # s before an outbox that failed (a failing card) is opened again
# s a modem call may block while the heartbeat goes on (pipeline.metrics.BlockedCall): Gammu waits
# up to about 100 s for a modem's answer to a send (modem manuals allow 60 s for AT+CMGS). Killed
# as hung while it waits, the SMS process would send the text again, as a repeat.
MODEM_CALL_LIMIT = 120.0
# s the wall clock may go back between two passes before it counts as stepped back (NTP setting
# right a Pi that booted on a saved time): the modem's timers then go back with it
CLOCK_STEP = 2.0
NETWORK_TEXT_AFTER = 600.0  # s: a longer outage (no network, or the modem itself failing: unplugged, not
# answering) is reported by a text once it is over; shorter ones (a handover, the modem restarting) are only logged

log = logging.getLogger(__name__)


def retry_delay(config: Config, attempts: int, rng: random.Random) -> float:
    """Backoff after the `attempts`-th failure in a row: retry_initial, doubling to retry_max, +-JITTER."""
    base = min(config.modem.retry_max, config.modem.retry_initial * 2 ** max(0, attempts - 1))
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


def _shown(scope: str) -> str:
    return scope if scope == MODEM_SCOPE else masked(scope)


class FailureLog:
    """One log line when a failure starts or changes, one when it clears (per scope: the modem, or
    one recipient whose texts the network refuses; its number masked in the line)."""

    def __init__(self) -> None:
        self.active: dict[str, tuple[str, float, int]] = {}  # scope -> (code, since, failures)

    def failed(self, scope: str, error: ModemError, now: float, waiting: int, retry_in: float) -> None:
        code = error.code or str(error)
        previous = self.active.get(scope)
        since, count = (now, 1) if previous is None else (previous[1], previous[2] + 1)
        self.active[scope] = (code, since, count)
        if previous is not None and previous[0] == code:
            log.debug("still failing (%s, %d times): %s", _shown(scope), count, error)
            return
        what = "" if scope == MODEM_SCOPE else f"texts to {masked(scope)}: "
        action = "retrying with backoff" if error.retryable else "needs a person; retrying slowly meanwhile"
        log.error("%s%s; %d texts waiting, %s (next try in %.0f s)", what, error, waiting, action, retry_in)

    def cleared(self, scope: str, now: float) -> None:
        if (previous := self.active.pop(scope, None)) is not None:
            what = "the modem works" if scope == MODEM_SCOPE else f"texts to {masked(scope)} go through"
            log.info("%s again, after %d failed attempts over %.0f s", what, previous[2], now - previous[1])

    @property
    def failing(self) -> bool:
        return bool(self.active)


class Sender:
    """Outboxes -> modem, one pass at a time; keeps the modem connected between passes. One outbox,
    or two while the data folder fails (pipeline/storage.py): one modem, one backoff and one network
    state for both. An outbox that fails (sqlite3.Error) raises, or goes to `on_outbox_error` and
    the other is served."""

    def __init__(
        self,
        config: Config,
        outbox: Outbox | None,
        modem: ModemLike,
        slot: StatsSlot | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        """`monotonic`: the clock an outage is timed on (the SMS process's: time.monotonic), so that
        NTP stepping the wall clock of a Pi without RTC does not lengthen or shorten it (a 30 s wait
        for the network at boot, with a 3-day step in it, was texted as 3 days without a network);
        None: the wall clock the passes are given."""
        self.config, self.modem, self.slot = config, modem, slot
        self.monotonic = monotonic
        self.outboxes = [] if outbox is None else [outbox]
        self.on_outbox_error: Callable[[Outbox, sqlite3.Error], None] | None = None
        self.latency = LatencyTracker(slot) if slot is not None else None
        self.rng = rng or random.Random()
        self.failures = FailureLog()
        self.retry_connect_at = 0.0  # wall time the modem may be tried again
        self.modem_failures = 0  # modem-level failures in a row (connect, or a send that lost it)
        self.last_error: ModemError | None = None
        self.next_network_check = 0.0  # wall time
        self.down_since: float | None = None  # when the modem first failed (no network, or itself): _outage_clock
        self.down_network_only = True  # every failure since down_since was "no network"
        self.last_now: float | None = None  # wall time of the last pass
        self.pass_began = time.monotonic()  # when the pass that `last_now` dates began

    def send_due(
        self,
        now: float,
        recipients: Iterable[str] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        """Send the texts due at `now` (to `recipients`, default all); the number sent."""
        self._follow_clock(now)
        self.pass_began = time.monotonic()
        wanted = None if recipients is None else set(recipients)
        sent, refused = 0, set()
        for outbox in list(self.outboxes):
            try:
                sent += self._send_due_in(outbox, now, wanted, refused, should_stop)
            except sqlite3.Error as exc:
                if self.on_outbox_error is None:
                    raise
                self.on_outbox_error(outbox, exc)
        if refused:
            with BlockedCall(self.slot, MODEM_CALL_LIMIT):
                self.modem.terminate()  # re-initialise before the next attempt
        return sent

    def _send_due_in(
        self,
        outbox: Outbox,
        now: float,
        wanted: set[str] | None,
        refused: set[str],
        should_stop: Callable[[], bool] | None,
    ) -> int:
        release_summaries(outbox, self.config, now)
        outbox.clamp_next_attempt(now + self.config.modem.retry_max)
        due = [r for r in outbox.due(now, wanted) if r.recipient not in refused]
        if not due or not self._ready(now):
            return 0
        sent = 0
        while due and sent < MAX_TEXTS_PER_PASS and not (should_stop is not None and should_stop()):
            error = self._send(outbox, due[0], now)
            if error is None:
                sent += 1
            else:
                refused.add(due[0].recipient)
                if error.modem_down:
                    break
            due = [r for r in outbox.due(now, wanted) if r.recipient not in refused]
        return sent

    def watch_network(self, now: float) -> None:
        """Every modem.network_check s, even with nothing to send: is the modem still on a network?
        A loss is logged at once (texts then wait); the end of a long one queues a health text."""
        self._follow_clock(now)
        if now < self.next_network_check:
            return
        self.next_network_check = now + self.config.modem.network_check
        if not self.modem.connected:
            self._ready(now)  # connects and checks the network, unless the modem is backing off
            return
        if (error := self._modem_call(self.modem.check_network)) is not None:
            self._modem_failed(error, now)
            return
        self._network_back(now)

    def _follow_clock(self, now: float) -> None:
        """The modem's timers are wall times, like the outbox's: a clock stepped back takes them back
        with it, or a modem that failed just before would not be tried again (and nothing sent) for
        as long as the step. (The outbox's own due times are clamped in each pass.)"""
        if self.last_now is not None and now < self.last_now - CLOCK_STEP:
            step = self.last_now - now
            self.retry_connect_at -= step
            self.next_network_check -= step
            if self.down_since is not None and self.monotonic is None:
                self.down_since -= step
            log.warning("the clock went back %.0f s: the modem's retry and network check go back with it", step)
        self.last_now = now

    def _network_back(self, now: float) -> None:
        """The end of an outage of the modem (no network, or the modem itself failing): texted when it
        was long (kept until queued); the end of a loss of the network is logged (FailureLog logs the
        end of the modem's own failures)."""
        if self.down_since is None:
            return
        lasted = self._outage_clock(now) - self.down_since
        if lasted >= NETWORK_TEXT_AFTER:
            text = network_back_text(self.config, now - lasted, now, clock_synchronised(), self.down_network_only)
            queue = functools.partial(_queue_health, recipients=self.config.alerts.recipients, now=now)
            if (exc := queue_durably([text], queue, Path(self.config.storage.data_dir))) is not None:
                log.error("the network-back text is NOT queued yet (%s): retrying", exc)
                return
        self.down_since = None
        if self.down_network_only:
            log.warning("the modem is on a network again after %.0f s without", lasted)

    def pending_count(self) -> int:
        """Texts waiting in the outboxes that can be read."""
        count = 0
        for outbox in self.outboxes:
            with contextlib.suppress(sqlite3.Error):
                count += outbox.pending_count()
        return count

    def wait_time(self, now: float) -> float:
        """Until the next text is due (and the modem may be tried), at most POLL_INTERVAL."""
        attempts = []
        for outbox in self.outboxes:
            with contextlib.suppress(sqlite3.Error):  # a failing outbox is dropped by the next pass
                attempts.append(outbox.next_attempt())
        due = min((t for t in attempts if t is not None), default=None)
        if due is None:
            return POLL_INTERVAL
        if not self.modem.connected:
            due = max(due, self.retry_connect_at)
        return min(POLL_INTERVAL, max(MIN_WAIT, due - now))

    def _ready(self, now: float) -> bool:
        """Connect (and check the network) unless the modem is backing off."""
        if self.modem.connected:
            return True
        if now < self.retry_connect_at:
            return False
        if (error := self._modem_call(self._connect)) is not None:
            self._modem_failed(error, now)
            return False
        self._network_back(now)
        return True

    def _connect(self) -> None:
        self.modem.connect()
        self.modem.check_network()

    def _modem_call(self, call: Callable[[], None]) -> ModemError | None:
        """`call`'s failure, after which the connection is closed in the same heartbeat-covered call:
        closing a modem that does not answer waits for it too (alerting/modem.py)."""
        with BlockedCall(self.slot, MODEM_CALL_LIMIT):
            try:
                call()
            except ModemError as exc:
                self.modem.terminate()
                return without_frames(exc)
        return None

    def _send(self, outbox: Outbox, row: OutboxRow, now: float) -> ModemError | None:
        outbox.mark_sending(row.id)  # committed: from here a crash means "maybe sent"
        started = time.monotonic()
        text = row.text_to_send(now + started - self.pass_began, clock_synchronised())  # a pass may last minutes
        try:
            with BlockedCall(self.slot, MODEM_CALL_LIMIT) as call:
                references = self.modem.send_text(row.recipient, text, on_part=call.renew)
        except ModemError as exc:
            without_frames(exc)
            delay = self._delay(exc, row.attempts + 1)
            outbox.mark_retry(row.id, str(exc), now + delay, exc.maybe_sent)
            if exc.modem_down:
                self._modem_failed(exc, now)
            else:
                self._count_error(exc)
                self.failures.failed(row.recipient, exc, now, self.pending_count(), delay)
            return exc
        sent_at = time.time()
        outbox.mark_sent(row.id, references, sent_at)
        self.modem_failures = 0
        self.failures.cleared(MODEM_SCOPE, now)
        self.failures.cleared(row.recipient, now)
        if self.slot is not None:
            self.slot.done(started)
        if self.latency is not None and row.kind == "alert" and row.event_time is not None and row.attempts == 0:
            self.latency.add((sent_at - row.event_time) * 1000.0)
        log.info(
            "text %d (%s%s, %d part%s) sent to %s",
            row.id,
            row.kind,
            ", repeat" if row.repeat else "",
            len(references),
            "" if len(references) == 1 else "s",
            masked(row.recipient),
        )
        return None

    def _modem_failed(self, error: ModemError, now: float) -> None:
        if self.down_since is None:
            self.down_since, self.down_network_only = self._outage_clock(now), True
        self.down_network_only = self.down_network_only and error.code == NO_NETWORK
        self.modem_failures += 1
        delay = self._delay(error, self.modem_failures)
        self.retry_connect_at = now + delay
        self._count_error(error)
        self.failures.failed(MODEM_SCOPE, error, now, self.pending_count(), delay)

    def _outage_clock(self, now: float) -> float:
        return now if self.monotonic is None else self.monotonic()

    def _delay(self, error: ModemError, failures: int) -> float:
        """Backoff; the longest at once when waiting cannot help (a person must act)."""
        if not error.retryable:
            return self.config.modem.retry_max
        return retry_delay(self.config, failures, self.rng)

    def _count_error(self, error: ModemError) -> None:
        self.last_error = error
        if self.slot is not None:
            self.slot.add("errors")


def without_frames(error: ModemError) -> ModemError:
    """`error` without its traceback and the exception it replaced: kept (as Sender.last_error),
    their frames would keep the modem's gammu.StateMachine, and freeing one that is still connected
    waits for the modem (minutes when it does not answer) wherever it happens."""
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


def _queue_health(outbox: Outbox, text: str, recipients: Iterable[str], now: float) -> None:
    outbox.enqueue_to_all(recipients, text, "health", now=now)


def send_pending_once(outbox: Outbox, modem: ModemLike, config: Config, now: float) -> int:
    """One pass without a process: send what is due at `now`; the number sent (failures stay queued)."""
    return Sender(config, outbox, modem).send_due(now)


def real_modem(config: Config) -> Modem:
    return Modem(config.modem, data_dir=Path(config.storage.data_dir))


class _Terminated:
    """SIGTERM asks for a clean stop (finish the text in hand, exit 0) instead of killing mid-send."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.requested = True


def run_sender(
    config: Config,
    layout: Layout,
    stop: StopEvent,
    modem_factory: Callable[[Config], ModemLike] | None = None,
) -> int:
    """The SMS process; returns 0 once `stop` is set (or SIGTERM arrives)."""
    process_setup("sms", supervisor_pid=layout.supervisor_pid)
    slot = StatsTable.attach(layout.stats, layout.process_names).slot("sms")
    terminated = _Terminated()

    def stopping() -> bool:
        return terminated.requested or stop.is_set()

    senders = Senders(config, (modem_factory or real_modem)(config), slot)
    log.info("SMS process started, %d texts waiting", senders.pending_count())
    try:
        while not stopping():
            slot.beat()
            wait = senders.send_due(time.time(), should_stop=stopping)
            if layout.outbox is None:
                stop.wait(wait)
            elif layout.outbox.receive(wait) is not None:
                layout.outbox.drain()  # one pass answers every wake-up waiting
        if not terminated.requested:
            senders.send_due(time.time())  # the supervisor stops this process last: flush what is due
    finally:
        senders.close()
    return 0


class Senders:
    """The SMS process's outboxes: the data folder's and, once texts were queued there, the
    in-memory one (pipeline/storage.py), served by one Sender. An outbox that fails (a failing
    card) is logged, closed and opened again OUTBOX_RETRY s later, when texts caught mid-send go
    again as repeats (Outbox.recover): it never stops the texts of the other."""

    def __init__(
        self, config: Config, modem: ModemLike, slot: StatsSlot, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        data_dir = Path(config.storage.data_dir)
        self.folders = (data_dir, volatile_data_dir(data_dir))
        self.sender = Sender(config, None, modem, slot, monotonic=monotonic)
        self.sender.on_outbox_error = self._failed
        self.slot = slot
        self.opened: dict[Path, Outbox] = {}
        self.retry_at: dict[Path, float] = {}  # monotonic
        self.failing: dict[Path, str] = {}  # the last error of each folder's outbox, logged once
        self._open_due()

    def send_due(self, now: float, should_stop: Callable[[], bool] | None = None) -> float:
        """One pass over the outboxes; how long to wait before the next."""
        self._open_due()
        self.sender.watch_network(now)
        self.sender.send_due(now, should_stop=should_stop)
        return self.sender.wait_time(now)

    def pending_count(self) -> int:
        return self.sender.pending_count()

    def close(self) -> None:
        self.sender.modem.terminate()
        log.info("SMS process stopping, %d texts waiting", self.pending_count())
        for outbox in self.opened.values():
            outbox.close()

    def _open_due(self) -> None:
        volatile = self.folders[1]
        for folder in self.folders:
            if folder in self.opened or time.monotonic() < self.retry_at.get(folder, 0.0):
                continue
            if folder == volatile and not outbox_path(folder).exists():
                continue
            try:
                outbox = Outbox(outbox_path(private_dir(folder) if folder == volatile else folder))
                if recovered := outbox.recover():
                    log.warning(
                        "%d texts were mid-send when the SMS process stopped: they go again, as repeats", recovered
                    )
            except (sqlite3.Error, OSError) as exc:  # OSError: a dying card fails even a lookup
                self._log_failure(folder, exc)
                continue
            self.opened[folder] = outbox
        self.sender.outboxes = [self.opened[folder] for folder in self.folders if folder in self.opened]

    def _failed(self, outbox: Outbox, exc: sqlite3.Error) -> None:
        folder = next(folder for folder, opened in self.opened.items() if opened is outbox)
        self._log_failure(folder, exc)
        with contextlib.suppress(sqlite3.Error):
            outbox.close()
        del self.opened[folder]
        self.sender.outboxes.remove(outbox)

    def _log_failure(self, folder: Path, exc: sqlite3.Error | OSError) -> None:
        self.retry_at[folder] = time.monotonic() + OUTBOX_RETRY
        if self.failing.get(folder) != str(exc):
            log.critical(
                "the outbox in %s failed (%s): its texts wait; tried again every %.0f s", folder, exc, OUTBOX_RETRY
            )
            self.slot.add("errors")
        self.failing[folder] = str(exc)


def check_modem(config: Config, send_to: str | None) -> dict[str, str]:
    """The name cli.py imports: see alerting.modem_check.test_modem."""
    from alerting.modem_check import test_modem

    return test_modem(config, send_to)
