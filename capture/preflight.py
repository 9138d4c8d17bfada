"""Checks before start: a missing microphone or an unreadable source file is a clear error at
once, not a retry loop (while running, a vanished device is reopened with backoff instead)."""

from __future__ import annotations

from pathlib import Path

from capture.audio_file import AudioFileError, open_audio
from pipeline.config import AudioConfig, Config

LISTED_DEVICES = 12


class PreflightError(RuntimeError):
    pass


def check_source(config: Config) -> None:
    if config.audio.source:
        _check_file(Path(config.audio.source))
    else:
        _check_device(config.audio)


def _check_file(path: Path) -> None:
    """The checks `analyze` makes: no file, a folder, not audio, no samples."""
    try:
        open_audio(path).close()
    except AudioFileError as exc:
        raise PreflightError(f"audio.source: {exc}") from None


def _check_device(audio: AudioConfig) -> None:
    """The checks the capture process makes when it opens the device (rate, sample format)."""
    import alsaaudio

    from capture.alsa_source import AlsaSource, DeviceError, DeviceMismatch

    source = AlsaSource.from_config(audio)
    try:
        source.open()
    except DeviceMismatch as exc:
        raise PreflightError(f"audio.device: {exc}") from None
    except DeviceError as exc:
        try:
            known = ", ".join(alsaaudio.pcms(alsaaudio.PCM_CAPTURE)[:LISTED_DEVICES])
        except alsaaudio.ALSAAudioError:
            known = "none"
        raise PreflightError(f"audio.device: {exc}. Capture devices ALSA knows: {known}") from None
    source.close()
