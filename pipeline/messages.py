"""Small messages carried by channels between processes (never audio: that stays in the rings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowReady:
    """Frontend -> workers: window `index` (audio rows [start, start + length)) can be scored."""

    index: int
    start: int


@dataclass(frozen=True)
class Vote:
    """Worker -> aggregator: one model's gunshot probability for one window."""

    index: int
    model_id: str
    probability: float
    scored_at: float  # monotonic time


@dataclass(frozen=True)
class OutboxChanged:
    """Aggregator -> SMS process: new texts are waiting in the outbox (a wake-up, no payload)."""
