"""Synthetic gunshots: an instant rise out of silence, bursts of separate shots, distance as a low-pass."""

import numpy as np

from models.training import synthetic
from models.training.data import SAMPLE_RATE

MS = SAMPLE_RATE // 1000


def envelope(x: np.ndarray, ms: int = 10) -> np.ndarray:
    """RMS over consecutive `ms`-long frames."""
    frames = x[: x.shape[0] // (ms * MS) * ms * MS].reshape(-1, ms * MS)
    return np.sqrt(np.mean(frames**2, axis=1))


def high_share(x: np.ndarray, above_hz: float = 3000.0) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(power[np.fft.rfftfreq(x.shape[0], 1 / SAMPLE_RATE) > above_hz].sum() / power.sum())


def test_a_synthetic_shot_rises_at_once_out_of_silence():
    rng = np.random.default_rng(0)
    quiet = int((synthetic.LEAD_S - synthetic.CRACK_LEAD_MS[1] / 1000) * SAMPLE_RATE) - 2 * MS
    for _ in range(30):
        x = synthetic.gunshot(rng)
        assert x.dtype == np.float32 and x.shape == (int(synthetic.LENGTH_S * SAMPLE_RATE),)
        assert np.all(np.isfinite(x)) and np.max(np.abs(x)) == np.float32(1.0)
        assert np.max(np.abs(x[:quiet])) < 0.01
        first = np.flatnonzero(np.abs(x) > 0.1)[0]
        assert np.max(np.abs(x[first - 2 * MS : first - MS])) < 0.01  # sudden: 20 dB up within 1 ms


def test_a_burst_is_separate_shots_at_the_drawn_interval(monkeypatch):
    monkeypatch.setattr(synthetic, "P_BURST", 1.0)
    monkeypatch.setattr(synthetic, "BURST_SHOTS", (4, 4))
    monkeypatch.setattr(synthetic, "BURST_INTERVAL_S", (0.2, 0.2))
    monkeypatch.setattr(synthetic, "P_CRACK", 0.0)
    monkeypatch.setattr(synthetic, "ECHOES", (0, 0))
    monkeypatch.setattr(synthetic, "TAIL_DB", (-30.0, -30.0))
    rng = np.random.default_rng(1)
    for _ in range(10):
        env = envelope(synthetic.gunshot(rng))
        onsets = np.flatnonzero((env[1:] > 0.3 * env.max()) & (env[:-1] <= 0.3 * env.max())) + 1
        assert np.allclose(np.diff(onsets), 20, atol=1)  # frames of 10 ms: one shot every 200 ms
        assert len(onsets) == 4


def test_distance_takes_the_high_frequencies(monkeypatch):
    shares = {}
    for corner in (1000.0, 7000.0):
        monkeypatch.setattr(synthetic, "ABSORPTION_HZ", (corner, corner))
        rng = np.random.default_rng(2)
        shares[corner] = np.median([high_share(synthetic.gunshot(rng)) for _ in range(20)])
    assert shares[7000.0] > 10 * shares[1000.0]


def test_the_same_seed_gives_the_same_shots():
    first = [synthetic.gunshot(np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(first[0], first[1])
