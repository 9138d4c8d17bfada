"""Merging positive windows into events: one event (one text) per incident.

An event opens on its first positive window (the text goes out then) and grows while further
positive windows start within `merge_gap` samples of its end. It closes once a decided window
starts beyond that gap, or at the end of the stream; its record is completed then.

A window decided "yes" late (inference/vote.py: a late model's votes) joins the open event when it
is within the gap of it, adds nothing to a recently closed one it belongs to (that incident was
texted), and is otherwise an incident of its own: the open event if there is none, else an event
opened and closed at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from inference.vote import Decision


@dataclass
class Event:
    start: int  # first sample of the first positive window
    end: int  # one past the last sample of the last positive window
    first_window: int
    confidence: float  # highest ensemble confidence of its windows
    votes: dict[str, float]  # the models' probabilities in that window
    degraded: bool
    windows: int = 1
    heard_at: float | None = None  # wall time its alert states (set when it opens)
    clock_offset: float = 0.0  # wall minus monotonic time at its alert: the clock its texts read
    next_update: int | None = None  # audio row a positive window must reach for a "still going" text
    record_id: int | None = field(default=None)
    late: bool = False  # opened by a window decided "yes" late


@dataclass(frozen=True)
class EventUpdate:
    opened: Event | None = None
    closed: Event | None = None
    late: Event | None = None  # an incident heard late, before the open event: opened and closed at once


RECENTLY_CLOSED = 8  # closed events a late window may belong to (late votes come within seconds)


class EventTracker:
    def __init__(self, window_samples: int, hop_samples: int, merge_gap_samples: int) -> None:
        self.window = window_samples
        self.hop = hop_samples
        self.merge_gap = merge_gap_samples
        self.current: Event | None = None
        self.closed: deque[Event] = deque(maxlen=RECENTLY_CLOSED)

    def update(self, decision: Decision) -> EventUpdate:
        if decision.late:
            return self._late(decision)
        start = decision.index * self.hop
        closed = None
        if self.current is not None and start > self.current.end + self.merge_gap:
            closed = self._close(self.current)  # no later window can join it
        if not decision.positive:
            return EventUpdate(closed=closed)
        if self.current is None:
            self.current = self._new(decision)
            return EventUpdate(opened=self.current, closed=closed)
        self._join(self.current, decision)
        return EventUpdate(closed=closed)

    def finish(self) -> Event | None:
        """Close the open event at the end of the stream."""
        return None if self.current is None else self._close(self.current)

    def _late(self, decision: Decision) -> EventUpdate:
        start = decision.index * self.hop
        for event in [self.current, *self.closed]:
            if (
                event is not None
                and start <= event.end + self.merge_gap
                and start + self.window + self.merge_gap >= event.start
            ):
                if event is self.current:
                    self._join(event, decision)
                return EventUpdate()
        if self.current is None:
            self.current = self._new(decision)
            return EventUpdate(opened=self.current)
        event = self._new(decision)
        self.closed.append(event)
        return EventUpdate(late=event)

    def _new(self, decision: Decision) -> Event:
        start = decision.index * self.hop
        return Event(
            start=start,
            end=start + self.window,
            first_window=decision.index,
            confidence=decision.confidence,
            votes=decision.votes,
            degraded=decision.degraded,
            late=decision.late,
        )

    def _join(self, event: Event, decision: Decision) -> None:
        start = decision.index * self.hop
        event.start, event.end = min(event.start, start), max(event.end, start + self.window)
        event.first_window = min(event.first_window, decision.index)
        event.windows += 1
        event.degraded |= decision.degraded
        if decision.confidence > event.confidence:
            event.confidence, event.votes = decision.confidence, decision.votes

    def _close(self, event: Event) -> Event:
        self.current = None
        self.closed.append(event)
        return event
