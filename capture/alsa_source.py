"""An ALSA capture device read period by period with pyalsaaudio (S16_LE, blocking)."""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from dataclasses import dataclass

import alsaaudio
import numpy as np

log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """The device cannot be opened or read; the caller reopens it with backoff."""


@dataclass(frozen=True)
class Chunk:
    samples: np.ndarray  # int16 mono at the source's rate
    lost: int = 0  # frames the source knows it lost just before these (an overrun)


class AlsaSource:
    def __init__(self, device: str, rate: int, channels: int, period_frames: int) -> None:
        self.device, self.rate, self.channels, self.period = device, rate, channels, period_frames
        self._pcm = None
        self._last_read: float | None = None

    @property
    def is_open(self) -> bool:
        return self._pcm is not None

    def open(self) -> None:
        try:
            self._pcm = alsaaudio.PCM(
                alsaaudio.PCM_CAPTURE,
                alsaaudio.PCM_NORMAL,
                device=self.device,
                rate=self.rate,
                channels=self.channels,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=self.period,
            )
        except alsaaudio.ALSAAudioError as exc:
            raise DeviceError(
                f"cannot open audio device {self.device!r} ({exc}); is the microphone plugged in? see `arecord -L`"
            ) from None
        actual = self._pcm.info().get("rate", self.rate)
        if actual != self.rate:
            self.close()
            raise DeviceError(f"audio device {self.device!r} runs at {actual} Hz, not {self.rate}: set audio.rate")
        self._last_read = None

    def read(self) -> Chunk:
        """One period (or less); an overrun is reported as the frames lost before the next data."""
        try:
            length, data = self._pcm.read()
        except alsaaudio.ALSAAudioError as exc:
            raise DeviceError(f"audio device {self.device!r} failed: {exc}") from None
        now = time.monotonic()
        if length == -errno.EPIPE:  # overrun: pyalsaaudio has already re-prepared the stream
            return Chunk(np.zeros(0, dtype=np.int16), lost=self._lost_since_last_read(now))
        if length < 0:
            raise DeviceError(f"audio device {self.device!r} read error {length} ({errno.errorcode.get(-length)})")
        frames = np.frombuffer(data, dtype="<i2")[: length * self.channels]
        self._last_read = now
        if self.channels > 1:
            frames = frames.reshape(-1, self.channels).mean(axis=1).astype(np.int16)
        return Chunk(frames.astype(np.int16, copy=False))

    def _lost_since_last_read(self, now: float) -> int:
        """At least a period; more when the reader was away longer (timed against the clock)."""
        if self._last_read is None:
            return self.period
        return max(self.period, round((now - self._last_read) * self.rate) - self.period)

    def close(self) -> None:
        if self._pcm is not None:
            with contextlib.suppress(alsaaudio.ALSAAudioError):  # closing a vanished device may fail
                self._pcm.close()
            self._pcm = None
