"""Health texts: a dead microphone must not look like a quiet night.

The capture process stamps `last_sound` whenever a period is louder than health.silence_dbfs;
when that stamp (or the audio itself) is older than health.silence_alert_after, the recipients
get one text, and another when sound comes back. With health.heartbeat_hours set, a "still
running" text goes out on that schedule (silence from a detector then means something is wrong),
counted from the last one sent, also across restarts and reboots (HEARTBEAT_FILE).
Texts go through the outbox like alerts (pipeline/storage.py: the reserve of a full disk, then
the in-memory outbox). One no outbox can take yet is kept and tried again every HEALTH_RETRY s, in
order.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from alerting.clock import ForwardStep, boot_id, clock_synchronised
from alerting.compose import clock_note, local_time
from alerting.outbox import Outbox, outbox_path
from pipeline.config import Config
from pipeline.metrics import StatsSlot
from pipeline.storage import queue_durably, storage_advice

SILENT_TEXT = "{site}: microphone silent (or no audio) since {since}. Check it: the detector cannot hear."
BACK_TEXT = "{site}: the microphone works again (silent from {since} to {until})."
DEGRADED_TEXT = "{site}: the detector is degraded ({reason}); it keeps trying, but needs a look."
RECOVERED_TEXT = "{site}: the detector works normally again ({reason})."
HEARTBEAT_TEXT = "{site}: detector running since {since} ({figures}).{degraded}"
# incidents: events alerted or held for a summary ("alerts in the last 24 h" counted the first
# recipient's alert and summary texts: 2 alerts and a summary of 3 events said 3, and read as texts)
HEARTBEAT_FIGURES = "incidents in {hours:g} h: {incidents}; lost audio: {lost}; restarts: {restarts}"
HEARTBEAT_DEGRADED = " Degraded: needs a look."
# In the data folder: when the heartbeat's period began (the last one queued, or the first start
# without one); written only then.
HEARTBEAT_FILE = "heartbeat.json"
STORAGE_TEXT = (
    "{site}: the detector {problem}. It keeps listening and texting from memory, but keeps no clips, "
    "and its records are lost at a reboot. {advice}"
)
BEHIND_TEXT = (
    "{site}: the detector is {behind:.0f} s behind the microphone: shots texted late, missed past "
    "{ring:.0f} s. It needs more CPU (a cooler Pi, fewer other programs)."
)
CAUGHT_UP_TEXT = "{site}: the detector keeps up again (it was up to {worst:.0f} s behind; {unheard})."
BEHIND_AT = 30.0  # s of audio waiting to be decided: texted (or half the ring, if shorter) ...
CAUGHT_UP_AT = 5.0  # ... and caught up once under this ...
# ... for this long: a stall that comes back every few seconds is one spell, not a pair of texts each
# (a front end stopped 8 s of every 9 with a 12 s ring texted a pair every 9 s: the log audit)
CAUGHT_UP_FOR = 600.0
SECONDS_PER_HOUR = 3600.0
HEALTH_RETRY = 60.0  # s between tries to queue a health text the outbox refused
UNQUEUED_KEPT = 50  # health texts kept while the outbox refuses them; older ones are given up (logged)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFigures:
    """What the heartbeat says of the run so far (the supervisor's figures)."""

    lost_seconds: float  # audio lost to overruns and outages, or never scored (the detector fell behind)
    restarts: int  # of processes
    degraded: bool


@dataclass
class BehindSpell:
    """The detector texted as behind the microphone, until it has kept up for CAUGHT_UP_FOR s."""

    worst: float  # s behind, the most seen
    unheard_before: float  # s never scored before it began
    caught_up_since: float | None = None  # monotonic: under CAUGHT_UP_AT since


@dataclass
class HealthMonitor:
    config: Config
    capture: StatsSlot
    silent_since: float | None = None  # monotonic: the silence began, while it is being reported (NTP may
    # step the wall clock meanwhile: 39 min read as 3 days)
    started: float = field(default_factory=time.monotonic)  # no sound stamped yet counts from here
    last_heartbeat: float | None = None  # monotonic; None: from HEARTBEAT_FILE at the first look, else `started`
    boot_id: str = field(default_factory=lambda: boot_id())
    unqueued: list[str] = field(default_factory=list)  # texts the outbox refused, oldest first
    retry_at: float = 0.0  # monotonic
    clock_step: ForwardStep | None = None  # None: since the first start in this boot (the data folder's)
    behind: BehindSpell | None = None

    def __post_init__(self) -> None:
        if self.clock_step is None:
            self.clock_step = ForwardStep(self.config.storage.data_dir)

    def check(self, now_monotonic: float | None = None, now_wall: float | None = None) -> str | None:
        """Queue a health text when the microphone falls silent or comes back; returns its text."""
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        now_wall = time.time() if now_wall is None else now_wall
        quiet_for = now_monotonic - max(self.capture.get("last_sound"), self.started)
        threshold = self.config.health.silence_alert_after
        if self.silent_since is None and quiet_for >= threshold:
            self.silent_since = now_monotonic - quiet_for
            text = SILENT_TEXT.format(site=self.config.site.name, since=self._local(now_wall - quiet_for))
            return self._send(text, now_monotonic)
        if self.silent_since is not None and quiet_for < threshold:
            text = BACK_TEXT.format(
                site=self.config.site.name,
                since=self._local(now_wall - (now_monotonic - self.silent_since)),  # on the clock as it reads now
                until=self._local(now_wall - quiet_for),
            )
            self.silent_since = None
            return self._send(text, now_monotonic)
        return None

    def check_behind(self, behind: float, unheard: float, now_monotonic: float | None = None) -> str | None:
        """Queue a text when the decisions fall BEHIND_AT s behind the microphone (a Pi throttled by heat
        or loaded by other programs: shots texted later and later, then unheard), and one once they
        have kept up for CAUGHT_UP_FOR s. `behind`: s of audio captured but not decided; `unheard`: s
        never scored so far."""
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        ring = self.config.audio.ring_seconds
        spell = self.behind
        if spell is None:
            if behind < min(BEHIND_AT, ring / 2):
                return None
            self.behind = BehindSpell(behind, unheard)
            text = BEHIND_TEXT.format(site=self.config.site.name, behind=behind, ring=ring)
            return self._send(text, now_monotonic, timed=False)
        spell.worst = max(spell.worst, behind)
        if behind >= CAUGHT_UP_AT:
            spell.caught_up_since = None
            return None
        if spell.caught_up_since is None:
            spell.caught_up_since = now_monotonic
        if now_monotonic - spell.caught_up_since < CAUGHT_UP_FOR:
            return None
        self.behind = None
        lost = unheard - spell.unheard_before
        said = f"{max(1, round(lost))} s of audio went unscored" if lost else "no audio went unscored"
        text = CAUGHT_UP_TEXT.format(site=self.config.site.name, worst=spell.worst, unheard=said)
        return self._send(text, now_monotonic, timed=False)

    def heartbeat(
        self, figures: RunFigures, now_monotonic: float | None = None, now_wall: float | None = None
    ) -> str | None:
        """Queue the scheduled "still running" text when it is due (never when heartbeat_hours is 0):
        `heartbeat_hours` after the last one, whichever run of the detector sent it (HEARTBEAT_FILE),
        else after this start. `figures`: the supervisor's, as of now."""
        every = self.config.health.heartbeat_hours * SECONDS_PER_HOUR
        if not every:
            return None
        now_monotonic = time.monotonic() if now_monotonic is None else now_monotonic
        now_wall = time.time() if now_wall is None else now_wall
        if self.last_heartbeat is None:
            self.last_heartbeat = self._previous_heartbeat(now_monotonic, now_wall, every)
        if now_monotonic - self.last_heartbeat < every:
            return None
        self.last_heartbeat = now_monotonic
        text = self._heartbeat_text(figures, now_wall - (now_monotonic - self.started), now_wall, every)
        self._record_heartbeat(now_monotonic, now_wall)
        return self._send(text, now_monotonic, logging.INFO)

    def _heartbeat_text(self, run: RunFigures, since: float, now_wall: float, every: float) -> str:
        """E.g. "North gate: detector running since 2026-12-01 08:00 EAT (incidents in 24 h: 0;
        lost audio: none; restarts: 0).": one SMS part with the clock note, for a site name of up
        to about 20 characters. `since`: the start, by the wall clock as it reads now (NTP may
        have set it since)."""
        figures = HEARTBEAT_FIGURES.format(
            hours=every / SECONDS_PER_HOUR,
            # not fewer for a step NTP set the clock forward by since the start (they look older)
            incidents=self._incidents_since(now_wall - every - self.clock_step.seconds(), now_wall),
            lost=f"{max(1, round(run.lost_seconds))} s" if run.lost_seconds else "none",
            restarts=run.restarts,
        )
        return HEARTBEAT_TEXT.format(
            site=self.config.site.name,
            since=self._local(since),
            figures=figures,
            degraded=HEARTBEAT_DEGRADED if run.degraded else "",
        )

    def _incidents_since(self, since_wall: float, now_wall: float) -> str:
        """Events alerted or held for a summary in that span of the wall clock, to any recipient (one
        each, Outbox.incidents_between), from the data folder's outbox: the texts of a full disk's
        in-memory outbox are not counted; "?" when it cannot say."""
        path = outbox_path(self.config.storage.data_dir)
        if not path.exists():
            return "0"
        try:
            with Outbox(path) as outbox:
                return str(outbox.incidents_between(since_wall, now_wall))
        except (OSError, sqlite3.Error) as exc:
            log.warning("the heartbeat cannot count the incidents in %s: %s", path, exc)
            return "?"

    def _previous_heartbeat(self, now_monotonic: float, now_wall: float, every: float) -> float:
        """When the current period began (the last heartbeat, or the first start without one), on this
        process's monotonic clock, from HEARTBEAT_FILE; without a readable one, this start, written
        there (so that restarts more often than the period still make one period in the end).

        In the same boot the monotonic clock tells exactly. After a reboot only the wall clock can,
        which a Pi without RTC may have set back or forward by hours: the time it gives is taken
        between the time since the boot (the period began before it) and one period (a heartbeat at
        once, never a burst), so no clock step puts the next heartbeat later than a period from now."""
        path = Path(self.config.storage.data_dir) / HEARTBEAT_FILE
        try:
            last = json.loads(path.read_text())
            wall, monotonic, boot = float(last["wall"]), float(last["monotonic"]), str(last["boot_id"])
        except (OSError, ValueError, TypeError, KeyError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("%s unreadable (%s): the next heartbeat is counted from this start", path, exc)
            self._record_heartbeat(self.started, now_wall - (now_monotonic - self.started))
            return self.started
        if boot and boot == self.boot_id and monotonic <= now_monotonic:
            return monotonic
        elapsed = min(max(now_wall - wall, now_monotonic), every)  # Linux: monotonic time counts from the boot
        return now_monotonic - elapsed

    def _record_heartbeat(self, monotonic: float, wall: float) -> None:
        """Write HEARTBEAT_FILE, whole or not at all (else a later start counts from an older record, or itself)."""
        path = Path(self.config.storage.data_dir) / HEARTBEAT_FILE
        part = path.with_name(path.name + ".part")
        try:
            part.write_text(json.dumps({"wall": wall, "monotonic": monotonic, "boot_id": self.boot_id}))
            os.replace(part, path)
        except OSError as exc:
            log.warning("%s not written (%s): the heartbeat may come late after a restart", path, exc)

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
