"""The site's own scores, for choosing a site's own threshold (`python cli.py site-thresholds`).

The shipped vote was chosen for 0.5 false alerts per hour on hours of our validation audio, not on
this site's; what a threshold costs in false alerts here can only be told from hours of this site's
sound. Numbers suffice, no audio: the fused score of each window whose every model voted and that
reaches SCORE_FLOOR, and how long the detector listened with every model voting. The log is fed by
the votes themselves, not by the decisions: a k-of-n vote decides a window before its last model
has voted, and the fused score needs them all. Written once a minute (FLUSH_INTERVAL), not once
per window, each row tagged with the model versions that scored it.
"""

from __future__ import annotations

import json
from collections import defaultdict

from inference.eventlog import SECONDS_PER_HOUR
from inference.model import Ensemble
from inference.vote import fused

SCORE_FLOOR = 0.5  # fused probability: a threshold below it would call most of a site's sound a gunshot
FLUSH_INTERVAL = 60.0  # s
STALE_WINDOWS = 64  # a window still missing a vote this many windows later never gets it (a model was down)


def model_set(ensemble: Ensemble) -> str:
    """What the log files scores under: which models at which versions (JSON)."""
    return json.dumps({m.id: m.version for m in ensemble.models}, sort_keys=True)


class ScoreLog:
    def __init__(self, models: int, hop_seconds: float, now: float) -> None:
        self.models = models
        self.hop_seconds = hop_seconds
        self.votes: dict[int, dict[str, float]] = {}  # window index -> the votes in so far
        self.scores: list[tuple[float, float]] = []  # (window start, wall time; fused score), not yet written
        self.listened: dict[float, float] = defaultdict(float)  # hour -> s with every vote, not yet written
        self.last_flush = now

    def add_vote(self, index: int, model_id: str, probability: float) -> dict[str, float] | None:
        """A model's vote; the window's votes once all are in, None before."""
        votes = self.votes.setdefault(index, {})
        votes[model_id] = probability
        if len(votes) < self.models:
            if len(self.votes) > 2 * STALE_WINDOWS:
                self.votes = {i: v for i, v in self.votes.items() if i > index - STALE_WINDOWS}
            return None
        return self.votes.pop(index)

    def add(self, start_time: float, votes: dict[str, float]) -> None:
        """A window with every model's vote and no lost audio, starting at `start_time` (wall time)."""
        self.listened[start_time // SECONDS_PER_HOUR * SECONDS_PER_HOUR] += self.hop_seconds
        score = fused(list(votes.values()))
        if score >= SCORE_FLOOR:
            self.scores.append((start_time, score))

    def take(self, now: float, final: bool = False) -> tuple[list[tuple[float, float]], dict[float, float]] | None:
        """What is to be written, once FLUSH_INTERVAL has passed (or `final`); None otherwise."""
        if not final and now - self.last_flush < FLUSH_INTERVAL:
            return None
        taken = self.scores, dict(self.listened)
        self.scores, self.listened, self.last_flush = [], defaultdict(float), now
        return taken
