"""`python cli.py test-mic`: the microphone's level and clipping, to set up a site."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from capture.alsa_source import AlsaSource
from pipeline.config import Config

CLIP_LEVEL = 32767 - 1  # a sample at (or next to) full scale counts as clipped
REPORT_EVERY = 0.5  # s
FLOOR_DB = -120.0


@dataclass(frozen=True)
class Level:
    rms_dbfs: float
    peak_dbfs: float
    clipped: int  # samples at full scale

    def __str__(self) -> str:
        warning = "  CLIPPING: lower the gain (alsamixer)" if self.clipped else ""
        return f"rms {self.rms_dbfs:6.1f} dBFS   peak {self.peak_dbfs:6.1f} dBFS   clipped {self.clipped}{warning}"


def _dbfs(value: float) -> float:
    return round(max(FLOOR_DB, 20 * np.log10(value)), 1) if value > 0 else FLOOR_DB


def level_of(samples: np.ndarray) -> Level:
    x = samples.astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    clipped = int(np.sum(np.abs(samples.astype(np.int32)) >= CLIP_LEVEL))
    return Level(_dbfs(rms), _dbfs(peak), clipped)


def measure(config: Config, seconds: float) -> Iterator[Level]:
    """Levels of each REPORT_EVERY seconds of `seconds` of captured audio (the last may be shorter),
    counted in samples, not on the clock: a short run still reports; raises DeviceError."""
    audio = config.audio
    source = AlsaSource.from_config(audio)
    source.open()
    try:
        block, wanted = round(REPORT_EVERY * audio.rate), max(1, round(seconds * audio.rate))
        collected: list[np.ndarray] = []
        pending = captured = 0
        while captured < wanted:
            samples = source.read().samples[: wanted - captured]
            collected.append(samples)
            pending, captured = pending + len(samples), captured + len(samples)
            if pending >= block or captured >= wanted:
                yield level_of(np.concatenate(collected))
                collected, pending = [], 0
    finally:
        source.close()
