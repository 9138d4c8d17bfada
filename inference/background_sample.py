"""Background samples: a few windows a day taken at random times, whatever they hold.

Near misses show the sounds the models disagree on, not what the site ordinarily sounds like. A
model retrained on a site's near misses alone can learn that this site's microphone means
gunshot (models/README.md, "Labelling a site's near misses"): labelled "other" (or "gunshot", if
one slipped by), samples of the site's ordinary sound teach it otherwise.

The audio is cut into stretches of a day / `per_day` and one window is taken at a uniformly
random time in each: spread over day and night, and not predictable. A window that is already
kept (in an event or a near miss) or holds lost audio is not a sample; the next window that is not
takes its place.
"""

from __future__ import annotations

import numpy as np

from inference.eventlog import SECONDS_PER_DAY
from inference.vote import Decision


class BackgroundSampler:
    def __init__(self, hop: int, rate: int, per_day: int, rng: np.random.Generator | None = None) -> None:
        self.hop = hop
        self.stretch = int(SECONDS_PER_DAY * rate) // per_day if per_day else 0  # samples; 0: off
        self.rng = rng or np.random.default_rng()
        self.stretch_start: int | None = None  # set by the first window: a restarted aggregator starts anew
        self.due = 0  # the first window starting at or after this is the next sample

    def _begin_stretch(self, at: int) -> None:
        self.stretch_start = at
        self.due = at + int(self.rng.integers(self.stretch))

    def pick(self, decision: Decision, kept_or_lost: bool) -> bool:
        """Take this decided window as a background sample?"""
        if not self.stretch:
            return False
        start = decision.index * self.hop
        if self.stretch_start is None:
            self._begin_stretch(start)
        if start < self.due or kept_or_lost:
            return False
        self._begin_stretch(max(self.stretch_start + self.stretch, start))  # one per stretch
        return True
