"""Training windows: the negatives that attack the proxy's false alerts look as intended."""

import numpy as np

from models.training import augment
from models.training.data import SAMPLE_RATE, Clip


def tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def band_power(x: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    bins = np.fft.rfftfreq(x.shape[0], 1 / SAMPLE_RATE)
    return float(spectrum[np.abs(bins - freq) < 50].sum())


def ends(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x[: SAMPLE_RATE // 50], x[-SAMPLE_RATE // 50 :]  # 20 ms at each end


def test_transition_crossfades_from_one_sound_to_the_other_inside_the_window(monkeypatch):
    rng = np.random.default_rng(3)
    monkeypatch.setattr(augment, "background", lambda rng, negatives: augment.crop(rng, tone(300.0)))
    monkeypatch.setattr(augment, "P_ONE_SIDE_BANDLIMITED", 0.0)
    low_first = []
    for _ in range(40):
        x = augment.transition(rng, tone(5000.0), [])
        assert x.shape == (augment.WINDOW,) and x.dtype == np.float32 and np.all(np.isfinite(x))
        low = [band_power(end, 300.0) / (band_power(end, 300.0) + band_power(end, 5000.0)) for end in ends(x)]
        assert abs(low[0] - low[1]) > 0.3  # mostly one sound at the start, mostly the other at the end
        low_first.append(low[0] > low[1])
    assert set(low_first) == {True, False}  # both orders occur


def test_transition_sometimes_band_limits_one_side_only(monkeypatch):
    rng = np.random.default_rng(5)
    both = tone(300.0) + tone(6000.0)
    monkeypatch.setattr(augment, "background", lambda rng, negatives: augment.crop(rng, both))
    monkeypatch.setattr(augment, "P_ONE_SIDE_BANDLIMITED", 1.0)
    for _ in range(20):
        x = augment.transition(rng, both, [])
        high = sorted(band_power(end, 6000.0) / band_power(end, 300.0) for end in ends(x))
        assert high[0] * 10 < high[1]  # 6 kHz at least 10 dB weaker at one end than at the other


def test_negative_windows_are_finite_and_at_a_sound_cards_level():
    rng = np.random.default_rng(4)
    clips = [Clip("n", 0, "dog_bark", "s", "g", "train", tone(f)) for f in (200.0, 900.0, 3000.0)]
    for _ in range(50):
        x = augment.negative_window(rng, clips[rng.integers(3)], clips)
        assert x.shape == (augment.WINDOW,) and np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
