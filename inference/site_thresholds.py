"""What a site's own fused threshold would cost and buy here, replayed from its score log
(inference/score_log.py): `python cli.py site-thresholds`.

For each candidate threshold, the windows that reach it are merged into events as the detector
merges them (a window starting more than a window and `merge_gap` after the last one opens a new
event). Events on a record labelled gunshot are not false alerts; every other one is counted as one,
including events nobody labelled, so the rate is an upper bound. A labelled gunshot is heard at a
threshold when a logged window on it reaches it. Only the model set in use counts: scores of
models replaced since are not mixed in. The lowest threshold at or under TARGET_ALERTS_PER_HOUR is
proposed once MIN_HOURS have been listened to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.eventlog import SECONDS_PER_HOUR, EventLog, first_whole_hour
from inference.score_log import SCORE_FLOOR

CANDIDATES = (SCORE_FLOOR, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
TARGET_ALERTS_PER_HOUR = 0.5  # as the shipped vote was chosen for (models/README.md)
MIN_HOURS = 24.0  # a day and a night of the site's sound before a threshold is proposed


@dataclass(frozen=True)
class ThresholdCost:
    threshold: float
    false_alerts: int  # events it would have raised, not on a labelled gunshot
    false_alerts_per_hour: float | None  # None: nothing listened to yet
    gunshots_heard: int  # of the labelled gunshots: a logged window on one reaches the threshold

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
    starts: np.ndarray,
    scores: np.ndarray,
    listened_seconds: float,
    gunshots: list[tuple[float, float | None]],
    window: float,
    merge_gap: float,
    min_hours: float = MIN_HOURS,
) -> SiteThresholds:
    """`starts`, `scores`: the logged windows in time order; `gunshots`: (start, end or None) of the
    records labelled gunshot; no proposal before `min_hours` of listening."""
    on_gunshot = np.zeros(starts.shape, dtype=bool)
    best_on_gunshot = []
    for start, end in gunshots:
        end = end or start + window
        on_gunshot |= (starts >= start - window - merge_gap) & (starts <= end + merge_gap)  # would join its event
        overlapping = scores[(starts + window >= start) & (starts <= end)]
        best_on_gunshot.append(overlapping.max() if overlapping.size else 0.0)
    exact_hours = listened_seconds / SECONDS_PER_HOUR
    hours = round(exact_hours, 2)  # as shown, and as compared with min_hours
    costs = []
    for threshold in CANDIDATES:
        false_alerts = event_count(starts[(scores >= threshold) & ~on_gunshot], window, merge_gap)
        rate = round(false_alerts / exact_hours, 3) if listened_seconds else None
        heard = int(sum(best >= threshold for best in best_on_gunshot))
        costs.append(ThresholdCost(threshold, false_alerts, rate, heard))
    rates = [(c.threshold, c.false_alerts_per_hour) for c in costs if c.false_alerts_per_hour is not None]
    meeting = [threshold for threshold, rate in rates if rate <= TARGET_ALERTS_PER_HOUR]
    proposed = min(meeting) if meeting and hours >= min_hours else None
    return SiteThresholds(hours, len(gunshots), costs, proposed)


def from_event_log(events: EventLog, since: float, models: str, window: float, merge_gap: float) -> SiteThresholds:
    """The replay of the model set `models` (JSON {model id: version}) from the first whole hour
    at or after `since` on."""
    start = first_whole_hour(since)
    starts, scores, listened = events.window_scores(start, models)
    return replay(starts, scores, listened, events.labelled_gunshots(start), window, merge_gap)
