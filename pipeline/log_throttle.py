"""A log line that may recur many times a second for as long as a fault lasts (an overrun each
period, a window skipped each hop): the first is logged, the next at most once a period, with how
many came since. Unattended on an SD card, a line per occurrence fills the journal and buries the
line that matters (log audit)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogThrottle:
    every: float  # s between logged lines at most
    next_at: float = 0.0  # monotonic
    unlogged: int = 0

    def due(self, now: float) -> int | None:
        """Count one occurrence at `now` (monotonic); how many since the last logged line, this one
        included, when it is to be logged now, else None."""
        self.unlogged += 1
        if now < self.next_at:
            return None
        count, self.unlogged, self.next_at = self.unlogged, 0, now + self.every
        return count
