"""Training windows and the augmentation that attacks the field gap.

Each window is `window` samples at 16 kHz (1 s unless asked). Gunshots are placed anywhere in it
(a clip's loudest sample is taken as the shot), mixed into other clips or synthetic noise at SNRs
down to 0 dB; both classes get band-limiting, as much of it that both end up with the same share
of band-limited windows (the 8 kHz-sampled sources hold most shots: neither "band-limited" nor
"wide-band" may tell the label), microphone colouring, reverberation, gain and clipping.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from models.training.data import SAMPLE_RATE, Clip

WINDOW = SAMPLE_RATE  # samples; the default window (train.WINDOW_SAMPLES gives each model its own)
SHOT_POSITION = (0.02, 0.9)  # where in the window the shot's peak lands (fraction)
SNR_DB = (0.0, 30.0)
P_MIX = 0.85  # a shot is mixed into another clip or noise
P_BANDLIMIT = 0.5  # at least; the label with fewer narrow-band clips gets more (balanced_bandlimit)
BANDLIMIT_HZ = (2500.0, 4000.0)
# A clip recorded at 8 kHz holds nothing above 4 kHz: less than this share of its power above
# NARROWBAND_HZ (measured on the development set: every 8 kHz clip below 1e-4, every wide-band
# gunshot above 1e-3; some wide-band low rumbles below it, which the models see as narrow-band too).
NARROWBAND_HZ = 4200.0
NARROWBAND_SHARE = 1e-4
P_HIGHPASS = 0.3
HIGHPASS_HZ = (50.0, 400.0)
P_EQ = 0.4
EQ_DB = 8.0
EQ_HZ = (150.0, 6000.0)  # the peak's centre, drawn log-uniform
# The peak's Q: scipy's iirpeak is unstable when its bandwidth (centre / Q) reaches the Nyquist
# frequency, so the lowest Q keeps EQ_HZ[1] / Q under it (at 0.7, 3 of 19 248 training windows came
# out infinite).
EQ_Q = (0.8, 3.0)
P_REVERB = 0.3
RT60_S = (0.1, 1.0)
P_CLIP = 0.08
PEAK_DBFS = (-35.0, -1.0)
NOISE_FLOOR_DBFS = (-75.0, -45.0)
P_NEGATIVE_MIX = 0.3  # a negative window is two clips mixed
# Resampling a clip changes its pitch and length together: other calibres and barrels for a shot,
# and the same change for negatives so that neither means "gunshot".
P_SPEED = 0.5
SPEED = (0.8, 1.25)  # drawn log-uniform
# A negative sound that starts inside the window, over a quieter bed: the streaming proxy showed the
# models firing on the start of any new sound (a door, a dog, glass, an engine), which clip crops
# rarely contain.
P_ONSET = 0.4
ONSET_POSITION = (0.05, 0.9)  # where in the window the sound starts (fraction)
ONSET_BED_DB = (10.0, 40.0)  # the bed before it, this far below the sound
# One background crossfading into another inside the window, sometimes only one side band-limited:
# most of the streaming proxy's false alerts (131 of 161 at a fused threshold of 0.9 on the previous
# set) were in windows spanning its crossfades, often wide-band noise into an 8 kHz-band forest
# recording. A scene or a bandwidth that changes is not a shot.
P_TRANSITION = 0.25
CROSSFADE_S = (0.02, 0.4)
TRANSITION_DB = 15.0  # the side coming in is up to this much louder or quieter
P_ONE_SIDE_BANDLIMITED = 0.5


def colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Unit-RMS noise of n samples. Computed in place (the same numbers as with new arrays, to the
    last bit of a float32 sample now and then): the streaming proxy's noise floor is hours long,
    and each float64 copy of it is gigabytes."""
    noise = rng.standard_normal(n)  # drawn for every kind, the wind's unused: the same random stream as ever
    if kind in ("pink", "brown"):
        spectrum = np.fft.rfft(noise)
        del noise
        f = np.fft.rfftfreq(n)
        np.maximum(f, 1.0 / n, out=f)
        spectrum /= np.sqrt(f, out=f) if kind == "pink" else f
        del f
        noise = np.fft.irfft(spectrum, n)
        del spectrum
    elif kind == "wind":  # low-passed brown noise with slow gusts
        del noise
        brown = colored_noise(rng, n, "brown")
        noise = np.interp(np.arange(n), np.linspace(0, n, 6), rng.uniform(0.2, 1.0, 6))
        noise *= brown
        del brown
    noise -= noise.mean()
    noise /= np.sqrt(np.dot(noise, noise) / n) + 1e-12  # the mean square without a squared copy
    return noise.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def crop(rng: np.random.Generator, audio: np.ndarray, n: int = WINDOW) -> np.ndarray:
    """A random n-sample stretch; shorter audio is placed at random in zeros."""
    out = np.zeros(n, dtype=np.float32)
    if audio.shape[0] >= n:
        start = rng.integers(0, audio.shape[0] - n + 1)
        return audio[start : start + n].copy()
    start = rng.integers(0, n - audio.shape[0] + 1)
    out[start : start + audio.shape[0]] = audio
    return out


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def change_speed(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    if rng.random() >= P_SPEED:
        return audio
    speed = log_uniform(rng, *SPEED)
    return signal.resample_poly(audio, 100, round(100 * speed)).astype(np.float32)


def place_shot(rng: np.random.Generator, audio: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, int]:
    """The clip shifted so that its peak lands at a random place in the window."""
    peak = int(np.argmax(np.abs(audio)))
    at = int(rng.uniform(*SHOT_POSITION) * window)
    out = np.zeros(window, dtype=np.float32)
    src_start = peak - at
    lo, hi = max(0, src_start), min(audio.shape[0], src_start + window)
    out[lo - src_start : hi - src_start] = audio[lo:hi]
    return out, at


def background(rng: np.random.Generator, negatives: list[Clip], window: int = WINDOW) -> np.ndarray:
    if rng.random() < 0.6:
        return crop(rng, negatives[rng.integers(len(negatives))].audio, window)
    return colored_noise(rng, window, rng.choice(["white", "pink", "brown", "wind"]))


def mix_at_snr(rng: np.random.Generator, shot: np.ndarray, at: int, bed: np.ndarray) -> np.ndarray:
    """Shot power over 0.2 s around its peak against the bed's power, at a random SNR."""
    half = SAMPLE_RATE // 10
    shot_power = _rms(shot[max(0, at - half) : at + half])
    snr = rng.uniform(*SNR_DB)
    bed = bed * (shot_power / _rms(bed) / 10 ** (snr / 20))
    return shot + bed


def reverberate(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    rt60 = rng.uniform(*RT60_S)
    n = int(min(rt60, 0.6) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir *= rng.uniform(0.1, 0.6) / (np.sqrt(np.sum(ir**2)) + 1e-12)
    ir[0] = 1.0
    return signal.fftconvolve(x, ir)[: x.shape[0]].astype(np.float32)


def narrowband(audio: np.ndarray) -> bool:
    """Nothing above 4 kHz: recorded at 8 kHz (or a sound without high frequencies)."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    high = power[np.fft.rfftfreq(audio.shape[0], 1 / SAMPLE_RATE) > NARROWBAND_HZ].sum()
    return bool(high < NARROWBAND_SHARE * (power.sum() + 1e-20))


def balanced_bandlimit(narrow_share: dict[int, float]) -> dict[int, float]:
    """Per label, how often to band-limit its windows so that every label ends up with the same
    share of band-limited windows: the largest of what P_BANDLIMIT gives each. `narrow_share`: per
    label, the share of its windows that are narrow-band already (band-limiting leaves those as
    they are). Without this, a source gap becomes a shortcut: trained with only 8 kHz shots and
    wide-band negatives, a model learns that energy above 4 kHz means "no gunshot"."""
    target = max(share + (1 - share) * P_BANDLIMIT for share in narrow_share.values())
    return {label: (target - share) / (1 - share) if share < 1 else 0.0 for label, share in narrow_share.items()}


def colour(rng: np.random.Generator, x: np.ndarray, p_bandlimit: float = P_BANDLIMIT) -> np.ndarray:
    """Band-limiting, high-pass and a peaking EQ: other microphones, codecs and distances."""
    if rng.random() < p_bandlimit:
        x = bandlimit(rng, x)
    if rng.random() < P_HIGHPASS:
        sos = signal.butter(2, rng.uniform(*HIGHPASS_HZ), "high", fs=SAMPLE_RATE, output="sos")
        x = signal.sosfilt(sos, x)
    if rng.random() < P_EQ:
        f0 = log_uniform(rng, *EQ_HZ)
        gain = 10 ** (rng.uniform(-EQ_DB, EQ_DB) / 20)
        b, a = signal.iirpeak(f0, Q=rng.uniform(*EQ_Q), fs=SAMPLE_RATE)
        x = x + (gain - 1) * signal.lfilter(b, a, x)
    return np.asarray(x, dtype=np.float32)


def finish(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Random level, a noise floor (no digital silence), sometimes clipping."""
    x = x + colored_noise(rng, x.shape[0], "pink") * 10 ** (rng.uniform(*NOISE_FLOOR_DBFS) / 20)
    peak = np.max(np.abs(x)) + 1e-9
    x = x * (10 ** (rng.uniform(*PEAK_DBFS) / 20) / peak)
    if rng.random() < P_CLIP:
        x = np.clip(x * 10 ** (rng.uniform(3, 15) / 20), -1.0, 1.0)
    return x.astype(np.float32)


def positive_window(
    rng: np.random.Generator,
    shot: np.ndarray,
    negatives: list[Clip],
    p_bandlimit: float = P_BANDLIMIT,
    window: int = WINDOW,
) -> np.ndarray:
    """A window holding `shot` (a recorded gunshot clip's audio or a synthetic one)."""
    x, at = place_shot(rng, change_speed(rng, shot), window)
    if rng.random() < P_REVERB:
        x = reverberate(rng, x)
    if rng.random() < P_MIX:
        x = mix_at_snr(rng, x, at, background(rng, negatives, window))
    return finish(rng, colour(rng, x, p_bandlimit))


def starts_inside(
    rng: np.random.Generator, sound: np.ndarray, negatives: list[Clip], window: int = WINDOW
) -> np.ndarray:
    """`sound` from its own start, beginning at a random point of the window over a quieter bed."""
    at = int(rng.uniform(*ONSET_POSITION) * window)
    head = sound[: window - at]
    bed = background(rng, negatives, window)
    out = bed * (_rms(head) / _rms(bed) * 10 ** (-rng.uniform(*ONSET_BED_DB) / 20))
    out[at : at + head.shape[0]] += head
    return out.astype(np.float32)


def bandlimit(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    sos = signal.butter(8, rng.uniform(*BANDLIMIT_HZ), "low", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def transition(rng: np.random.Generator, sound: np.ndarray, negatives: list[Clip], window: int = WINDOW) -> np.ndarray:
    """A background and a stretch of `sound` (in either order) crossfading at a random point."""
    first, second = background(rng, negatives, window), crop(rng, sound, window)
    if rng.random() < 0.5:
        first, second = second, first
    if rng.random() < P_ONE_SIDE_BANDLIMITED:
        if rng.random() < 0.5:
            first = bandlimit(rng, first)
        else:
            second = bandlimit(rng, second)
    second = second * (_rms(first) / _rms(second) * 10 ** (rng.uniform(-TRANSITION_DB, TRANSITION_DB) / 20))
    at, fade = rng.uniform(*ONSET_POSITION) * window, rng.uniform(*CROSSFADE_S) * SAMPLE_RATE
    ramp = np.clip((np.arange(window) - at) / fade + 0.5, 0.0, 1.0) * (np.pi / 2)
    return (first * np.cos(ramp) + second * np.sin(ramp)).astype(np.float32)


def negative_window(
    rng: np.random.Generator,
    clip: Clip,
    negatives: list[Clip],
    p_bandlimit: float = P_BANDLIMIT,
    window: int = WINDOW,
) -> np.ndarray:
    kind, audio = rng.random(), change_speed(rng, clip.audio)
    if kind < P_ONSET:
        x = starts_inside(rng, audio, negatives, window)
    elif kind < P_ONSET + P_TRANSITION:
        x = transition(rng, audio, negatives, window)
    else:
        x = crop(rng, audio, window)
    if rng.random() < P_REVERB:
        x = reverberate(rng, x)
    if rng.random() < P_NEGATIVE_MIX:
        other = background(rng, negatives, window)
        x = x + other * (_rms(x) / _rms(other)) * 10 ** (-rng.uniform(0, 20) / 20)
    return finish(rng, colour(rng, x, p_bandlimit))


def plain_window(clip: Clip, position: float = 0.25, window: int = WINDOW) -> np.ndarray:
    """Validation: no augmentation; a shot's peak at `position` of the window, a negative's start."""
    if clip.label:
        peak = int(np.argmax(np.abs(clip.audio)))
        shifted = np.zeros(window, dtype=np.float32)
        src = peak - int(position * window)
        lo, hi = max(0, src), min(clip.audio.shape[0], src + window)
        shifted[lo - src : hi - src] = clip.audio[lo:hi]
        return shifted
    out = np.zeros(window, dtype=np.float32)
    n = min(window, clip.audio.shape[0])
    out[:n] = clip.audio[:n]
    return out
