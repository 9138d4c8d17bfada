"""A recording replayed as if it were a microphone, paced at real time."""

from __future__ import annotations

import time
from pathlib import Path

from capture.alsa_source import Chunk
from capture.audio_file import iter_audio_blocks
from capture.pcm import float_to_int16


class FileSource:
    """Already at the models' rate (decoded and resampled by capture.audio_file)."""

    def __init__(self, path: Path, rate: int, period_frames: int) -> None:
        self.path, self.rate, self.period = Path(path), rate, period_frames
        self._blocks = None
        self._started = 0.0
        self._delivered = 0
        self.finished = False

    def open(self) -> None:
        self._blocks = iter_audio_blocks(self.path, self.rate, block_seconds=self.period / self.rate)
        self._started = time.monotonic()
        self._delivered = 0

    def read(self) -> Chunk | None:
        """The next period, or None at the end of the file."""
        block = next(self._blocks, None)
        if block is None:
            self.finished = True
            return None
        due = self._started + (self._delivered + block.shape[0]) / self.rate
        time.sleep(max(0.0, due - time.monotonic()))
        self._delivered += block.shape[0]
        return Chunk(float_to_int16(block))

    def close(self) -> None:
        self._blocks = None
