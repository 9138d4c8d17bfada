"""An ALSA capture device read period by period with pyalsaaudio (S16_LE, blocking)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import alsaaudio
import numpy as np

from capture.alsa_errors import route_alsa_errors
from pipeline.config import AudioConfig
from pipeline.users import user_name

log = logging.getLogger(__name__)

SAMPLE_FORMAT = "S16_LE"
SOUND_DEVICES = Path("/dev/snd")


class DeviceError(RuntimeError):
    """The device cannot be opened or read; the caller reopens it with backoff."""


class DeviceMismatch(DeviceError):
    """The device opened, but not as asked (rate or sample format): a setting to change, not a cable."""


def sound_devices_refused(folder: Path = SOUND_DEVICES) -> bool:
    """Whether `folder` holds sound device nodes (control, pcm) this user may not open for reading
    and writing: a user not in the audio group. alsa-lib then reports the card as absent."""
    try:
        nodes = [path for path in folder.iterdir() if path.name.startswith(("control", "pcm"))]
    except OSError:  # no /dev/snd: no sound card at all
        return False
    return any(not os.access(path, os.R_OK | os.W_OK) for path in nodes)


def open_failed_hint(folder: Path = SOUND_DEVICES) -> str:
    """What to do about a device that does not open: the user's groups, or the microphone."""
    if sound_devices_refused(folder):
        name = user_name()
        return (
            f"this user ({name}) cannot open the sound devices: add it to the audio group "
            f"(sudo usermod -aG audio {name}), then restart the detector (or log in again)"
        )
    return "is the microphone plugged in? see `arecord -L`"


@dataclass(frozen=True)
class Chunk:
    samples: np.ndarray  # int16 mono at the source's rate
    lost: int = 0  # frames the source knows it lost just before these (an overrun)


class AlsaSource:
    def __init__(self, device: str, rate: int, channels: int, period_frames: int) -> None:
        self.device, self.rate, self.channels, self.period = device, rate, channels, period_frames
        self._pcm = None
        self._last_read: float | None = None
        self._frame_channels = channels  # what the device delivers: it may not do the channels asked

    @classmethod
    def from_config(cls, audio: AudioConfig) -> AlsaSource:
        return cls(audio.device, audio.rate, audio.channels, round(audio.period * audio.rate))

    @property
    def is_open(self) -> bool:
        return self._pcm is not None

    @property
    def delivered_channels(self) -> int:
        """The channels the open device delivers (averaged to mono): perhaps not those asked for."""
        return self._frame_channels

    def open(self) -> None:
        route_alsa_errors()  # a failed open is this DeviceError, not also a line of libasound's
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
                f"cannot open audio device {self.device!r} ({exc}); {open_failed_hint(SOUND_DEVICES)}"
            ) from None
        try:
            self._frame_channels = self._check(self._pcm.info())
        except DeviceMismatch:
            self.close()
            raise
        self._last_read = None

    def _check(self, info: dict) -> int:
        """The channels the device delivers. pyalsaaudio takes the nearest rate, channels and format
        the device can do without saying so: a stereo-only microphone asked for mono gives stereo."""
        rate, sample_format = info.get("rate", self.rate), info.get("format_name", SAMPLE_FORMAT)
        if rate != self.rate:
            raise DeviceMismatch(f"audio device {self.device!r} runs at {rate} Hz, not {self.rate}: set audio.rate")
        if sample_format != SAMPLE_FORMAT:
            raise DeviceMismatch(
                f"audio device {self.device!r} delivers {sample_format} samples, not {SAMPLE_FORMAT}: "
                "use its plughw: name (which converts), see `arecord -L`"
            )
        channels = info.get("channels", self.channels)
        if channels != self.channels:
            log.warning(
                "audio device %r has %d channel(s), not the %d of audio.channels: all are averaged to mono",
                self.device,
                channels,
                self.channels,
            )
        return channels

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
        frames = np.frombuffer(data, dtype="<i2")[: length * self._frame_channels]
        self._last_read = now
        if self._frame_channels > 1:
            frames = frames.reshape(-1, self._frame_channels).mean(axis=1).astype(np.int16)
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
