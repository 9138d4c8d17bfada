"""Audio files in any format libsndfile reads (WAV, FLAC, OGG; 8/16/24/32-bit, float; any rate and
channel count), as mono float32 at the models' rate, streamed in blocks so hours-long files fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

RESAMPLE_QUALITY = "HQ"


class AudioFileError(ValueError):
    """A file that cannot be used as audio; the message says why and what to do."""


def open_audio(path: Path) -> soundfile.SoundFile:
    """The file opened for reading; AudioFileError saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    try:
        handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc}); convert it to WAV or FLAC") from None
    if handle.frames == 0 or handle.samplerate <= 0:
        handle.close()
        raise AudioFileError(f"{path}: holds no audio (0 samples)")
    return handle


def iter_audio_blocks(path: Path, rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `rate`; raises AudioFileError (also for a file truncated mid-way)."""
    with open_audio(path) as handle:
        resampler = (
            None
            if handle.samplerate == rate
            else soxr.ResampleStream(handle.samplerate, rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        block = max(1, int(block_seconds * handle.samplerate))
        delivered = 0
        while True:
            try:
                data = handle.read(block, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                start, end = delivered / handle.samplerate, min(delivered + block, handle.frames) / handle.samplerate
                raise AudioFileError(f"{path}: damaged between {start:.1f} and {end:.1f} s ({exc})") from None
            last = data.shape[0] < block
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            out = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            delivered += data.shape[0]
            if out.shape[0]:
                yield np.ascontiguousarray(out, dtype=np.float32)
            if last:
                break
        if delivered == 0:
            raise AudioFileError(f"{path}: holds no audio (0 samples could be decoded)")


def read_audio(path: Path, rate: int) -> np.ndarray:
    """The whole file as mono float32 at `rate` (for short files; stream long ones)."""
    return np.concatenate(list(iter_audio_blocks(path, rate, block_seconds=60.0)))
