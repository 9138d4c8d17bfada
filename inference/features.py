"""Log-mel front end in plain numpy: the hot-path twin of librosa's melspectrogram.

The mel filter bank is built once with librosa at export time and shipped in the model's
sidecar (sparse, see `pack_mel_filters`), so runtime processes never import librosa.
Frames are aligned to absolute sample positions (frame k starts at sample k * hop_length,
no centring), so a stream computed hop by hop gives exactly the frames a whole window would.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np

LOG_FLOOR = 1e-10
"""Power floor before the log, as librosa.power_to_db(amin=1e-10)."""


@dataclass(frozen=True)
class LogMelSpec:
    """Parameters of one log-mel stream; `key` identifies streams that can be shared."""

    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    filters: np.ndarray = field(repr=False, compare=False, hash=False)

    @functools.cached_property
    def key(self) -> str:
        """Equal only for streams that are equal: the filter bank and the rate count too."""
        filters = hashlib.sha1(np.ascontiguousarray(self.filters, dtype=np.float32).tobytes()).hexdigest()[:8]
        shape = f"{self.sample_rate}-{self.n_fft}-{self.hop_length}-{self.n_mels}-{self.fmin:g}-{self.fmax:g}"
        return f"logmel-{shape}-{filters}"

    def frames_in(self, n_samples: int) -> int:
        """Number of whole frames that fit in `n_samples` samples."""
        if n_samples < self.n_fft:
            return 0
        return 1 + (n_samples - self.n_fft) // self.hop_length

    def to_json(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "mel_filters": pack_mel_filters(self.filters),
        }

    @classmethod
    def from_json(cls, data: dict) -> LogMelSpec:
        n_bins = data["n_fft"] // 2 + 1
        filters = unpack_mel_filters(data["mel_filters"], n_bins)
        if filters.shape[0] != data["n_mels"]:
            raise ValueError(f"mel_filters has {filters.shape[0]} rows, n_mels is {data['n_mels']}")
        return cls(
            sample_rate=int(data["sample_rate"]),
            n_fft=int(data["n_fft"]),
            hop_length=int(data["hop_length"]),
            n_mels=int(data["n_mels"]),
            fmin=float(data["fmin"]),
            fmax=float(data["fmax"]),
            filters=filters,
        )


def pack_mel_filters(filters: np.ndarray) -> list[list]:
    """Each row as [first non-zero bin, weights...]: a mel row is non-zero on one short run."""
    packed = []
    for row in filters:
        nonzero = np.flatnonzero(row)
        if nonzero.size == 0:
            packed.append([0])
            continue
        start, stop = int(nonzero[0]), int(nonzero[-1]) + 1
        packed.append([start, *(float(w) for w in row[start:stop])])
    return packed


def unpack_mel_filters(packed: list[list], n_bins: int) -> np.ndarray:
    filters = np.zeros((len(packed), n_bins), dtype=np.float32)
    for i, (start, *weights) in enumerate(packed):
        filters[i, start : start + len(weights)] = weights
    return filters


class LogMelFrontend:
    """Computes log-mel frames for a contiguous run of audio that starts on a frame boundary."""

    def __init__(self, spec: LogMelSpec) -> None:
        self.spec = spec
        n = np.arange(spec.n_fft, dtype=np.float64)
        # Periodic Hann, as scipy.signal.get_window("hann", n_fft, fftbins=True) in librosa.
        self._window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / spec.n_fft)).astype(np.float32)
        self._filters_t = np.ascontiguousarray(spec.filters.T, dtype=np.float32)

    def frames(self, audio: np.ndarray) -> np.ndarray:
        """(n_frames, n_mels) float32 log-mel (dB) of float32 audio; trailing partial frame dropped."""
        spec = self.spec
        n_frames = spec.frames_in(audio.shape[0])
        if n_frames == 0:
            return np.zeros((0, spec.n_mels), dtype=np.float32)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        framed = np.lib.stride_tricks.as_strided(
            audio,
            shape=(n_frames, spec.n_fft),
            strides=(audio.strides[0] * spec.hop_length, audio.strides[0]),
            writeable=False,
        )
        spectrum = np.fft.rfft(framed * self._window, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = power.astype(np.float32, copy=False) @ self._filters_t
        np.maximum(mel, LOG_FLOOR, out=mel)
        return (10.0 * np.log10(mel)).astype(np.float32, copy=False)
