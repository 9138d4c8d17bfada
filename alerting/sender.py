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
from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.metrics import BlockedCall, LatencyTracker, StatsSlot, StatsTable
from pipeline.process import process_setup
from pipeline.storage import volatile_data_dir

POLL_INTERVAL = 1.0  # s: longest wait between two reads of the outbox
MIN_WAIT = 0.05  # s: never a busy loop, whatever the clock says
JITTER = 0.25  # backoffs vary by +-25 % so retries do not fall into step
MAX_TEXTS_PER_PASS = 100  # then the loop turns (heartbeat, stop check) before going on
MODEM_SCOPE = "modem"
# s a modem call may block while the heartbeat goes on (pipeline.metrics.BlockedCall): Gammu waits
# up to about 100 s for a modem's answer to a send (modem manuals allow 60 s for AT+CMGS). Killed
# as hung while it waits, the SMS process would send the text again, as a repeat.
MODEM_CALL_LIMIT = 120.0
NETWORK_TEXT_AFTER = 600.0  # s: a longer loss of the network is reported by a text once it is back;
# shorter ones (a handover, the modem restarting) are only logged

log = logging.getLogger(__name__)


def retry_delay(config: Config, attempts: int, rng: random.Random) -> float:
    """Backoff after the `attempts`-th failure in a row: retry_initial, doubling to retry_max, +-JITTER."""
    base = min(config.modem.retry_max, config.modem.retry_initial * 2 ** max(0, attempts - 1))
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


class FailureLog:
    """One log line when a failure starts or changes, one when it clears (per scope: the modem, or
    one recipient whose texts the network refuses)."""

    def __init__(self) -> None:
        self.active: dict[str, tuple[str, float, int]] = {}  # scope -> (code, since, failures)

    def failed(self, scope: str, error: ModemError, now: float, waiting: int, retry_in: float) -> None:
        code = error.code or str(error)
        previous = self.active.get(scope)
        since, count = (now, 1) if previous is None else (previous[1], previous[2] + 1)
        self.active[scope] = (code, since, count)
        if previous is not None and previous[0] == code:
            log.debug("still failing (%s, %d times): %s", scope, count, error)
            return
        what = "" if scope == MODEM_SCOPE else f"texts to {scope}: "
        action = "retrying with backoff" if error.retryable else "needs a person; retrying slowly meanwhile"
        log.error("%s%s; %d texts waiting, %s (next try in %.0f s)", what, error, waiting, action, retry_in)

    def cleared(self, scope: str, now: float) -> None:
        if (previous := self.active.pop(scope, None)) is not None:
            what = "the modem works" if scope == MODEM_SCOPE else f"texts to {scope} go through"
            log.info("%s again, after %d failed attempts over %.0f s", what, previous[2], now - previous[1])

    @property
    def failing(self) -> bool:
        return bool(self.active)


class Sender:
    """Outbox -> modem, one pass at a time; keeps the modem connected between passes."""

    def __init__(
        self,
        config: Config,
        outbox: Outbox,
        modem: ModemLike,
        slot: StatsSlot | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config, self.outbox, self.modem, self.slot = config, outbox, modem, slot
        self.latency = LatencyTracker(slot) if slot is not None else None
        self.rng = rng or random.Random()
        self.failures = FailureLog()
        self.retry_connect_at = 0.0  # wall time the modem may be tried again
        self.modem_failures = 0  # modem-level failures in a row (connect, or a send that lost it)
        self.last_error: ModemError | None = None
        self.next_network_check = 0.0  # wall time
        self.network_lost_at: float | None = None  # wall time "no network" was first seen

    def send_due(
        self,
        now: float,
        recipients: Iterable[str] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        """Send the texts due at `now` (to `recipients`, default all); the number sent."""
        release_summaries(self.outbox, self.config, now)
        self.outbox.clamp_next_attempt(now + self.config.modem.retry_max)
        wanted = None if recipients is None else set(recipients)
        due = self.outbox.due(now, wanted)
        if not due or not self._ready(now):
            return 0
        sent, refused = 0, set()
        while due and sent < MAX_TEXTS_PER_PASS and not (should_stop is not None and should_stop()):
            error = self._send(due[0], now)
            if error is None:
                sent += 1
            else:
                refused.add(due[0].recipient)
                if error.modem_down:
                    break
            due = [r for r in self.outbox.due(now, wanted) if r.recipient not in refused]
        if refused:
            self.modem.terminate()  # re-initialise before the next attempt
        return sent

    def watch_network(self, now: float) -> None:
        """Every modem.network_check s, even with nothing to send: is the modem still on a network?
        A loss is logged at once (texts then wait); the end of a long one queues a health text."""
        if now < self.next_network_check:
            return
        self.next_network_check = now + self.config.modem.network_check
        if not self.modem.connected:
            self._ready(now)  # connects and checks the network, unless the modem is backing off
            return
        try:
            with BlockedCall(self.slot, MODEM_CALL_LIMIT):
                self.modem.check_network()
        except ModemError as exc:
            self.modem.terminate()
            self._modem_failed(exc, now)
            return
        self._network_back(now)

    def _network_back(self, now: float) -> None:
        if self.network_lost_at is None:
            return
        lost_at, self.network_lost_at = self.network_lost_at, None
        log.warning("the modem is on a network again after %.0f s without", now - lost_at)
        if now - lost_at >= NETWORK_TEXT_AFTER:
            text = network_back_text(self.config, lost_at, now, clock_synchronised())
            for recipient in self.config.alerts.recipients:
                self.outbox.enqueue(recipient, text, "health", now=now)

    def wait_time(self, now: float) -> float:
        """Until the next text is due (and the modem may be tried), at most POLL_INTERVAL."""
        due = self.outbox.next_attempt()
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
        try:
            with BlockedCall(self.slot, MODEM_CALL_LIMIT):
                self.modem.connect()
                self.modem.check_network()
        except ModemError as exc:
            self.modem.terminate()
            self._modem_failed(exc, now)
            return False
        self._network_back(now)
        return True

    def _send(self, row: OutboxRow, now: float) -> ModemError | None:
        self.outbox.mark_sending(row.id)  # committed: from here a crash means "maybe sent"
        started = time.monotonic()
        try:
            with BlockedCall(self.slot, MODEM_CALL_LIMIT) as call:
                references = self.modem.send_text(row.recipient, row.text_to_send, on_part=call.renew)
        except ModemError as exc:
            delay = self._delay(exc, row.attempts + 1)
            self.outbox.mark_retry(row.id, str(exc), now + delay, exc.maybe_sent)
            if exc.modem_down:
                self._modem_failed(exc, now)
            else:
                self._count_error(exc)
                self.failures.failed(row.recipient, exc, now, self.outbox.pending_count(), delay)
            return exc
        sent_at = time.time()
        self.outbox.mark_sent(row.id, references, sent_at)
        self.modem_failures = 0
        self.failures.cleared(MODEM_SCOPE, now)
        self.failures.cleared(row.recipient, now)
        if self.slot is not None:
            self.slot.done(started)
        if self.latency is not None and row.event_time is not None and row.attempts == 0:
            self.latency.add((sent_at - row.event_time) * 1000.0)
        log.info(
            "text %d (%s%s, %d part%s) sent to %s",
            row.id,
            row.kind,
            ", repeat" if row.repeat else "",
            len(references),
            "" if len(references) == 1 else "s",
            row.recipient,
        )
        return None

    def _modem_failed(self, error: ModemError, now: float) -> None:
        if error.code == NO_NETWORK and self.network_lost_at is None:
            self.network_lost_at = now
        self.modem_failures += 1
        delay = self._delay(error, self.modem_failures)
        self.retry_connect_at = now + delay
        self._count_error(error)
        self.failures.failed(MODEM_SCOPE, error, now, self.outbox.pending_count(), delay)

    def _delay(self, error: ModemError, failures: int) -> float:
        """Backoff; the longest at once when waiting cannot help (a person must act)."""
        if not error.retryable:
            return self.config.modem.retry_max
        return retry_delay(self.config, failures, self.rng)

    def _count_error(self, error: ModemError) -> None:
        self.last_error = error
        if self.slot is not None:
            self.slot.add("errors")


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
    """A Sender for the data folder's outbox and, once texts were queued there, one for the
    in-memory outbox (pipeline/storage.py), sharing the modem. An outbox that a failing card
    cannot open or write is logged when that starts and when it clears, and tried again every
    pass: it never stops the texts of the other."""

    def __init__(self, config: Config, modem: ModemLike, slot: StatsSlot) -> None:
        self.config, self.modem, self.slot = config, modem, slot
        data_dir = Path(config.storage.data_dir)
        self.folders = (data_dir, volatile_data_dir(data_dir))
        self.senders: dict[Path, Sender] = {}
        self.failing: dict[Path, str] = {}
        self._open_new()

    def send_due(self, now: float, should_stop: Callable[[], bool] | None = None) -> float:
        """One pass over each outbox; how long to wait before the next."""
        self._open_new()
        wait = POLL_INTERVAL
        for index, (folder, sender) in enumerate(self.senders.items()):
            try:
                if index == 0:
                    sender.watch_network(now)
                sender.send_due(now, should_stop=should_stop)
                wait = min(wait, sender.wait_time(now))
            except sqlite3.Error as exc:
                self._failed(folder, exc)
            else:
                self._cleared(folder)
        return wait

    def pending_count(self) -> int:
        """Texts waiting in the outboxes that can be read."""
        count = 0
        for sender in self.senders.values():
            with contextlib.suppress(sqlite3.Error):
                count += sender.outbox.pending_count()
        return count

    def close(self) -> None:
        self.modem.terminate()
        log.info("SMS process stopping, %d texts waiting", self.pending_count())
        for sender in self.senders.values():
            sender.outbox.close()

    def _open_new(self) -> None:
        main, volatile = self.folders
        for folder in (main, volatile):
            if folder in self.senders or (folder == volatile and not outbox_path(folder).exists()):
                continue
            try:
                outbox = Outbox(outbox_path(folder))
                if recovered := outbox.recover():
                    log.warning(
                        "%d texts were mid-send when the SMS process stopped: they go again, as repeats", recovered
                    )
            except sqlite3.Error as exc:
                self._failed(folder, exc)
                continue
            self.senders[folder] = Sender(self.config, outbox, self.modem, self.slot)

    def _failed(self, folder: Path, exc: sqlite3.Error) -> None:
        if self.failing.get(folder) != str(exc):
            log.critical("the outbox in %s cannot be used (%s): its texts wait until it can", folder, exc)
            self.slot.add("errors")
        self.failing[folder] = str(exc)

    def _cleared(self, folder: Path) -> None:
        if self.failing.pop(folder, None) is not None:
            log.warning("the outbox in %s works again", folder)


def check_modem(config: Config, send_to: str | None) -> dict[str, str]:
    """The name cli.py imports: see alerting.modem_check.test_modem."""
    from alerting.modem_check import test_modem

    return test_modem(config, send_to)
