"""Streaming resampling of int16 mono audio from the device rate to the models' rate (soxr)."""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"


class Resampler:
    """Identity when the rates match; otherwise a stateful soxr stream (no clicks between periods)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in, self.rate_out = rate_in, rate_out
        self._stream = (
            None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, 1, dtype="int16", quality=QUALITY)
        )

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)
