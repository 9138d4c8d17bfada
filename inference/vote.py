"""k-of-n voting per window, which never waits forever for a dead or late model.

Rule (documented in README): a window is decided
  - as soon as every present model has voted, or as soon as k positive votes are in (early yes);
  - otherwise `timeout` seconds after its first vote, on the m votes it has: it needs
    ceil(k * m / n) positives (2 of 3 becomes 2 of 2 and 1 of 1) and is marked degraded.
A model that missed `ABSENT_AFTER` windows in a row is absent: windows stop waiting for it
(still degraded) until it votes again. Windows are decided in index order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ABSENT_AFTER = 2


@dataclass(frozen=True)
class Decision:
    index: int
    positive: bool
    confidence: float  # mean probability of the models that voted
    votes: dict[str, float]
    degraded: bool  # decided without every model's vote
    first_vote_at: float


@dataclass
class _Pending:
    first_vote_at: float
    votes: dict[str, float] = field(default_factory=dict)


class VoteBox:
    def __init__(self, thresholds: dict[str, float], votes_required: int, timeout: float) -> None:
        if not 1 <= votes_required <= len(thresholds):
            raise ValueError(f"votes_required {votes_required} must be 1 to {len(thresholds)} (the models)")
        self.thresholds = thresholds
        self.required = votes_required
        self.timeout = timeout
        self._pending: dict[int, _Pending] = {}
        self._missed = dict.fromkeys(thresholds, 0)
        self.next_index: int | None = None
        self.degraded_windows = 0

    def add(self, index: int, model_id: str, probability: float, now: float) -> None:
        if self.next_index is not None and index < self.next_index:
            return  # late vote for a window already decided
        pending = self._pending.setdefault(index, _Pending(first_vote_at=now))
        pending.votes[model_id] = probability
        self._missed[model_id] = 0

    def decide(self, now: float) -> list[Decision]:
        """Decisions that are due, in window order."""
        decisions = []
        for index in sorted(self._pending):
            decision = self._try_decide(index, self._pending[index], now)
            if decision is None:
                break
            del self._pending[index]
            self.next_index = index + 1
            decisions.append(decision)
        return decisions

    def flush(self) -> list[Decision]:
        """Decide everything pending now (end of a file or shutdown)."""
        return self.decide(now=math.inf)

    def next_deadline(self) -> float | None:
        """When the oldest undecided window times out (None when nothing waits)."""
        if not self._pending:
            return None
        return min(p.first_vote_at for p in self._pending.values()) + self.timeout

    def present(self) -> list[str]:
        return [m for m, missed in self._missed.items() if missed < ABSENT_AFTER]

    def _try_decide(self, index: int, pending: _Pending, now: float) -> Decision | None:
        votes = pending.votes
        positives = sum(p >= self.thresholds[m] for m, p in votes.items())
        waiting_for = [m for m in self.present() if m not in votes]
        if positives >= self.required:
            positive, degraded = True, False
        elif waiting_for and now - pending.first_vote_at < self.timeout:
            return None
        else:
            complete = len(votes) == len(self.thresholds)
            scaled = math.ceil(self.required * len(votes) / len(self.thresholds))
            positive = positives >= (self.required if complete else max(1, scaled))
            degraded = not complete
            for model_id in self.thresholds.keys() - votes.keys():
                self._missed[model_id] += 1
        self.degraded_windows += degraded
        return Decision(
            index=index,
            positive=positive,
            confidence=sum(votes.values()) / len(votes),
            votes=dict(votes),
            degraded=degraded,
            first_vote_at=pending.first_vote_at,
        )
