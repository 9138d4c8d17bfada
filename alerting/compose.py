"""The words of a text, and the hourly limit that turns a flood of events into summaries.

Per recipient, at most `alerts.max_per_hour` alert texts go out in any rolling hour. Events
beyond that are held (in the outbox database) and reported in one summary text, at most every
SUMMARY_INTERVAL seconds: a flood is never silent and never drowns the phone.
"""

from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass

from alerting.outbox import Outbox
from pipeline.config import Config

HOUR = 3600.0
SUMMARY_INTERVAL = 900.0
DEGRADED_NOTE = " Detector degraded: not all models voted."


@dataclass(frozen=True)
class EventAlert:
    event_id: int
    started_at: float  # wall time of the event's start
    confidence: float
    degraded: bool


def local_time(config: Config, wall_time: float, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    zone = zoneinfo.ZoneInfo(config.site.timezone)
    return datetime.datetime.fromtimestamp(wall_time, zone).strftime(fmt)


def alert_text(config: Config, alert: EventAlert) -> str:
    return config.alerts.template.format(
        site=config.site.name,
        time=local_time(config, alert.started_at),
        confidence=f"{alert.confidence:.0%}",
        note=DEGRADED_NOTE if alert.degraded else "",
    )


def summary_text(config: Config, event_times: list[float]) -> str:
    first, last = local_time(config, event_times[0], "%H:%M"), local_time(config, event_times[-1], "%H:%M %Z")
    count = len(event_times)
    noun = "possible gunshot" if count == 1 else "more possible gunshots"
    return (
        f"{config.site.name}: {count} {noun} between {first} and {last} (texts limited to "
        f"{config.alerts.max_per_hour}/hour)."
    )


def queue_event_alert(outbox: Outbox, config: Config, alert: EventAlert, now: float) -> list[int]:
    """Queue the alert for every recipient (or hold it for a summary); returns the outbox ids."""
    text = alert_text(config, alert)
    ids = []
    for recipient in config.alerts.recipients:
        if outbox.sent_since(recipient, ("alert",), now - HOUR) < config.alerts.max_per_hour:
            ids.append(outbox.enqueue(recipient, text, "alert", alert.event_id, now, alert.started_at))
        else:
            outbox.hold(recipient, alert.event_id, alert.started_at)
    return ids


def release_summaries(outbox: Outbox, config: Config, now: float) -> list[int]:
    """Summary texts for held events, where the last summary is SUMMARY_INTERVAL old."""
    ids = []
    for recipient, event_times in outbox.held().items():
        last = outbox.last_created(recipient, "summary")
        if last is None or now - last >= SUMMARY_INTERVAL:
            ids.append(outbox.release_held(recipient, summary_text(config, event_times), now))
    return ids
