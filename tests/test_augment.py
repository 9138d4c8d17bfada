"""Training windows: the negatives that attack the proxy's false alerts look as intended."""

import numpy as np
import pytest
from scipy import signal

from models.training import augment, train
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
    monkeypatch.setattr(augment, "background", lambda rng, negatives, window: augment.crop(rng, tone(300.0), window))
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
    monkeypatch.setattr(augment, "background", lambda rng, negatives, window: augment.crop(rng, both, window))
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


def eq_is_stable(f0: float, q: float) -> bool:
    _, a = signal.iirpeak(f0, Q=q, fs=SAMPLE_RATE)
    return bool(np.all(np.abs(np.roots(a)) < 1.0))


def test_the_microphone_eq_is_a_stable_filter_at_every_centre_and_q_it_draws():
    """Its Q once went down to 0.7: at a 6 kHz centre the filter's bandwidth passed the Nyquist
    frequency, its poles left the unit circle and 3 of 19 248 training windows became infinite."""
    centres = np.geomspace(*augment.EQ_HZ, 50)
    assert all(eq_is_stable(f0, q) for f0 in centres for q in np.linspace(*augment.EQ_Q, 20))
    assert not eq_is_stable(augment.EQ_HZ[1], 0.7)


def test_augmented_training_windows_that_are_not_finite_stop_the_training(monkeypatch):
    clips = [
        Clip("n", 0, "dog_bark", "s", "g", "train", tone(300.0)),
        Clip("p", 1, "gunshot", "s", "h", "train", tone(900.0)),
    ]
    copies = dict.fromkeys(train.COPIES, 1)
    monkeypatch.setattr(augment, "finish", lambda rng, x: np.full_like(x, np.inf))
    with pytest.raises(ValueError, match="not finite"):
        train.build_windows(clips, copies, seed=0)


def test_change_speed_moves_pitch_and_length_together(monkeypatch):
    monkeypatch.setattr(augment, "P_SPEED", 1.0)
    rng = np.random.default_rng(6)
    bins = np.fft.rfftfreq(2 * SAMPLE_RATE, 1 / SAMPLE_RATE)
    for _ in range(10):
        x = augment.change_speed(rng, tone(1000.0))
        speed = 2 * SAMPLE_RATE / x.shape[0]
        assert augment.SPEED[0] - 0.01 <= speed <= augment.SPEED[1] + 0.01
        peak_hz = bins[np.argmax(np.abs(np.fft.rfft(x, 2 * SAMPLE_RATE)))]
        assert abs(peak_hz - 1000.0 * speed) < 15  # heard at the resampled rate, the tone moves with it
    monkeypatch.setattr(augment, "P_SPEED", 0.0)
    audio = tone(1000.0)
    assert augment.change_speed(rng, audio) is audio


def high_share(x: np.ndarray, above_hz: float = 7000.0) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(power[np.fft.rfftfreq(x.shape[0], 1 / SAMPLE_RATE) > above_hz].sum() / (power.sum() + 1e-20))


def as_if_8_khz(x: np.ndarray) -> np.ndarray:
    """Nothing above 3.9 kHz, as after the steep resampling of an 8 kHz recording."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.shape[0], 1 / SAMPLE_RATE) > 3900] = 0
    return np.fft.irfft(spectrum, x.shape[0]).astype(np.float32)


def test_narrowband_tells_an_8_khz_recording_from_a_wide_band_one():
    noise = np.random.default_rng(8).standard_normal(SAMPLE_RATE).astype(np.float32)
    assert augment.narrowband(as_if_8_khz(noise))
    assert not augment.narrowband(noise)


def test_band_limited_windows_are_as_common_among_gunshots_as_among_other_sounds(monkeypatch):
    # Mostly 8 kHz gunshots, wide-band other sounds: with the same band-limiting for both, "energy
    # above 4 kHz" would mean "no gunshot" in 0.5 of the other windows and 0.1 of the gunshot ones.
    quiet = {"P_MIX": 0.0, "P_NEGATIVE_MIX": 0.0, "P_CLIP": 0.0, "P_ONE_SIDE_BANDLIMITED": 0.0}
    for name, value in {**quiet, "NOISE_FLOOR_DBFS": (-160.0, -150.0)}.items():
        monkeypatch.setattr(augment, name, value)
    rng = np.random.default_rng(7)

    def clip(label: int, narrow: bool) -> Clip:
        audio = 0.1 * rng.standard_normal(2 * SAMPLE_RATE).astype(np.float32)
        if narrow:
            audio = as_if_8_khz(audio)
        return Clip("c.flac", label, "gunshot" if label else "dog_bark", "s", "g", "train", audio)

    clips = [clip(1, True) for _ in range(8)] + [clip(1, False) for _ in range(2)] + [clip(0, False) for _ in range(10)]
    copies = {"positive": 30, "negative": 30, "ambient": 30, "noise": 0, "synthetic": 0}
    x, y, _ = train.build_windows(clips, copies, seed=0)
    limited = np.array([high_share(w) < 1e-3 for w in x])
    gunshot, other = limited[y == 1].mean(), limited[y == 0].mean()
    assert abs(gunshot - 0.9) < 0.06 and abs(other - 0.9) < 0.06  # 0.8 narrow + half of the rest


def test_windows_of_each_model_length_come_from_one_recipe():
    """The 2 s windows of the mel models and the 1 s windows of the waveform model: the same
    clips and kinds, each shot inside its window."""
    rng = np.random.default_rng(3)
    shot = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    shot[SAMPLE_RATE : SAMPLE_RATE + 400] = rng.standard_normal(400)
    clips = [
        Clip("shot.flac", 1, "gunshot", "s", "g", "train", shot),
        Clip(
            "rain.flac", 0, "rain", "s", "g2", "train", 0.05 * rng.standard_normal(4 * SAMPLE_RATE).astype(np.float32)
        ),
    ]
    copies = {"positive": 6, "negative": 6, "ambient": 6, "noise": 2, "synthetic": 2}
    for window in sorted(set(train.WINDOW_SAMPLES.values())):
        x, y, w = train.build_windows(clips, copies, seed=0, window=window)
        assert x.shape == (len(y), window) and np.all(np.isfinite(x)) and len(w) == len(y) == 16
        assert np.array_equal(y, [1] * 6 + [0] * 6 + [1] * 2 + [0] * 2)
        plain, _ = train.plain_windows(clips, window)
        assert plain.shape == (3, window) and np.all(np.abs(plain[:2]).max(axis=1) > 0.5)


# colored_noise(default_rng(0), 4001, kind) at samples 0, 2000 and 4000, and the generator's next
# random() after it, as the implementation before 2026-12-06 made them (it made new arrays where
# the one since works in place): cached windows and the streaming mixtures must not change.
NOISE_BEFORE = {
    "white": (0.140858, 0.434890, 0.868412, 0.776195),
    "pink": (0.651864, -0.785560, 0.901821, 0.776195),
    "brown": (1.141502, -1.358448, 1.155553, 0.776195),
    "wind": (1.247184, 0.842782, 2.104512, 0.990782),
}


@pytest.mark.parametrize("kind", sorted(NOISE_BEFORE))
def test_colored_noise_keeps_its_numbers_and_unit_level(kind):
    rng = np.random.default_rng(0)
    noise = augment.colored_noise(rng, 4001, kind)
    assert noise.dtype == np.float32
    np.testing.assert_allclose([*noise[[0, 2000, 4000]], rng.random()], NOISE_BEFORE[kind], atol=2e-6)
    assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
