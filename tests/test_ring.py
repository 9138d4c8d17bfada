import contextlib
import multiprocessing
import time
import tracemalloc
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from pipeline.ring import (
    _LOSSES,
    _LOSSES_RECORDED,
    _WRITE_POS,
    _WRITING,
    REMEMBERED,
    Lapped,
    NotWritten,
    Ring,
    RingShape,
)
from tests.conftest import own_run_id

AUDIO = RingShape("int16")


@pytest.fixture
def ring():
    r = Ring.create(f"gs-{own_run_id()}-ring", 100, AUDIO, 16000.0)
    yield r
    r.close()


def test_rows_wrap_around_and_read_back_by_absolute_index(ring):
    ring.write(np.arange(70, dtype=np.int16))
    ring.write(np.arange(70, 150, dtype=np.int16))
    assert ring.write_pos == 150
    assert ring.oldest() == 50
    np.testing.assert_array_equal(ring.read(60, 80), np.arange(60, 140, dtype=np.int16))


def test_a_lapped_reader_is_told_and_an_early_one_too(ring):
    ring.write(np.zeros(80, dtype=np.int16))
    ring.write(np.zeros(70, dtype=np.int16))
    with pytest.raises(Lapped):
        ring.read(10, 5)
    with pytest.raises(NotWritten):
        ring.read(140, 20)


def test_a_write_bigger_than_the_ring_keeps_the_newest_rows_at_their_true_positions(ring):
    ring.write(np.arange(250, dtype=np.int16))
    assert ring.write_pos == 250
    np.testing.assert_array_equal(ring.read(150, 100), np.arange(150, 250, dtype=np.int16))


def test_loss_keeps_positions_true_to_time(ring):
    ring.write(np.ones(10, dtype=np.int16))
    ring.record_loss(20)
    ring.skip(20)
    assert (ring.write_pos, ring.lost, ring.overruns) == (30, 20, 1)
    assert not ring.read(10, 20).any()


def test_a_gap_longer_than_the_ring_makes_only_one_ring_of_zeros(ring):
    ring.write(np.ones(100, dtype=np.int16))
    tracemalloc.start()
    ring.skip(1_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ring.write_pos == 1_000_100 and not ring.read(ring.oldest(), 100).any()
    assert peak < 10 * ring.capacity * AUDIO.row_bytes  # not the 2 MB a zero per lost row would take


def _child_writes(name: str) -> None:
    child = Ring.attach(name, AUDIO)
    child.write(np.full(40, 7, dtype=np.int16))
    child.close()


def test_another_process_writes_what_this_one_reads(ring):
    process = multiprocessing.get_context("spawn").Process(target=_child_writes, args=(ring.name,))
    process.start()
    process.join(30)
    assert process.exitcode == 0
    np.testing.assert_array_equal(ring.read(0, 40), np.full(40, 7, dtype=np.int16))


def test_time_of_a_row_is_extrapolated_from_the_last_write(ring):
    ring.write(np.zeros(16, dtype=np.int16), captured_at=100.0)
    assert ring.time_of(16) == pytest.approx(100.0)
    assert ring.time_of(0) == pytest.approx(100.0 - 16 / 16000)


def test_every_recent_stretch_of_lost_audio_is_remembered(ring):
    """A window decided after a second loss may still hold the first one's silence."""
    ring.write(np.ones(10, dtype=np.int16))
    ring.skip(5)  # rows 10-15
    ring.write(np.ones(10, dtype=np.int16))
    ring.skip(5)  # rows 25-30
    assert ring.losses == [(10, 15), (25, 30)]
    assert ring.holds_loss(8, 12) and ring.holds_loss(28, 40)
    assert not ring.holds_loss(15, 25) and not ring.holds_loss(0, 10)


def test_a_window_older_than_the_remembered_losses_counts_as_holding_one(ring):
    for _ in range(REMEMBERED + 2):  # stretch k covers rows 4k+3 to 4k+4
        ring.write(np.ones(3, dtype=np.int16))
        ring.skip(1)
    assert len(ring.losses) == REMEMBERED and ring.losses[0] == (11, 12)
    assert ring.holds_loss(0, 2)  # the first stretches (rows 3-4, 7-8) are forgotten: not ruled out
    assert not ring.holds_loss(12, 15)


def test_the_first_stretch_forgotten_is_not_ruled_out(ring):
    for _ in range(REMEMBERED + 1):  # stretch k covers rows 4k+3 to 4k+4
        ring.write(np.ones(3, dtype=np.int16))
        ring.skip(1)
    assert ring.losses[0] == (7, 8)
    assert ring.holds_loss(2, 5)  # the first stretch, rows 3-4, is no longer in the header


RACE_ROWS, RACE_CHUNK, RACE_SECONDS = 16000, 4000, 2.0


def _write_row_numbers(name: str, stop) -> None:
    ring = Ring.attach(name, RingShape("int64"))
    pos = 0
    while not stop.is_set():
        ring.write(np.arange(pos, pos + RACE_CHUNK, dtype=np.int64))
        pos += RACE_CHUNK
    ring.close()


@contextlib.contextmanager
def racing_writer(what: str, dtype: str, target: Callable, ready: Callable[[Ring], bool]) -> Iterator[Ring]:
    """A ring with another process writing it (`target(name, stop)`) for as long as the block runs,
    entered once `ready(ring)`."""
    ring = Ring.create(f"gs-{own_run_id()}-{what}", RACE_ROWS, RingShape(dtype), 16000.0)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    writer = context.Process(target=target, args=(ring.name, stop))
    writer.start()
    try:
        while not ready(ring):
            assert writer.is_alive(), "the writer process died"
            time.sleep(0.01)
        yield ring
    finally:
        stop.set()
        writer.join(30)
        ring.close()


def test_a_read_at_the_oldest_edge_while_the_writer_runs_is_whole_or_lapped():
    """Rows copied while the writer replaces them must raise Lapped, never come back mixed."""
    reads = torn = 0
    with racing_writer("race", "int64", _write_row_numbers, lambda r: r.write_pos > r.capacity) as ring:  # wraps
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            first = ring.oldest()
            try:
                rows = ring.read(first, RACE_CHUNK // 2)
            except (Lapped, NotWritten):
                continue
            reads += 1
            torn += not np.array_equal(rows, np.arange(first, first + RACE_CHUNK // 2))
    assert reads > 0 and torn == 0, f"{torn} of {reads} reads mixed old and new rows"


LOSS_EVERY, LOSS_CHUNK = 2, 500  # the racing writer stands silence in for every other chunk of rows


def _write_ones_with_losses(name: str, stop) -> None:
    ring = Ring.attach(name, RingShape("int16"))
    chunk = 0
    while not stop.is_set():
        if chunk % LOSS_EVERY:
            ring.write(np.ones(LOSS_CHUNK, dtype=np.int16))
        else:
            ring.skip(LOSS_CHUNK)
        chunk += 1
    ring.close()


def test_a_reader_never_sees_stood_in_silence_before_its_loss_is_recorded():
    """The aggregator must not take silence standing in for lost audio as a quiet window: whoever
    can read the zeros must find the stretch in the loss record."""
    reads = unrecorded = 0
    with racing_writer("lossrace", "int16", _write_ones_with_losses, lambda r: r.write_pos > 0) as ring:
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            end = ring.write_pos
            start = max(end - LOSS_CHUNK, ring.oldest())
            recorded = ring.holds_loss(start, end)  # at once: what the rows up to `end` may hold is known
            try:
                rows = ring.read(start, end - start)
            except (Lapped, NotWritten):
                continue
            reads += 1
            unrecorded += bool(np.any(rows == 0)) and not recorded
    assert reads > 0 and unrecorded == 0, f"{unrecorded} of {reads} reads held silence no loss record covers"


HEADER, ROWS, TIMES = "header", "rows", "times"
_SLOT_NAMES = {_WRITE_POS: "write_pos", _WRITING: "writing", _LOSSES_RECORDED: "recorded"}


class _Traced:
    """One of a ring's arrays, logging each access as (array, "load" or "store", what)."""

    def __init__(self, array: np.ndarray, name: str, log: list) -> None:
        self.array, self.name, self.log = array, name, log

    def _what(self, key) -> str:
        if self.name != HEADER:
            return ""
        first = key.start if isinstance(key, slice) else key
        return _SLOT_NAMES.get(first, "stretch" if first >= _LOSSES else "other")

    def __getitem__(self, key):
        self.log.append((self.name, "load", self._what(key)))
        return self.array[key]

    def __setitem__(self, key, value) -> None:
        self.log.append((self.name, "store", self._what(key)))
        self.array[key] = value


def _trace(ring: Ring, monkeypatch) -> list:
    """The log that the ring's loads, stores and memory fences are written to from now on."""
    log: list = []
    for name in (HEADER, TIMES, ROWS):
        monkeypatch.setattr(ring, f"_{name}", _Traced(getattr(ring, f"_{name}"), name, log))
    monkeypatch.setattr("pipeline.ring.fence", lambda: log.append("fence"))
    return log


def _between_fences(log: list) -> list[list]:
    """The accesses cut at the fences: on the Pi's ARM cores, other cores may see the accesses of
    one stretch in any order, never those of two stretches out of order."""
    stretches: list[list] = [[]]
    for access in log:
        if access == "fence":
            stretches.append([])
        else:
            stretches[-1].append(access)
    return stretches


def test_the_writer_fences_its_announcement_from_its_rows_and_its_rows_from_their_count(ring, monkeypatch):
    log = _trace(ring, monkeypatch)
    ring.write(np.arange(3, dtype=np.int16))
    assert _between_fences(log) == [
        [(HEADER, "load", "write_pos"), (HEADER, "store", "writing")],
        [(ROWS, "store", ""), (ROWS, "store", ""), (HEADER, "store", "other"), (TIMES, "store", "")],
        [(HEADER, "store", "write_pos")],
    ]


def test_a_loss_stretch_is_stored_before_it_is_counted_and_counted_before_its_rows(ring, monkeypatch):
    log = _trace(ring, monkeypatch)
    ring.skip(5)
    stretches = _between_fences(log)
    assert (HEADER, "store", "stretch") in stretches[0]
    assert (HEADER, "store", "recorded") in stretches[1]
    assert [access for stretch in stretches[2:] for access in stretch if access[0] == ROWS] == [(ROWS, "store", "")] * 2


def test_a_reader_loads_the_count_then_the_rows_then_the_announcement(ring, monkeypatch):
    ring.write(np.arange(3, dtype=np.int16))
    log = _trace(ring, monkeypatch)
    ring.read(0, 3)
    assert _between_fences(log) == [
        [(HEADER, "load", "write_pos")],
        [(HEADER, "load", "writing"), (ROWS, "load", "")],
        [(HEADER, "load", "writing")],
    ]


def test_the_loss_record_is_read_between_two_loads_of_its_count(ring, monkeypatch):
    ring.skip(5)
    log = _trace(ring, monkeypatch)
    ring.holds_loss(0, 3)
    assert _between_fences(log) == [
        [(HEADER, "load", "recorded")],
        [(HEADER, "load", "stretch"), (HEADER, "load", "stretch")],
        [(HEADER, "load", "recorded")],
    ]


def test_a_missing_libatomic_is_named_with_its_package():
    from pipeline.fence import load_fence

    with pytest.raises(ImportError, match="apt-get install libatomic1"):
        load_fence("libatomic-not-here.so.9")
