"""What a site's own fused threshold would cost and buy here, replayed from its score log
(inference/score_log.py): `python cli.py site-thresholds`.

For each candidate threshold, the windows that reach it are merged into events as the detector
merges them (a window starting more than a window and `merge_gap` after the last one opens a new
event). Events on a record labelled gunshot are not false alerts; every other one is counted as one,
including events nobody labelled, so the rate is an upper bound. The labelled gunshots whose
recorded votes reach the threshold are what it would hear of them. The lowest threshold at or
under TARGET_ALERTS_PER_HOUR is proposed once MIN_HOURS have been listened to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.eventlog import SECONDS_PER_HOUR, EventLog
from inference.score_log import SCORE_FLOOR
from inference.vote import fused

CANDIDATES = (SCORE_FLOOR, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
TARGET_ALERTS_PER_HOUR = 0.5  # as the shipped vote was chosen for (models/README.md)
MIN_HOURS = 24.0  # a day and a night of the site's sound before a threshold is proposed


@dataclass(frozen=True)
class ThresholdCost:
    threshold: float
    false_alerts: int  # events it would have raised, not on a labelled gunshot
    false_alerts_per_hour: float
    gunshots_heard: int  # of the labelled gunshots

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class SiteThresholds:
    hours: float  # listened with every model voting
    gunshots: int  # labelled
    costs: list[ThresholdCost]
    proposed: float | None  # None: not listened long enough, or no candidate meets the target

    def to_json(self) -> dict:
        return {**self.__dict__, "costs": [c.to_json() for c in self.costs]}


def event_count(starts: np.ndarray, window: float, merge_gap: float) -> int:
    """Events that windows starting at `starts` (sorted, s) form."""
    if starts.size == 0:
        return 0
    return 1 + int(np.sum(np.diff(starts) > window + merge_gap))


def replay(
    scores: list[tuple[float, float]],
    listened_seconds: float,
    gunshots: list[tuple[float, float | None, dict[str, float]]],
    window: float,
    merge_gap: float,
    min_hours: float = MIN_HOURS,
) -> SiteThresholds:
    """`scores`: (window start, fused score) in time order; `gunshots`: (start, end or None, votes)
    of the records labelled gunshot; no proposal before `min_hours` of listening."""
    starts = np.array([s for s, _ in scores], dtype=np.float64)
    values = np.array([v for _, v in scores], dtype=np.float64)
    on_gunshot = np.zeros(starts.shape, dtype=bool)
    for start, end, _ in gunshots:
        on_gunshot |= (starts >= start - window) & (starts <= (end or start + window) + merge_gap)
    gunshot_scores = [fused(list(votes.values())) for _, _, votes in gunshots]
    hours = listened_seconds / SECONDS_PER_HOUR
    costs = []
    for threshold in CANDIDATES:
        false_alerts = event_count(starts[(values >= threshold) & ~on_gunshot], window, merge_gap)
        rate = false_alerts / hours if hours else float("inf")
        heard = sum(score >= threshold for score in gunshot_scores)
        costs.append(ThresholdCost(threshold, false_alerts, round(rate, 3), heard))
    meeting = [c.threshold for c in costs if c.false_alerts_per_hour <= TARGET_ALERTS_PER_HOUR]
    proposed = min(meeting) if meeting and hours >= min_hours else None
    return SiteThresholds(round(hours, 2), len(gunshots), costs, proposed)


def from_event_log(events: EventLog, since: float, window: float, merge_gap: float) -> SiteThresholds:
    scores, listened = events.window_scores(since)
    return replay(scores, listened, events.labelled_gunshots(since), window, merge_gap)
