"""Per-process health and counters in one shared-memory table (one row per process, one writer each).

A process beats its heartbeat on every loop turn and when it starts an item (`busy`), so a stale
heartbeat tells the supervisor that it hangs, in its loop or on one item; `busy_since` shows in the
stats what it is at.
"""

from __future__ import annotations

import collections
import threading
import time
from multiprocessing import shared_memory

import numpy as np

from pipeline.shm import attach_segment, create_segment, unlink_segment

FIELDS = (
    "pid",
    "started",  # monotonic time the process (re)started
    "heartbeat",  # monotonic time of the last loop turn
    "busy_since",  # monotonic start of the item in hand, 0 when idle
    "processed",  # items done (windows, votes, texts, periods)
    "dropped",  # items lost because this process or its consumer was behind
    "errors",  # failures it survived (device errors, send failures, bad reads)
    "partial_votes",  # aggregator: windows decided without every model's vote
    "busy_ms_ema",  # moving average of the time per item
    "busy_ms_max",
    "restarts",  # written by the supervisor
    "cursor",  # the front end's next window (where to resume after a restart); the aggregator's first undecided one
    "p50_ms",  # latency of the process's output: aggregator, window end -> decision;
    "p99_ms",  # SMS, event start in the audio -> text accepted by the modem
    "queue_hwm",  # most bytes seen waiting in the process's inbox channel
    "last_sound",  # capture: monotonic time of the last period louder than health.silence_dbfs
    "unheard",  # front end: samples captured but never scored (it fell more than a ring behind)
    # aggregator: its open event, whose alert went (0: none), for a restart to take up (inference/aggregator.py
    # OPEN_EVENT); kept here because this table lives as long as the audio ring whose rows they count
    "event",  # its record id
    "event_start",  # its first audio row
    "event_end",  # one past its last positive window's last row, so far
    "event_update",  # the audio row its next "still going" text waits for
    "event_heard_at",  # the wall time its texts say the gunfire was first heard
    "event_clock",  # wall minus monotonic time at its alert: the clock its texts read
)
_INDEX = {name: i for i, name in enumerate(FIELDS)}
EMA_WEIGHT = 0.05
LATENCY_KEEP = 1024
BLOCKED_BEAT_EVERY = 1.0  # s between a BlockedCall's beats


class BlockedCall:
    """`with BlockedCall(slot, limit) as call:` beats `slot`'s heartbeat from a thread while the
    body blocks in a C library call that releases the GIL (a modem waiting for its answer), for at
    most `limit` s from the start or from the last `call.renew()`: a call blocked longer than it
    ever should stops the beats, so the supervisor still finds a truly hung process."""

    def __init__(self, slot: StatsSlot | None, limit: float) -> None:
        self.slot, self.limit = slot, limit
        self.deadline = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="blocked-call-beat", daemon=True)

    def __enter__(self) -> BlockedCall:
        self.renew()
        if self.slot is not None:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def renew(self) -> None:
        """Progress (a part of a text accepted): beat now and allow `limit` s again."""
        self.deadline = time.monotonic() + self.limit
        if self.slot is not None:
            self.slot.beat()

    def _beat(self) -> None:
        while not self._done.wait(BLOCKED_BEAT_EVERY):
            if time.monotonic() < self.deadline:
                self.slot.beat()


class StatsSlot:
    """One process's row: its own writer API."""

    def __init__(self, row: np.ndarray, table: StatsTable | None = None) -> None:
        self._row = row
        self._table = table  # keeps the shared memory mapped while the slot is in use

    def started(self, pid: int) -> None:
        self._row[_INDEX["pid"]] = pid
        self._row[_INDEX["started"]] = self._row[_INDEX["heartbeat"]] = time.monotonic()
        self._row[_INDEX["busy_since"]] = 0.0

    def beat(self) -> None:
        self._row[_INDEX["heartbeat"]] = time.monotonic()

    def busy(self) -> float:
        now = time.monotonic()
        self._row[_INDEX["busy_since"]] = now
        self._row[_INDEX["heartbeat"]] = now
        return now

    def done(self, since: float, items: int = 1) -> None:
        now = time.monotonic()
        ms = (now - since) * 1000.0
        ema = self._row[_INDEX["busy_ms_ema"]]
        self._row[_INDEX["busy_ms_ema"]] = ms if ema == 0 else ema + EMA_WEIGHT * (ms - ema)
        self._row[_INDEX["busy_ms_max"]] = max(self._row[_INDEX["busy_ms_max"]], ms)
        self._row[_INDEX["processed"]] += items
        self._row[_INDEX["busy_since"]] = 0.0
        self._row[_INDEX["heartbeat"]] = now

    def add(self, field: str, n: float = 1) -> None:
        self._row[_INDEX[field]] += n

    def set(self, field: str, value: float) -> None:
        self._row[_INDEX[field]] = value

    def get(self, field: str) -> float:
        return float(self._row[_INDEX[field]])

    def as_dict(self) -> dict[str, float]:
        return {name: float(self._row[i]) for i, name in enumerate(FIELDS)}


class LatencyTracker:
    """Recent latencies of one process, published to its row as p50/p99."""

    def __init__(self, slot: StatsSlot, keep: int = LATENCY_KEEP) -> None:
        self.slot = slot
        self.recent: collections.deque[float] = collections.deque(maxlen=keep)

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        p50, p99 = np.percentile(self.recent, [50, 99])
        self.slot.set("p50_ms", p50)
        self.slot.set("p99_ms", p99)


class StatsTable:
    """The table of all processes' rows, by process name."""

    def __init__(self, segment: shared_memory.SharedMemory, names: tuple[str, ...], owner: bool) -> None:
        self._segment = segment
        self._owner = owner
        self.names = names
        self._rows = np.ndarray((len(names), len(FIELDS)), dtype=np.float64, buffer=segment.buf)

    @classmethod
    def create(cls, segment_name: str, names: tuple[str, ...]) -> StatsTable:
        segment = create_segment(segment_name, max(1, len(names) * len(FIELDS) * 8))
        table = cls(segment, names, owner=True)
        table._rows[:] = 0.0
        return table

    @classmethod
    def attach(cls, segment_name: str, names: tuple[str, ...]) -> StatsTable:
        return cls(attach_segment(segment_name), names, owner=False)

    @property
    def segment_name(self) -> str:
        return self._segment.name

    def slot(self, name: str) -> StatsSlot:
        return StatsSlot(self._rows[self.names.index(name)], self)

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {name: self.slot(name).as_dict() for name in self.names}

    def close(self) -> None:
        del self._rows
        self._segment.close()
        if self._owner:
            unlink_segment(self._segment)
