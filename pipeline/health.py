"""Health texts: a dead microphone must not look like a quiet night.

The capture process stamps `last_sound` whenever a period is louder than health.silence_dbfs;
when that stamp (or the audio itself) is older than health.silence_alert_after, the recipients
get one text, and another when sound comes back. With health.heartbeat_hours set, a "still
running" text goes out on that schedule (silence from a detector then means something is wrong).
Texts go through the outbox like alerts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from alerting.compose import local_time
from alerting.outbox import Outbox, outbox_path
from pipeline.config import Config
from pipeline.metrics import StatsSlot

SILENT_TEXT = (
    "{site}: the microphone has given only silence (or nothing) since {since}. Check it: the detector cannot hear."
)
BACK_TEXT = "{site}: the microphone works again (silent from {since} to {until})."
DEGRADED_TEXT = "{site}: the detector is degraded ({reason}); it keeps trying, but needs a look."
HEARTBEAT_TEXT = "{site}: detector running since {since}: {status}."
SECONDS_PER_HOUR = 3600.0

log = logging.getLogger(__name__)


@dataclass
class HealthMonitor:
    config: Config
    capture: StatsSlot
    silent_since: float | None = None  # wall time the silence began, while it is being reported
    started: float = field(default_factory=time.monotonic)  # no sound stamped yet counts from here
    started_wall: float = field(default_factory=time.time)
    last_heartbeat: float | None = None  # monotonic; None: count from `started`

    def check(self, now_monotonic: float | None = None, now_wall: float | None = None) -> str | None:
        """Queue a health text when the microphone falls silent or comes back; returns its text."""
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        now_wall = time.time() if now_wall is None else now_wall
        quiet_for = now_monotonic - max(self.capture.get("last_sound"), self.started)
        threshold = self.config.health.silence_alert_after
        if self.silent_since is None and quiet_for >= threshold:
            self.silent_since = now_wall - quiet_for
            return self._send(SILENT_TEXT.format(site=self.config.site.name, since=self._local(self.silent_since)))
        if self.silent_since is not None and quiet_for < threshold:
            text = BACK_TEXT.format(
                site=self.config.site.name,
                since=self._local(self.silent_since),
                until=self._local(now_wall - quiet_for),
            )
            self.silent_since = None
            return self._send(text)
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
        return self._send(text, logging.INFO)

    def degraded(self, reason: str) -> str:
        """A process keeps crashing: the detector may miss shots until somebody looks."""
        return self._send(DEGRADED_TEXT.format(site=self.config.site.name, reason=reason))

    def _local(self, wall: float) -> str:
        return local_time(self.config, wall, "%Y-%m-%d %H:%M %Z")

    def _send(self, text: str, level: int = logging.ERROR) -> str:
        log.log(level, "%s", text)
        outbox = Outbox(outbox_path(Path(self.config.storage.data_dir)))
        try:
            for recipient in self.config.alerts.recipients:
                outbox.enqueue(recipient, text, "health")
        finally:
            outbox.close()
        return text
