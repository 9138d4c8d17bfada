"""Health texts: a dead microphone must not look like a quiet night.

The capture process stamps `last_sound` whenever a period is louder than health.silence_dbfs;
when that stamp (or the audio itself) is older than health.silence_alert_after, the recipients
get one text, and another when sound comes back. With health.heartbeat_hours set, a "still
running" text goes out on that schedule (silence from a detector then means something is wrong).
Texts go through the outbox like alerts (pipeline/storage.py: the reserve of a full disk, then
the in-memory outbox). One no outbox can take yet is kept and tried again every HEALTH_RETRY s, in
order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from alerting.clock import clock_synchronised
from alerting.compose import clock_note, local_time
from alerting.outbox import Outbox
from pipeline.config import Config
from pipeline.metrics import StatsSlot
from pipeline.storage import queue_durably, storage_advice

SILENT_TEXT = "{site}: microphone silent (or no audio) since {since}. Check it: the detector cannot hear."
BACK_TEXT = "{site}: the microphone works again (silent from {since} to {until})."
DEGRADED_TEXT = "{site}: the detector is degraded ({reason}); it keeps trying, but needs a look."
RECOVERED_TEXT = "{site}: the detector works normally again ({reason})."
HEARTBEAT_TEXT = "{site}: detector running since {since}: {status}."
STORAGE_TEXT = (
    "{site}: the detector {problem}. It keeps listening and texting from memory, but keeps no clips, "
    "and its records are lost at a reboot. {advice}"
)
SECONDS_PER_HOUR = 3600.0
HEALTH_RETRY = 60.0  # s between tries to queue a health text the outbox refused
UNQUEUED_KEPT = 50  # health texts kept while the outbox refuses them; older ones are given up (logged)

log = logging.getLogger(__name__)


@dataclass
class HealthMonitor:
    config: Config
    capture: StatsSlot
    silent_since: float | None = None  # wall time the silence began, while it is being reported
    started: float = field(default_factory=time.monotonic)  # no sound stamped yet counts from here
    started_wall: float = field(default_factory=time.time)
    last_heartbeat: float | None = None  # monotonic; None: count from `started`
    unqueued: list[str] = field(default_factory=list)  # texts the outbox refused, oldest first
    retry_at: float = 0.0  # monotonic

    def check(self, now_monotonic: float | None = None, now_wall: float | None = None) -> str | None:
        """Queue a health text when the microphone falls silent or comes back; returns its text."""
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        now_wall = time.time() if now_wall is None else now_wall
        quiet_for = now_monotonic - max(self.capture.get("last_sound"), self.started)
        threshold = self.config.health.silence_alert_after
        if self.silent_since is None and quiet_for >= threshold:
            self.silent_since = now_wall - quiet_for
            text = SILENT_TEXT.format(site=self.config.site.name, since=self._local(self.silent_since))
            return self._send(text, now_monotonic)
        if self.silent_since is not None and quiet_for < threshold:
            text = BACK_TEXT.format(
                site=self.config.site.name,
                since=self._local(self.silent_since),
                until=self._local(now_wall - quiet_for),
            )
            self.silent_since = None
            return self._send(text, now_monotonic)
        return None

    def heartbeat(self, status: str, now_monotonic: float | None = None) -> str | None:
        """Queue the scheduled "still running" text when it is due (never when heartbeat_hours is 0)."""
        every = self.config.health.heartbeat_hours * SECONDS_PER_HOUR
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        last = self.started if self.last_heartbeat is None else self.last_heartbeat
        if not every or now_monotonic - last < every:
            return None
        self.last_heartbeat = now_monotonic
        text = HEARTBEAT_TEXT.format(site=self.config.site.name, since=self._local(self.started_wall), status=status)
        return self._send(text, now_monotonic, logging.INFO)

    def degraded(self, reason: str) -> str:
        """A process keeps crashing: the detector may miss shots until somebody looks."""
        text = DEGRADED_TEXT.format(site=self.config.site.name, reason=reason)
        return self._send(text, time.monotonic(), timed=False)

    def storage_failed(self, problem: str) -> str:
        """The detector runs from memory (pipeline/storage.py): the card, or the folder's owner, needs a person."""
        text = STORAGE_TEXT.format(site=self.config.site.name, problem=problem, advice=storage_advice(problem))
        return self._send(text, time.monotonic(), timed=False)

    def recovered(self, reason: str) -> str:
        text = RECOVERED_TEXT.format(site=self.config.site.name, reason=reason)
        return self._send(text, time.monotonic(), timed=False)

    def _local(self, wall: float) -> str:
        return local_time(self.config, wall, "%Y-%m-%d %H:%M %Z")

    def _send(self, text: str, now_monotonic: float, level: int = logging.ERROR, timed: bool = True) -> str:
        """Log and queue `text`; `timed` (it states times): with the clock note while unsynchronised."""
        text += clock_note(clock_synchronised()) if timed else ""
        log.log(level, "%s", text)
        self.unqueued.append(text)
        for lost in self.unqueued[:-UNQUEUED_KEPT]:
            log.critical("health text LOST, the outbox refused it for too long: %s", lost)
        del self.unqueued[:-UNQUEUED_KEPT]
        self.retry_at = 0.0
        self.queue_unqueued(now_monotonic)
        return text

    def queue_unqueued(self, now_monotonic: float | None = None) -> None:
        """Queue the texts the outbox refused before (the supervisor calls this every loop)."""
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        if not self.unqueued or now_monotonic < self.retry_at:
            return
        data_dir = Path(self.config.storage.data_dir)
        if (exc := queue_durably(self.unqueued, self._queue, data_dir)) is not None:
            log.error("health text NOT queued yet (%s): retrying in %.0f s", exc, HEALTH_RETRY)
            self.retry_at = now_monotonic + HEALTH_RETRY

    def _queue(self, outbox: Outbox, text: str) -> None:
        outbox.enqueue_to_all(self.config.alerts.recipients, text, "health")
