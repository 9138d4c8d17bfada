"""What the processes of one run share: segment names and channels, made by the supervisor.

A Layout is the single explicit input (besides the config and the stop event) that every
process function takes, so any process can be started alone in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.channel import Channel
from pipeline.ring import RingShape

AUDIO_SHAPE = RingShape("int16")
AUDIO_RING = "audio"
STATS = "stats"


def feature_shape(n_mels: int) -> RingShape:
    return RingShape("float32", (n_mels,))


@dataclass(frozen=True)
class Layout:
    run_id: str
    audio_ring: str  # shm name of the int16 audio ring
    stats: str  # shm name of the StatsTable
    process_names: tuple[str, ...]
    feature_rings: dict[str, str] = field(default_factory=dict)  # LogMelSpec.key -> shm name
    windows: dict[str, Channel] = field(default_factory=dict)  # model id -> frontend->worker channel
    votes: Channel | None = None  # workers -> aggregator
    outbox: Channel | None = None  # aggregator -> SMS process wake-ups
    supervisor_pid: int | None = None  # processes exit when it is gone (None: not watched, in tests)

    def segment_names(self) -> list[str]:
        """Every shared-memory segment of the run, as named in /dev/shm."""
        return [name.lstrip("/") for name in (self.audio_ring, self.stats, *self.feature_rings.values())]
