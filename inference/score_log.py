"""The site's own scores, for choosing a site's own threshold (`python cli.py site-thresholds`).

The shipped vote was chosen for 0.5 false alerts per hour on hours of our validation audio, not on
this site's. A threshold set on a held-out site's own clips heard two to five times more of its
later shots (models/README.md, "Labelling a site's near misses"), but what a lower threshold costs
in false alerts here can only be told from hours of this site's sound. Numbers suffice, no audio:
the fused score of each window that reaches SCORE_FLOOR, and how long the detector listened with
every model voting. They are written once a minute (FLUSH_INTERVAL), not once per window.
"""

from __future__ import annotations

from inference.vote import fused

SCORE_FLOOR = 0.5  # fused probability: a threshold below it would call most of a site's sound a gunshot
FLUSH_INTERVAL = 60.0  # s


class ScoreLog:
    def __init__(self, hop_seconds: float, now: float) -> None:
        self.hop_seconds = hop_seconds
        self.scores: list[tuple[float, float]] = []  # (window start, wall time; fused score), not yet written
        self.listened = 0.0  # s of windows with every model's vote, not yet written
        self.last_flush = now

    def add(self, start_time: float, votes: dict[str, float], complete: bool) -> None:
        """A decided window; `complete`: every model voted and no audio was lost (only such
        windows have a fused score that the fused vote would see)."""
        if not complete:
            return
        self.listened += self.hop_seconds
        score = fused(list(votes.values()))
        if score >= SCORE_FLOOR:
            self.scores.append((start_time, score))

    def take(self, now: float, final: bool = False) -> tuple[list[tuple[float, float]], float] | None:
        """What is to be written, once FLUSH_INTERVAL has passed (or `final`); None otherwise."""
        if not final and now - self.last_flush < FLUSH_INTERVAL:
            return None
        taken = self.scores, self.listened
        self.scores, self.listened, self.last_flush = [], 0.0, now
        return taken
