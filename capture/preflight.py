"""Checks before start: a missing microphone or an unreadable source file is a clear error at
once, not a retry loop (while running, a vanished device is reopened with backoff instead)."""

from __future__ import annotations

from pathlib import Path

from capture.audio_file import AudioFileError, open_audio
from pipeline.config import Config

LISTED_DEVICES = 12


class PreflightError(RuntimeError):
    pass


def check_source(config: Config) -> None:
    if config.audio.source:
        _check_file(Path(config.audio.source))
    else:
        _check_device(config.audio.device, config.audio.rate, config.audio.channels)


def _check_file(path: Path) -> None:
    """The checks `analyze` makes: no file, a folder, not audio, no samples."""
    try:
        open_audio(path).close()
    except AudioFileError as exc:
        raise PreflightError(f"audio.source: {exc}") from None


def _check_device(device: str, rate: int, channels: int) -> None:
    import alsaaudio

    try:
        pcm = alsaaudio.PCM(
            alsaaudio.PCM_CAPTURE,
            alsaaudio.PCM_NORMAL,
            device=device,
            rate=rate,
            channels=channels,
            format=alsaaudio.PCM_FORMAT_S16_LE,
        )
    except alsaaudio.ALSAAudioError as exc:
        try:
            known = ", ".join(alsaaudio.pcms(alsaaudio.PCM_CAPTURE)[:LISTED_DEVICES])
        except alsaaudio.ALSAAudioError:
            known = "none"
        raise PreflightError(
            f"audio.device: cannot open capture device {device!r} at {rate} Hz, {channels} channel(s): {exc}. "
            f"Is the microphone plugged in? Capture devices ALSA knows: {known} (see `arecord -L`)"
        ) from None
    pcm.close()
