"""A bounded, non-blocking, crash-safe message queue between processes, over one OS pipe.

Why not multiprocessing.Queue: its `get(timeout=...)` holds a reader lock while it waits, so a
consumer killed with SIGKILL (which the supervisor must survive) leaves the lock held and its
restarted replacement can never read again. Here there is one consumer per channel and no lock:
every message is pickled and written with a single write() of at most PIPE_BUF bytes, which the
kernel makes atomic, so several producers never interleave and a dying producer never leaves half
a message. Producers never block: when the pipe is full the message is dropped and counted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import select
import struct
import termios
from multiprocessing.connection import Connection, Pipe
from typing import Any

PIPE_BUF = select.PIPE_BUF
_HEADER = struct.Struct("!i")  # the length prefix multiprocessing.connection uses
DROP_LOG_EVERY = 100

log = logging.getLogger(__name__)


class Channel:
    """Many producers, one consumer; small picklable messages (dataclasses), never audio."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._reader, self._writer = Pipe(duplex=False)
        os.set_blocking(self._writer.fileno(), False)  # the open file is shared: all producers
        self.dropped = 0
        self.high_water = 0  # most bytes seen waiting, sampled by the consumer

    def send(self, message: Any) -> bool:
        """Queue `message` without blocking; False (and counted) when the consumer is behind."""
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(payload) + _HEADER.size > PIPE_BUF:
            raise ValueError(f"{type(message).__name__} is {len(payload)} bytes: too big for {self.name}")
        try:
            self._writer.send_bytes(payload)
        except BlockingIOError:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % DROP_LOG_EVERY == 0:
                log.warning("channel %s full: %d messages dropped so far", self.name, self.dropped)
            return False
        return True

    def receive(self, timeout: float) -> Any | None:
        """The next message, or None after `timeout` seconds without one."""
        if not self._reader.poll(timeout):
            return None
        waiting = struct.unpack("i", fcntl.ioctl(self._reader.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        self.high_water = max(self.high_water, waiting)
        return pickle.loads(self._reader.recv_bytes())

    def drain(self) -> list[Any]:
        """Every message waiting now, without blocking."""
        messages = []
        while (message := self.receive(0)) is not None:
            messages.append(message)
        return messages

    @property
    def reader(self) -> Connection:
        return self._reader
