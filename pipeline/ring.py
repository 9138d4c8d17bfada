"""A single-writer ring of rows (audio samples or feature frames) in shared memory.

The header holds a monotonically increasing `write_pos` (rows ever written), so readers address
rows by absolute index and keep their own cursors. A reader that falls more than the capacity
behind is lapped: `read` raises `Lapped`, the reader counts the loss and skips ahead; the writer
never waits for anybody. Header, rows and count are plain shared memory, ordered across cores by
memory fences (pipeline.fence): the Pi's ARM cores may otherwise reorder them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from pipeline.fence import fence
from pipeline.shm import attach_segment, create_segment, unlink_segment

_WRITE_POS, _CAPACITY, _LOST, _OVERRUNS, _ANCHOR_POS, _ANCHOR_TIME, _RATE, _WRITING, _LOSSES_RECORDED = range(9)
# The latest stretches of stood-in silence, as [start, end) pairs after the fixed slots: enough to
# cover the windows still undecided during a burst of overruns (one a period, 0.25 s by default).
LOSS_HISTORY = 32
REMEMBERED = LOSS_HISTORY - 1  # stretches readers see (one slot is the next to be filled)
_LOSSES = 9
_HEADER_SLOTS = _LOSSES + 2 * LOSS_HISTORY
_HEADER_BYTES = _HEADER_SLOTS * 8


class Lapped(Exception):
    """The rows asked for were already overwritten."""


class NotWritten(Exception):
    """The rows asked for are not written yet."""


@dataclass(frozen=True)
class RingShape:
    dtype: str
    row: tuple[int, ...] = ()

    @property
    def row_bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * int(np.prod(self.row, dtype=np.int64)))


class Ring:
    """Rows of `shape.dtype` with shape `shape.row`; `rate` is rows per second (for timing)."""

    def __init__(
        self,
        buffer: memoryview | bytearray,
        shape: RingShape,
        segment: shared_memory.SharedMemory | None = None,
        owner: bool = False,
    ) -> None:
        self._segment = segment
        self._owner = owner
        self.shape = shape
        self._header = np.ndarray((_HEADER_SLOTS,), dtype=np.int64, buffer=buffer)
        self._times = np.ndarray((_HEADER_SLOTS,), dtype=np.float64, buffer=buffer)
        self.capacity = int(self._header[_CAPACITY])
        expected = _HEADER_BYTES + self.capacity * shape.row_bytes
        if len(buffer) < expected:
            raise ValueError(f"ring buffer holds {len(buffer)} bytes, needs {expected}")
        self._rows = np.ndarray((self.capacity, *shape.row), dtype=shape.dtype, buffer=buffer, offset=_HEADER_BYTES)

    @staticmethod
    def _init_header(buffer: memoryview | bytearray, capacity: int, rate: float) -> None:
        np.ndarray((_HEADER_SLOTS,), dtype=np.int64, buffer=buffer)[:] = 0
        np.ndarray((_HEADER_SLOTS,), dtype=np.int64, buffer=buffer)[_CAPACITY] = capacity
        np.ndarray((_HEADER_SLOTS,), dtype=np.float64, buffer=buffer)[_RATE] = rate

    @classmethod
    def create(cls, name: str, capacity: int, shape: RingShape, rate: float) -> Ring:
        """A ring in a new shared-memory segment, owned (and unlinked at close) by the caller."""
        segment = create_segment(name, _HEADER_BYTES + capacity * shape.row_bytes)
        cls._init_header(segment.buf, capacity, rate)
        return cls(segment.buf, shape, segment, owner=True)

    @classmethod
    def attach(cls, name: str, shape: RingShape) -> Ring:
        segment = attach_segment(name)
        return cls(segment.buf, shape, segment)

    @classmethod
    def in_memory(cls, capacity: int, shape: RingShape, rate: float) -> Ring:
        """A process-local ring: the offline path runs the live code on it."""
        buffer = bytearray(_HEADER_BYTES + capacity * shape.row_bytes)
        cls._init_header(buffer, capacity, rate)
        return cls(buffer, shape)

    @property
    def name(self) -> str:
        return self._segment.name if self._segment is not None else "<in memory>"

    @property
    def write_pos(self) -> int:
        return int(self._header[_WRITE_POS])

    @property
    def rate(self) -> float:
        return float(self._times[_RATE])

    @property
    def lost(self) -> int:
        """Rows the writer knows it lost (e.g. audio dropped by a device overrun)."""
        return int(self._header[_LOST])

    @property
    def overruns(self) -> int:
        return int(self._header[_OVERRUNS])

    def oldest(self) -> int:
        """Index of the oldest row still held (and not being overwritten by a write in progress)."""
        return max(0, int(self._header[_WRITING]) - self.capacity)

    def write(self, rows: np.ndarray, captured_at: float | None = None) -> int:
        """Append rows (the single writer only); returns the new write_pos.

        `captured_at` is the monotonic time at which the last row was captured (default now).
        """
        return self._append(rows, rows.shape[0], captured_at)

    def _append(self, rows: np.ndarray, n: int, captured_at: float | None) -> int:
        """Advance by `n` rows whose newest are `rows` (n >= len(rows); older ones count as written)."""
        pos = self.write_pos
        if rows.shape[0] > self.capacity:  # only the newest rows fit; positions stay true to time
            rows = rows[-self.capacity :]
        kept = rows.shape[0]
        self._header[_WRITING] = pos + n  # first: a reader that copied rows being replaced sees it
        fence()
        start = (pos + n - kept) % self.capacity
        first = min(kept, self.capacity - start)
        self._rows[start : start + first] = rows[:first]
        self._rows[: kept - first] = rows[first:]
        self._header[_ANCHOR_POS] = pos + n
        self._times[_ANCHOR_TIME] = time.monotonic() if captured_at is None else captured_at
        fence()
        self._header[_WRITE_POS] = pos + n  # last: readers see rows before they see the count
        return pos + n

    def record_loss(self, rows: int) -> None:
        """Count an overrun that lost `rows` rows (the single writer only)."""
        self._header[_LOST] += rows
        self._header[_OVERRUNS] += 1

    def skip(self, rows: int) -> None:
        """Advance write_pos over `rows` lost rows, filled with zeros, to keep positions true to time
        (at most one ring's worth of zeros is made: an hour-long gap costs no more than a second's)."""
        zeros = np.zeros((min(rows, self.capacity), *self.shape.row), dtype=self.shape.dtype)
        recorded = int(self._header[_LOSSES_RECORDED])
        slot = _LOSSES + 2 * (recorded % LOSS_HISTORY)
        self._header[slot : slot + 2] = self.write_pos, self.write_pos + rows
        fence()
        self._header[_LOSSES_RECORDED] = recorded + 1  # before the rows: who sees them sees the stretch
        self._append(zeros, rows, None)

    @property
    def losses(self) -> list[tuple[int, int]]:
        """Rows [start, end) of the latest (up to REMEMBERED) stretches of stood-in silence, oldest first."""
        return self._losses()[1]

    def _losses(self) -> tuple[int, list[tuple[int, int]]]:
        """(stretches ever recorded, the latest of them), read again if the writer recorded one
        meanwhile. The slot the next stretch will fill is never read: the writer fills it before it
        counts the stretch, so LOSS_HISTORY - 1 are remembered."""
        while True:
            recorded = int(self._header[_LOSSES_RECORDED])
            fence()
            slots = [_LOSSES + 2 * (i % LOSS_HISTORY) for i in range(max(0, recorded - REMEMBERED), recorded)]
            losses = [(int(self._header[slot]), int(self._header[slot + 1])) for slot in slots]
            fence()
            if int(self._header[_LOSSES_RECORDED]) == recorded:
                return recorded, losses

    def holds_loss(self, start: int, stop: int) -> bool:
        """Whether rows [start, stop) hold stood-in silence; also when more stretches came since
        `start` than the header remembers, so that an older one cannot be ruled out."""
        recorded, losses = self._losses()
        forgotten = recorded > REMEMBERED and losses[0][0] > start
        return forgotten or any(first < stop and start < end for first, end in losses)

    def lost_rows(self, start: int, stop: int) -> int:
        """How many of rows [start, stop) are stood-in silence, of the stretches the header remembers."""
        return sum(max(0, min(stop, end) - max(start, first)) for first, end in self.losses)

    def read(self, start: int, count: int) -> np.ndarray:
        """A copy of rows [start, start + count); raises NotWritten or Lapped."""
        if start + count > self.write_pos:
            raise NotWritten(f"rows up to {start + count} asked, {self.write_pos} written")
        fence()  # the rows are read after the count that says they are written
        self._check_held(start, "")
        first = start % self.capacity
        if first + count <= self.capacity:
            out = self._rows[first : first + count].copy()
        else:
            out = np.concatenate((self._rows[first:], self._rows[: first + count - self.capacity]))
        fence()  # the copy is made before the check that the writer was not replacing it
        self._check_held(start, " while reading")
        return out

    def _check_held(self, start: int, when: str) -> None:
        """Lapped if row `start` is overwritten or being overwritten (the writer announces a write
        in _WRITING before it copies rows, and publishes write_pos after)."""
        if start < int(self._header[_WRITING]) - self.capacity:
            raise Lapped(f"row {start} overwritten{when} (oldest is {self.oldest()})")

    def time_of(self, row: int) -> float:
        """Monotonic time at which `row` was captured, extrapolated from the latest write."""
        anchor_pos = int(self._header[_ANCHOR_POS])
        return float(self._times[_ANCHOR_TIME]) - (anchor_pos - row) / self.rate

    def close(self) -> None:
        """Detach; the creator (`create`) also unlinks the segment."""
        del self._rows, self._header, self._times
        if self._segment is not None:
            self._segment.close()
            if self._owner:
                unlink_segment(self._segment)
