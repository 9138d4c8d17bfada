import multiprocessing
import os
import pickle
import signal
import time

import pytest

from pipeline.channel import _HEADER, PIPE_BUF, Channel
from pipeline.messages import Vote, WindowReady

DEADLINE = 20.0


def test_messages_arrive_in_order():
    channel = Channel("t")
    for i in range(5):
        assert channel.send(WindowReady(i, i * 8000))
    assert [m.index for m in channel.drain()] == list(range(5))
    assert channel.receive(0.01) is None


def test_a_full_channel_drops_and_counts_instead_of_blocking():
    channel = Channel("t")
    sent = 0
    started = time.monotonic()
    while channel.send(Vote(sent, "wave", 0.5, 0.0)):
        sent += 1
        assert time.monotonic() - started < DEADLINE
    assert channel.dropped == 1
    assert len(channel.drain()) == sent


def _consume_forever(channel: Channel, ready) -> None:
    ready.set()
    while True:
        channel.receive(1.0)


def _consume_one(channel: Channel, out) -> None:
    message = channel.receive(DEADLINE)
    out.put(message.index if message else None)


def test_a_consumer_killed_while_waiting_leaves_the_channel_usable():
    """The reason Channel exists: multiprocessing.Queue deadlocks the replacement of such a consumer."""
    context = multiprocessing.get_context("spawn")
    channel = Channel("t")
    ready = context.Event()
    victim = context.Process(target=_consume_forever, args=(channel, ready))
    victim.start()
    assert ready.wait(DEADLINE)
    time.sleep(0.2)  # let it block inside receive()
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(DEADLINE)
    out = context.Queue()
    replacement = context.Process(target=_consume_one, args=(channel, out))
    replacement.start()
    channel.send(WindowReady(42, 0))
    assert out.get(timeout=DEADLINE) == 42
    replacement.join(DEADLINE)


def test_oversized_messages_are_refused_loudly():
    with pytest.raises(ValueError, match="too big"):
        Channel("t").send(b"x" * 10000)


def test_a_message_and_its_length_header_fit_one_atomic_pipe_write_or_are_refused():
    """Over PIPE_BUF bytes, writes from two producers may interleave and garble the stream."""
    biggest = PIPE_BUF - _HEADER.size
    fits = biggest - (len(pickle.dumps(b"x" * biggest, protocol=pickle.HIGHEST_PROTOCOL)) - biggest)
    channel = Channel("t")
    assert channel.send(b"x" * fits)
    with pytest.raises(ValueError, match="too big"):
        channel.send(b"x" * (fits + 1))
    assert len(channel.receive(0.0)) == fits


IDLE_WAIT = 0.5


def test_an_idle_consumer_waits_for_a_message_instead_of_spinning():
    """A worker's receive loop must sleep in poll(): spinning would take a Pi core per process."""
    channel = Channel("t")
    started, cpu_before = time.monotonic(), time.process_time()
    assert channel.receive(IDLE_WAIT) is None
    waited, cpu = time.monotonic() - started, time.process_time() - cpu_before
    assert waited >= 0.9 * IDLE_WAIT and cpu < 0.5 * waited


def test_the_high_water_mark_is_the_largest_backlog_seen_not_the_last():
    channel = Channel("t")
    frame = _HEADER.size + len(pickle.dumps(WindowReady(0, 0), protocol=pickle.HIGHEST_PROTOCOL))
    for i in range(3):
        channel.send(WindowReady(i, 0))
    channel.drain()
    channel.send(WindowReady(3, 0))
    channel.receive(0.0)
    assert channel.high_water == 3 * frame
