"""Turning the models' votes on a window into a decision, without ever waiting forever for a dead
or late model.

Two rules (VoteRule, chosen on validation and stored in models/ensemble.json):
  - k of n: each model's probability against its own threshold, k "yes" needed;
  - fused: the mean log-odds of the models against one threshold (a sure model can carry an unsure
    one). It waits for every present model: a positive window is decided when the slowest has voted.
A window is decided as soon as every present model has voted (also k of n, when k "yes" are in
already: its recorded confidence is then the same whichever model was fastest, and the same as
`analyze` gives); otherwise `timeout` seconds after its first vote, on the m votes it has, and it is marked
degraded: k of n needs ceil(k * m / n) (2 of 3 becomes 2 of 2 and 1 of 1), and so does the fused
vote, with the models' own thresholds (its threshold was chosen for the mean of all n models, and
is far too lenient for one model alone). A model that missed `ABSENT_AFTER` windows in a row is
absent: windows stop waiting for it (still degraded) until it votes again. Windows are decided in
index order.

A vote that comes after its window was decided without it (a stalled or restarted worker catching
up) still counts: a window decided "no" that its late votes make "yes" is decided again, as a late
positive Decision (out of index order). A shot heard while a model was late is then texted late,
never lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ABSENT_AFTER = 2
# decided windows whose votes are kept for late votes: 32 s at the 0.5 s hop, longer than a hung
# worker is given (pipeline/supervisor.py HEARTBEAT_TIMEOUT) plus its restart
DECIDED_KEPT = 64
LOGIT_EPS = 1e-7  # log-odds are clipped to +-16: a float32 sigmoid output near 1 is this close at most


FLOAT_SLACK = 1e-9  # 0.29 * 100 is 28.999999999999996 in floating point: cut to 0.29, not 0.28
FINE_FROM = 0.99  # probabilities from here on are shown to 4 decimals: the thresholds sit at 0.995-0.9998


def probability_text(p: float) -> str:
    """A model's probability for people to read: 2 decimals, 4 from FINE_FROM, cut rather than
    rounded, so that a vote just under a 0.9998 threshold never reads "1.00" beside one that passed."""
    decimals = 4 if p >= FINE_FROM else 2
    scale = 10**decimals
    return f"{math.floor(p * scale + FLOAT_SLACK) / scale:.{decimals}f}"


def votes_text(votes: dict[str, float]) -> str:
    """E.g. "wave 0.12, mel_fine 0.9997, mel_coarse 0.9991"."""
    return ", ".join(f"{m} {probability_text(p)}" for m, p in votes.items())


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def fused_scores(probs: np.ndarray) -> np.ndarray:
    """Per window (the last axis: one probability per model), the fused probability: the sigmoid
    of its models' mean log-odds."""
    return sigmoid(logit(probs).mean(axis=-1))


def fused(probabilities: list[float]) -> float:
    """The fused probability of one window."""
    return float(fused_scores(np.asarray(probabilities)))


@dataclass(frozen=True)
class VoteRule:
    thresholds: dict[str, float]  # each model's own threshold (k of n, each model alone, a degraded vote)
    votes_required: int  # k of n
    fused_threshold: float | None = None  # set: the fused vote decides while every model votes

    def __post_init__(self) -> None:
        if not 1 <= self.votes_required <= len(self.thresholds):
            raise ValueError(f"votes_required {self.votes_required} must be 1 to {len(self.thresholds)} (the models)")

    def positive(self, probs: np.ndarray, models: list[str]) -> np.ndarray:
        """Per window (row of `probs`, one column per model in `models`, which may be a subset of
        all models when some did not vote): is it a shot?"""
        probs = np.atleast_2d(probs)
        if self.fused_threshold is not None and len(models) == len(self.thresholds):
            return logit(probs).mean(axis=1) >= logit(self.fused_threshold)
        yes = (probs >= np.array([self.thresholds[m] for m in models])).sum(axis=1)
        return yes >= max(1, math.ceil(self.votes_required * len(models) / len(self.thresholds)))

    def confidence(self, votes: dict[str, float]) -> float:
        """The fused probability (fused vote) or the mean probability (k of n) of the votes."""
        if self.fused_threshold is not None:
            return fused(list(votes.values()))
        return sum(votes.values()) / len(votes)

    def yes_votes(self, votes: dict[str, float]) -> list[str]:
        """The models that call the window a gunshot at their own threshold."""
        return [m for m, p in votes.items() if p >= self.thresholds[m]]

    def describe(self) -> str:
        if self.fused_threshold is not None:
            return f"mean log-odds of {len(self.thresholds)} models >= logit({self.fused_threshold:g})"
        return f"{self.votes_required} of {len(self.thresholds)} models, each at its own threshold"


@dataclass(frozen=True)
class Decision:
    index: int
    positive: bool
    confidence: float  # VoteRule.confidence of the votes
    votes: dict[str, float]
    degraded: bool  # decided without every model's vote
    first_vote_at: float
    late: bool = False  # decided "no" at first; votes that came after made it "yes"


@dataclass
class _Pending:
    first_vote_at: float
    votes: dict[str, float] = field(default_factory=dict)
    positive: bool = False  # once decided


class VoteBox:
    def __init__(self, rule: VoteRule, timeout: float) -> None:
        self.rule = rule
        self.timeout = timeout
        self._pending: dict[int, _Pending] = {}
        self._missed = dict.fromkeys(rule.thresholds, 0)
        self._decided: dict[int, _Pending] = {}  # the latest decided windows, for late votes
        self._late: list[Decision] = []  # decided again by late votes, not yet returned
        self.next_index: int | None = None

    def add(self, index: int, model_id: str, probability: float, now: float) -> None:
        if self.next_index is not None and index < self.next_index:
            self._add_late(index, model_id, probability, now)
            return
        pending = self._pending.setdefault(index, _Pending(first_vote_at=now))
        pending.votes[model_id] = probability
        self._missed[model_id] = 0

    def _add_late(self, index: int, model_id: str, probability: float, now: float) -> None:
        """A vote for a window decided without it. Its model is back (waited for again) if the
        window would have waited for it, else it stays absent (a model always later than the
        timeout). A "no" that the late votes make a "yes" is decided again."""
        decided = self._decided.get(index)
        if decided is None or model_id in decided.votes:
            return
        if now - decided.first_vote_at < self.timeout:
            self._missed[model_id] = 0
        decided.votes[model_id] = probability
        if not decided.positive and self._positive(decided.votes):
            decided.positive = True
            self._late.append(self._decision(index, decided, positive=True, late=True))

    def decide(self, now: float) -> list[Decision]:
        """Decisions that are due: the late ones first, then in window order."""
        decisions, self._late = self._late, []
        for index in sorted(self._pending):
            decision = self._try_decide(index, self._pending[index], now)
            if decision is None:
                break
            decided = self._pending.pop(index)
            decided.positive = decision.positive
            self._decided[index] = decided
            if len(self._decided) > DECIDED_KEPT:
                del self._decided[next(iter(self._decided))]  # the oldest: indices come in order
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
        waiting_for = [m for m in self.present() if m not in votes]
        if waiting_for and now - pending.first_vote_at < self.timeout:
            return None
        for model_id in self.rule.thresholds.keys() - votes.keys():
            self._missed[model_id] += 1
        return self._decision(index, pending, positive=self._positive(votes))

    def _positive(self, votes: dict[str, float]) -> bool:
        return bool(self.rule.positive(np.array(list(votes.values())), list(votes))[0])

    def _decision(self, index: int, pending: _Pending, positive: bool, late: bool = False) -> Decision:
        """Degraded: decided without a model's vote (one absent, or later than the timeout)."""
        return Decision(
            index=index,
            positive=positive,
            confidence=self.rule.confidence(pending.votes),
            votes=dict(pending.votes),
            degraded=len(pending.votes) < len(self.rule.thresholds),
            first_vote_at=pending.first_vote_at,
            late=late,
        )
