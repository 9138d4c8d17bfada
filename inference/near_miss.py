"""Near misses: windows the vote turned down although a model called them a gunshot.

They are where the models disagree at this site: a gun the mel models have never heard, a door
slam that fooled the waveform model. Their clips are the recordings most worth labelling and
training on (`python cli.py label`, `export-labels`), the field data that the held-out figures of
models/README.md say the models lack. At most `per_hour` are kept per hour of audio. As positive
windows merge into one event, a window inside an open event, or starting within `merge_gap` of
the last near miss's window, is not kept again; one whose window overlaps an event's first gives
way to the event (its audio is in the event's clip) and frees its place in the budget.
"""

from __future__ import annotations

import logging
from collections import deque

from inference.eventlog import SECONDS_PER_HOUR
from inference.vote import Decision, VoteRule

log = logging.getLogger(__name__)


class NearMissPicker:
    def __init__(self, rule: VoteRule, window: int, hop: int, merge_gap: int, rate: int, per_hour: int) -> None:
        self.rule = rule
        self.window = window
        self.hop = hop
        self.merge_gap = merge_gap  # samples
        self.per_hour = per_hour
        self.hour = SECONDS_PER_HOUR * rate  # samples
        self.kept: deque[int] = deque()  # start samples of the near misses kept in the last hour of audio
        self.covered_until = -1  # the last window start that joins the last near miss
        self.skipped = 0  # near misses over the hourly budget

    def pick(self, decision: Decision, in_event: bool) -> bool:
        """Keep this decided window as a near miss?"""
        if not self.per_hour or decision.positive or in_event or not self.rule.yes_votes(decision.votes):
            return False
        start = decision.index * self.hop
        if start <= self.covered_until:
            return False
        self.covered_until = start + self.window + self.merge_gap  # kept or not, the windows it spans are one
        while self.kept and self.kept[0] <= start - self.hour:
            self.kept.popleft()
        if len(self.kept) >= self.per_hour:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % self.per_hour == 0:
                log.info("near misses over storage.near_misses_per_hour: %d not kept so far", self.skipped)
            return False
        self.kept.append(start)
        return True

    def forget(self, start: int) -> None:
        """The near miss kept at `start` is part of an event after all: its place in the budget is free."""
        if start in self.kept:
            self.kept.remove(start)
