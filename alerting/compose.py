"""The words of a text, and the hourly limit that turns a flood of events into summaries.

Per recipient, an event is texted at once while fewer than `alerts.max_per_hour` alert and summary
texts were queued in the rolling hour. An event over the limit is never dropped: it is recorded
(outbox table `held`), and every event waiting for that recipient goes out in ONE summary text as
soon as the limit allows another text, or once no summary went to that recipient for
SUMMARY_INTERVAL: a held event waits at most that long, and a flood costs at most max_per_hour + 4
texts an hour per recipient (the summaries sent past the limit are SUMMARY_INTERVAL apart). Once
events wait, later ones wait with them, so texts stay in time order.

Gunfire that goes on is texted again to the recipients its alert went to, outside the limit: "still
going" every UPDATE_INTERVAL of it (inference/aggregator.py) and, from LONG_EVENT, its end.
"""

from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass

from alerting.clock import UNSYNCHRONISED_NOTE, clock_synchronised
from alerting.outbox import HeldEvent, Outbox
from pipeline.config import SUMMARY_INTERVAL, Config

HOUR = 3600.0
LIMITED_KINDS = ("alert", "summary")  # test and health texts do not count against the limit
DEGRADED_NOTE = " Detector degraded: not all models are running."
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"
CLOCK_FORMAT = "%H:%M"
DATE_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True)
class EventAlert:
    """What the aggregator knows about a new event."""

    event_id: int
    started_at: float  # wall time of the event's start
    confidence: float  # 0..1
    degraded: bool  # the detector runs with models missing
    clock_synchronised: bool = True  # False: the wall time may be wrong (no RTC, no NTP yet)


@dataclass(frozen=True)
class EventEnd:
    """A long event (LONG_EVENT or more) has closed: how long the gunfire its alert told of went on."""

    event_id: int
    heard_at: float  # wall time its alert stated
    ended_at: float  # wall time of its last loud sound
    clock_synchronised: bool = True


@dataclass(frozen=True)
class EventOngoing:
    """An event still open UPDATE_INTERVAL after its alert (or its last such text): the gunfire goes on."""

    event_id: int
    heard_at: float  # wall time its alert stated
    still_at: float  # wall time of the latest loud sound heard
    clock_synchronised: bool = True


def local_time(config: Config, wall_time: float, fmt: str = TIME_FORMAT) -> str:
    """`wall_time` in the site's time zone, e.g. "2026-11-25 14:03:07 EAT"."""
    zone = zoneinfo.ZoneInfo(config.site.timezone)
    return datetime.datetime.fromtimestamp(wall_time, zone).strftime(fmt)


def local_span(config: Config, first: float, last: float, fmt: str) -> tuple[str, str]:
    """Two times for "from ... to ...": the zone after the second, and after the first too when it
    differs (the hour clocks go back reads "01:50 BST ... 01:10 GMT", not "01:50 ... 01:10 GMT")."""
    start, end = local_time(config, first, fmt), local_time(config, last, f"{fmt} %Z")
    if local_time(config, first, "%Z") != local_time(config, last, "%Z"):
        start = local_time(config, first, f"{fmt} %Z")
    return start, end


def alert_text(config: Config, alert: EventAlert) -> str:
    return config.alerts.template.format(
        site=config.site.name,
        time=local_time(config, alert.started_at),
        confidence=f"{alert.confidence:.0%}",
        note=(DEGRADED_NOTE if alert.degraded else "") + clock_note(alert.clock_synchronised),
    )


def end_text(config: Config, end: EventEnd) -> str:
    """E.g. "North gate: the gunfire heard at 14:03:07 went on until 14:05:12 EAT (2 min)."."""
    seconds = end.ended_at - end.heard_at
    lasted = f"{seconds / 60:.0f} min" if seconds >= 2 * 60 else f"{seconds:.0f} s"
    heard, ended = local_span(config, end.heard_at, end.ended_at, "%H:%M:%S")
    text = f"{config.site.name}: the gunfire heard at {heard} went on until {ended} ({lasted})."
    return text + clock_note(end.clock_synchronised)


def ongoing_text(config: Config, ongoing: EventOngoing) -> str:
    """E.g. "North gate: the gunfire heard at 14:03:07 is still going at 14:13:09 EAT (10 min so far)."
    (times to the second as in the alert and the end text, which name the gunfire by its first shot)."""
    minutes = max(1, round((ongoing.still_at - ongoing.heard_at) / 60))
    heard, still = local_span(config, ongoing.heard_at, ongoing.still_at, "%H:%M:%S")
    text = f"{config.site.name}: the gunfire heard at {heard} is still going at {still} ({minutes} min so far)."
    return text + clock_note(ongoing.clock_synchronised)


def clock_note(synchronised: bool) -> str:
    """What a text that states times adds while the clock is not synchronised."""
    return "" if synchronised else UNSYNCHRONISED_NOTE


def network_back_text(
    config: Config, lost_at: float, back_at: float, synchronised: bool = True, network_only: bool = True
) -> str:
    """E.g. "North gate: the modem had no mobile network from 14:03 to 15:20 EAT; texts were delayed."
    (not `network_only`: "the modem did not work", unplugged or not answering)."""
    same_day = local_time(config, lost_at, DATE_FORMAT) == local_time(config, back_at, DATE_FORMAT)
    fmt = CLOCK_FORMAT if same_day else f"{DATE_FORMAT} {CLOCK_FORMAT}"
    start, end = local_span(config, lost_at, back_at, fmt)
    what = "had no mobile network" if network_only else "did not work"
    text = f"{config.site.name}: the modem {what} from {start} to {end}; texts were delayed."
    return text + clock_note(synchronised)


def summary_text(config: Config, events: list[HeldEvent], now: float, synchronised: bool = True) -> str:
    """E.g. "North gate: 7 more possible gunfire incidents between 14:03 and 14:41 EAT (texts limited to
    5/hour)." (each incident an event, of one shot or many)

    Dates are added when the events span midnight or happened before today (local time)."""
    first, last = min(e.event_time for e in events), max(e.event_time for e in events)  # a clock set back
    with_date = len({local_time(config, t, DATE_FORMAT) for t in (first, last, now)}) > 1
    fmt = f"{DATE_FORMAT} {CLOCK_FORMAT}" if with_date else CLOCK_FORMAT
    start, end = local_span(config, first, last, fmt)
    limit = f"(texts limited to {config.alerts.max_per_hour}/hour)"
    if len(events) == 1:
        return f"{config.site.name}: 1 more possible gunfire incident at {end} {limit}." + clock_note(synchronised)
    when = f"at {end}" if start == local_time(config, last, fmt) else f"between {start} and {end}"  # one minute
    span = f"{len(events)} more possible gunfire incidents {when} {limit}."
    return f"{config.site.name}: {span}" + clock_note(synchronised)


def queue_event_alert(outbox: Outbox, config: Config, alert: EventAlert, now: float) -> list[int]:
    """Queue the alert for every recipient (or hold it for a summary); the outbox ids queued.

    Called by the aggregator; one transaction, so the limit holds with the SMS process writing too."""
    text = alert_text(config, alert)
    ids = []
    with outbox.transaction():
        for recipient in config.alerts.recipients:
            if outbox.has_waiting_held(recipient) or not _room(outbox, config, recipient, now):
                outbox.hold(recipient, alert.event_id, alert.started_at, now)
            else:
                ids.append(outbox.enqueue(recipient, text, "alert", alert.event_id, now, alert.started_at))
        ids += release_summaries(outbox, config, now)
    return ids


def queue_event_end(outbox: Outbox, config: Config, end: EventEnd, now: float) -> list[int]:
    """Queue the end of a long event for each recipient its alert was queued for (one it was held
    for learns of the event from a summary); the outbox ids queued. Not counted in the hourly limit:
    at most one for each alert."""
    text = end_text(config, end)
    with outbox.transaction():
        return [outbox.enqueue(r, text, "update", end.event_id, now) for r in outbox.alerted(end.event_id)]


def queue_event_ongoing(outbox: Outbox, config: Config, ongoing: EventOngoing, now: float) -> list[int]:
    """Queue "still going" for each recipient the event's alert was queued for (as the end text), but
    not one whose last "still going" of it is unsent yet (no network, no modem): a modem back after an
    hour-long outage sends one, not six; the outbox ids queued. Not counted in the hourly limit: the
    aggregator queues one every UPDATE_INTERVAL of the gunfire at most."""
    text = ongoing_text(config, ongoing)
    with outbox.transaction():
        return [
            outbox.enqueue(r, text, "update", ongoing.event_id, now)
            for r in outbox.alerted(ongoing.event_id)
            if not outbox.has_unsent(r, "update", ongoing.event_id)
        ]


def release_summaries(outbox: Outbox, config: Config, now: float) -> list[int]:
    """One summary text per recipient with waiting events, where the hourly limit has room or no
    summary went to the recipient in the last SUMMARY_INTERVAL.

    The SMS process calls this on every pass, so a summary goes out as soon as either allows."""
    if not outbox.waiting_held():
        return []  # the usual case: a read, no write transaction
    ids = []
    with outbox.transaction():
        for recipient, events in outbox.waiting_held().items():
            if _room(outbox, config, recipient, now) or not _summarised_lately(outbox, recipient, now):
                summary = summary_text(config, events, now, clock_synchronised())
                ids.append(outbox.release_held(recipient, [e.id for e in events], summary, now))
    return ids


def _room(outbox: Outbox, config: Config, recipient: str, now: float) -> bool:
    """Whether the hourly limit has room, in the hour before `now` as the clock now reads: after the
    clock is set back, texts stamped later hold nothing up (else a new shot waits for that hour)."""
    return outbox.count_between(recipient, LIMITED_KINDS, now - HOUR, now) < config.alerts.max_per_hour


def _summarised_lately(outbox: Outbox, recipient: str, now: float) -> bool:
    """Whether a summary went to `recipient` in the SUMMARY_INTERVAL before `now` (as `_room` counts:
    summaries stamped after `now`, before the clock was set back, hold nothing up)."""
    return outbox.count_between(recipient, ("summary",), now - SUMMARY_INTERVAL, now) > 0
