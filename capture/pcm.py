"""int16 PCM as a sound card delivers it, and float audio in [-1, 1)."""

from __future__ import annotations

import numpy as np

INT16_SCALE = 32768.0
MODEL_RATE = 16000  # what capture delivers to the ring, whatever the device's rate


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / np.float32(INT16_SCALE)


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    """Rounded and clipped, as a sound card would deliver it."""
    scaled = np.round(np.asarray(audio, dtype=np.float32) * np.float32(INT16_SCALE))
    return np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)
