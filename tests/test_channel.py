import multiprocessing
import os
import signal
import time

import pytest

from pipeline.channel import Channel
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
