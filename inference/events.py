"""Merging positive windows into events: one event (one text) per incident.

An event opens on its first positive window (the text goes out then) and grows while further
positive windows start within `merge_gap` samples of its end. It closes once a decided window
starts beyond that gap, or at the end of the stream; its record is completed then.
"""

from __future__ import annotations

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
    opened_at: float = 0.0  # monotonic time the event opened (its first vote)
    record_id: int | None = field(default=None)


@dataclass(frozen=True)
class EventUpdate:
    opened: Event | None = None
    closed: Event | None = None


class EventTracker:
    def __init__(self, window_samples: int, hop_samples: int, merge_gap_samples: int) -> None:
        self.window = window_samples
        self.hop = hop_samples
        self.merge_gap = merge_gap_samples
        self.current: Event | None = None

    def update(self, decision: Decision) -> EventUpdate:
        start = decision.index * self.hop
        closed = None
        if self.current is not None and start > self.current.end + self.merge_gap:
            closed, self.current = self.current, None  # no later window can join it
        if not decision.positive:
            return EventUpdate(closed=closed)
        if self.current is None:
            self.current = Event(
                start=start,
                end=start + self.window,
                first_window=decision.index,
                confidence=decision.confidence,
                votes=decision.votes,
                degraded=decision.degraded,
                opened_at=decision.first_vote_at,
            )
            return EventUpdate(opened=self.current, closed=closed)
        event = self.current
        event.end = start + self.window
        event.windows += 1
        event.degraded |= decision.degraded
        if decision.confidence > event.confidence:
            event.confidence, event.votes = decision.confidence, decision.votes
        return EventUpdate(closed=closed)

    def finish(self) -> Event | None:
        """Close the open event at the end of the stream."""
        event, self.current = self.current, None
        return event
