"""The SMS process: sends what the outbox holds, in order, until the modem accepted it.

Failed sends back off exponentially (with +-25 % jitter) from modem.retry_initial to
modem.retry_max; after a failure the modem is re-initialised before the next attempt. The
process sleeps until a wake-up, the next retry, or IDLE_POLL seconds, so a lost wake-up (the
channel full) delays nothing by more than that.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path

from alerting.compose import release_summaries
from alerting.modem import Modem, ModemError
from alerting.outbox import Outbox, OutboxRow, outbox_path
from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.metrics import LatencyTracker, StatsSlot, StatsTable
from pipeline.process import process_setup

IDLE_POLL = 5.0
MIN_WAIT = 0.05  # s: never a busy loop, whatever the clock says
JITTER = 0.25
TEST_TEXT = "{site}: test text from the gunshot detector."

log = logging.getLogger(__name__)


def retry_delay(config: Config, attempts: int, rng: random.Random) -> float:
    base = min(config.modem.retry_max, config.modem.retry_initial * 2 ** max(0, attempts - 1))
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


class Sender:
    """Outbox -> modem, one pass at a time; keeps the modem connected between passes."""

    def __init__(self, config: Config, outbox: Outbox, modem: Modem, slot: StatsSlot | None = None) -> None:
        self.config, self.outbox, self.modem, self.slot = config, outbox, modem, slot
        self.latency = LatencyTracker(slot) if slot is not None else None
        self.rng = random.Random()
        self.failing: str | None = None
        self.retry_connect_at = 0.0
        self.connect_attempts = 0

    def send_due(self, now: float) -> int:
        """Send every due text; stops at the first failure (the modem is then re-initialised)."""
        release_summaries(self.outbox, self.config, now)
        due = self.outbox.due(now)
        if not due or not self._ensure_connected(now):
            return 0
        sent = 0
        for row in due:
            if not self._send(row, now):
                break
            sent += 1
        return sent

    def wait_time(self, now: float) -> float:
        """Until the next text is due (and the modem may be retried), at most IDLE_POLL seconds."""
        due = self.outbox.next_attempt()
        if due is None:
            return IDLE_POLL
        if not self.modem.connected:
            due = max(due, self.retry_connect_at)
        return min(IDLE_POLL, max(MIN_WAIT, due - now))

    def _ensure_connected(self, now: float) -> bool:
        if self.modem.connected:
            return True
        if now < self.retry_connect_at:
            return False
        try:
            self.modem.connect()
        except ModemError as exc:
            self.connect_attempts += 1
            self.retry_connect_at = now + retry_delay(self.config, self.connect_attempts, self.rng)
            self._report_failure(str(exc))
            return False
        self.connect_attempts = 0
        return True

    def _send(self, row: OutboxRow, now: float) -> bool:
        self.outbox.mark_sending(row.id)
        started = time.monotonic()
        try:
            references = self.modem.send_text(row.recipient, row.text_to_send)
        except ModemError as exc:
            delay = retry_delay(self.config, row.attempts + 1, self.rng)
            self.outbox.mark_retry(row.id, str(exc), now + delay, exc.maybe_sent)
            self.modem.terminate()  # re-initialise before the next attempt
            self.retry_connect_at = now + delay
            self._report_failure(str(exc))
            return False
        sent_at = time.time()
        self.outbox.mark_sent(row.id, references, sent_at)
        if self.slot is not None:
            self.slot.done(started)
            if row.event_time is not None and row.attempts == 0:
                self.latency.add((sent_at - row.event_time) * 1000.0)
        if self.failing is not None:
            log.info("modem works again: texts are going out")
            self.failing = None
        log.info("text %d sent to %s (%s%s)", row.id, row.recipient, row.kind, ", repeat" if row.repeat else "")
        return True

    def _report_failure(self, message: str) -> None:
        if self.slot is not None:
            self.slot.add("errors")
        if message != self.failing:
            log.error("%s; %d texts waiting in the outbox, retrying with backoff", message, self.outbox.pending_count())
            self.failing = message


def run_sender(
    config: Config, layout: Layout, stop: StopEvent, modem_factory: Callable[[Config], Modem] | None = None
) -> int:
    process_setup("sms", supervisor_pid=layout.supervisor_pid)
    slot = StatsTable.attach(layout.stats, layout.process_names).slot("sms")
    outbox = Outbox(outbox_path(Path(config.storage.data_dir)))
    if recovered := outbox.recover():
        log.warning("%d texts were mid-send when the SMS process stopped: sending them again as repeats", recovered)
    modem = (modem_factory or _real_modem)(config)
    sender = Sender(config, outbox, modem, slot)
    try:
        while not stop.is_set():
            slot.beat()
            sender.send_due(time.time())
            layout.outbox.receive(sender.wait_time(time.time()))
        sender.send_due(time.time())  # a last pass: flush what is due before going down
    finally:
        modem.terminate()
        outbox.close()
    return 0


def _real_modem(config: Config) -> Modem:
    return Modem(config.modem)


def check_modem(config: Config, send_to: str | None) -> dict[str, object]:
    """Identify the modem; with `send_to`, queue a test text in the outbox and send it now."""
    modem = Modem(config.modem)
    modem.connect()
    try:
        report = modem.identify()
        if send_to:
            outbox = Outbox(outbox_path(Path(config.storage.data_dir)))
            try:
                row_id = outbox.enqueue(send_to, TEST_TEXT.format(site=config.site.name), "test")
                (row,) = [r for r in outbox.rows() if r.id == row_id]
                outbox.mark_sending(row_id)
                try:
                    references = modem.send_text(send_to, row.text)
                except ModemError as exc:
                    outbox.mark_retry(row_id, str(exc), time.time(), exc.maybe_sent)
                    raise
                outbox.mark_sent(row_id, references, time.time())
                report["test text"] = f"sent to {send_to} (references {references})"
            finally:
                outbox.close()
        return report
    finally:
        modem.terminate()
