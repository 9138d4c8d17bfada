"""Checks before start: an unreadable source file or a device that opens otherwise than asked is a
clear error at once. A device that cannot be opened (unplugged, busy) is a clear error too, but
`start` goes on with it: the capture process keeps trying it, as it does for a device that
vanishes while running, so that texts already waiting still go out and the recipients hear of the
silence, rather than a service restarting for ever with nothing sent."""

from __future__ import annotations

from pathlib import Path

from capture.audio_file import AudioFileError, open_audio
from pipeline.config import AudioConfig, Config

LISTED_DEVICES = 12


class PreflightError(RuntimeError):
    pass


class DeviceAbsent(PreflightError):
    """The device cannot be opened now: `start` goes on and keeps trying it."""


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
        raise DeviceAbsent(f"audio.device: {exc}. Capture devices ALSA knows: {known}") from None
    source.close()
