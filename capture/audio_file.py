"""Audio files in any format libsndfile reads (WAV, FLAC, OGG; 8/16/24/32-bit, float; any rate and
channel count), as mono float32 at the models' rate, streamed in blocks so hours-long files fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from pipeline.config import AudioConfig

RESAMPLE_QUALITY = "HQ"
READ_ERRORS = (soundfile.LibsndfileError, RuntimeError)  # what a read or seek of a damaged file raises
# A block that cannot be decoded is read again in reads this long, up to the damage: the live replay's
# read at the default audio.period (capture.file_source.FileSource reads one period at a time), so that
# `analyze` and `start --source` lose the same audio and report the same break point.
DAMAGE_STEP_SECONDS = AudioConfig.period


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
    """Mono float32 blocks at `rate`; raises AudioFileError, for a file damaged part-way after the audio
    up to the damage (see _reads: a block that fails is read again in steps up to it)."""
    with open_audio(path) as handle:
        resampler = (
            None
            if handle.samplerate == rate
            else soxr.ResampleStream(handle.samplerate, rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        block = max(1, int(block_seconds * handle.samplerate))
        step = min(block, max(1, int(DAMAGE_STEP_SECONDS * handle.samplerate)))
        decoded = 0
        for data in _reads(handle, path, block, step):
            decoded += data.shape[0]
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            out = mono if resampler is None else resampler.resample_chunk(mono)
            if out.shape[0]:
                yield np.ascontiguousarray(out, dtype=np.float32)
        if decoded == 0:
            raise AudioFileError(f"{path}: holds no audio (0 samples could be decoded)")
        if resampler is not None and (tail := resampler.resample_chunk(np.zeros(0, np.float32), last=True)).size:
            yield np.ascontiguousarray(tail, dtype=np.float32)


def _reads(handle: soundfile.SoundFile, path: Path, block: int, step: int) -> Iterator[np.ndarray]:
    """The file's frames (float32, frames x channels) in reads of `block` frames to its end. A read that
    fails is done again in reads of `step` frames, so that only the step holding the damage is lost:
    that one raises AudioFileError saying where the damage is."""
    position, retry_until = 0, 0  # frames before retry_until: a block that failed, read again step by step
    while True:
        want = min(step, retry_until - position) if position < retry_until else block
        try:
            data = handle.read(want, dtype="float32", always_2d=True)
        except READ_ERRORS as exc:
            if want <= step or not _rewind(handle, position):
                raise _damaged(path, handle, position, want, exc) from None
            retry_until = position + want
            continue
        position += data.shape[0]
        if data.shape[0]:
            yield data
        if data.shape[0] < want:
            return


def _rewind(handle: soundfile.SoundFile, position: int) -> bool:
    """Whether the file could be put back at frame `position` (a damaged one may refuse)."""
    try:
        return handle.seek(position) == position
    except READ_ERRORS:
        return False


def _damaged(path: Path, handle: soundfile.SoundFile, position: int, frames: int, exc: Exception) -> AudioFileError:
    start, end = position / handle.samplerate, min(position + frames, handle.frames) / handle.samplerate
    return AudioFileError(f"{path}: damaged between {start:.1f} and {end:.1f} s ({exc})")


def read_audio(path: Path, rate: int) -> np.ndarray:
    """The whole file as mono float32 at `rate` (for short files; stream long ones)."""
    return np.concatenate(list(iter_audio_blocks(path, rate, block_seconds=60.0)))
