"""Synthetic gunshots for training: what every shot shares, without any one recording's gun or place.

Four recorded sources (two 8 kHz forest recorders, one set of close-range rifles, a few city clips)
cannot show the models a shot from an unknown gun, microphone and place: trained without one source,
the ensemble heard 0-32 % of its shots. These shots are built from the physics of gunfire heard at
a distance instead:
- a muzzle blast: a Friedlander pulse (an instant rise, an exponential decay through a negative
  phase), its positive phase 0.3-5 ms long (small to large calibre, near to far), with a burst of
  broadband noise from the muzzle's gases;
- sometimes a supersonic bullet's N-wave crack arriving before the blast;
- a ground reflection a fraction of a millisecond to a few milliseconds after the direct sound;
- air absorption over distance (a low-pass), and the place: a diffuse reverberant tail and a few
  discrete echoes (a tree line, a building, a hillside);
- sometimes a burst of automatic fire.
The pulse is drawn at three times the sample rate and decimated, so its instant rise does not alias.
A synthetic shot then goes through the same augmentation as a recorded one (placement, mixing at low
SNR, band-limiting, microphone colouring, level, clipping).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from models.training.augment import log_uniform
from models.training.data import SAMPLE_RATE

OVERSAMPLE = 3
LENGTH_S = 1.5
LEAD_S = 0.1  # silence before the first sound, so a leading crack or a burst fits
BLAST_MS = (0.3, 5.0)  # positive phase of the muzzle blast, drawn log-uniform
DECAY = (0.5, 4.0)  # Friedlander decay constant
NEGATIVE_PHASE_SPAN = 10.0  # the pulse is drawn until this many decay lengths past its positive phase
P_CRACK = 0.35
CRACK_MS = (0.15, 0.6)
CRACK_LEAD_MS = (3.0, 80.0)
CRACK_GAIN = (0.2, 1.5)  # against the blast's peak
GROUND_DELAY_MS = (0.1, 6.0)
GROUND_GAIN = (0.2, 0.9)
# The muzzle's hot gases: a burst of broadband noise with the blast, its energy against the blast's.
GAS_DECAY_MS = (1.0, 20.0)
GAS_DB = (-10.0, 10.0)
ABSORPTION_HZ = (1000.0, 7500.0)  # first-order low-pass corner, drawn log-uniform: far to near
# Energies against the direct sound's: dense early reflections (ground, trees, walls within a few
# metres) give a recorded shot its tens of milliseconds of body; the late tail is the place's.
EARLY_RT60_S = (0.03, 0.15)
EARLY_DB = (-12.0, 3.0)
TAIL_RT60_S = (0.2, 2.5)
TAIL_DB = (-25.0, 3.0)
TAIL_SPAN = 1.5  # reflections are drawn to 1.5 RT60 (-90 dB), below any noise floor
TAIL_DARKER = 0.5  # the reflections' low-pass corner against the direct sound's
ECHOES = (0, 4)
ECHO_DELAY_S = (0.04, 0.6)
ECHO_GAIN = (0.05, 0.5)
P_BURST = 0.25
BURST_SHOTS = (2, 6)
BURST_INTERVAL_S = (0.06, 0.35)  # 1000 rounds a minute to rapid single shots
BURST_JITTER = (0.7, 1.0)  # each shot's level in a burst, against the first


def friedlander(rng: np.random.Generator, fs: int) -> np.ndarray:
    """p(t) = (1 - t/T) exp(-b t/T): the blast wave of an explosion, here the muzzle's."""
    positive = log_uniform(rng, *BLAST_MS) / 1000.0
    decay = rng.uniform(*DECAY)
    t = np.arange(int(positive * (1.0 + NEGATIVE_PHASE_SPAN / decay) * fs) + 2) / fs
    return (1.0 - t / positive) * np.exp(-decay * t / positive)


def crack(rng: np.random.Generator, fs: int) -> np.ndarray:
    """A bullet's N-wave: a jump up, a linear fall through zero, a jump back."""
    return np.linspace(1.0, -1.0, max(2, int(rng.uniform(*CRACK_MS) / 1000.0 * fs)))


def muzzle_gas(rng: np.random.Generator, fs: int) -> np.ndarray:
    """Exponentially decaying white noise, of a random energy (against 1)."""
    decay = rng.uniform(*GAS_DECAY_MS) / 1000.0
    t = np.arange(int(5 * decay * fs)) / fs
    noise = rng.standard_normal(t.shape[0]) * np.exp(-t / decay)
    return noise * 10 ** (rng.uniform(*GAS_DB) / 20) / (np.sqrt(np.sum(noise**2)) + 1e-12)


def direct_sound(rng: np.random.Generator, fs: int) -> np.ndarray:
    """One shot as it reaches the microphone straight and off the ground, at `fs`."""
    out = np.zeros(int(LENGTH_S * fs))
    blast_at = int(LEAD_S * fs)
    blast = friedlander(rng, fs)
    out[blast_at : blast_at + blast.shape[0]] += blast
    gas = muzzle_gas(rng, fs) * np.sqrt(np.sum(blast**2))
    out[blast_at : blast_at + gas.shape[0]] += gas
    if rng.random() < P_CRACK:
        n_wave = crack(rng, fs) * rng.uniform(*CRACK_GAIN)
        crack_at = max(0, blast_at - int(rng.uniform(*CRACK_LEAD_MS) / 1000.0 * fs))
        out[crack_at : crack_at + n_wave.shape[0]] += n_wave
    delay = int(rng.uniform(*GROUND_DELAY_MS) / 1000.0 * fs)
    out[delay:] += rng.uniform(*GROUND_GAIN) * out[: out.shape[0] - delay]
    return out


def reflections(rng: np.random.Generator, rt60_range: tuple, energy_db: tuple, corner_hz: float) -> np.ndarray:
    """Exponentially decaying, low-passed noise of a random length and energy (direct sound = 1)."""
    rt60 = rng.uniform(*rt60_range)
    n = int(TAIL_SPAN * rt60 * SAMPLE_RATE)
    noise = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / SAMPLE_RATE / rt60)
    noise = signal.sosfilt(signal.butter(2, corner_hz, "low", fs=SAMPLE_RATE, output="sos"), noise)
    return noise * 10 ** (rng.uniform(*energy_db) / 20) / (np.sqrt(np.sum(noise**2)) + 1e-12)


def place_response(rng: np.random.Generator, corner_hz: float) -> np.ndarray:
    """The direct path, early reflections, a late tail and a few discrete echoes, at SAMPLE_RATE."""
    early = reflections(rng, EARLY_RT60_S, EARLY_DB, corner_hz * TAIL_DARKER)
    tail = reflections(rng, TAIL_RT60_S, TAIL_DB, corner_hz * TAIL_DARKER)
    response = np.zeros(max(tail.shape[0], int(ECHO_DELAY_S[1] * SAMPLE_RATE) + 1))
    response[: early.shape[0]] += early
    response[: tail.shape[0]] += tail
    response[0] = 1.0
    for _ in range(rng.integers(ECHOES[0], ECHOES[1] + 1)):
        response[int(rng.uniform(*ECHO_DELAY_S) * SAMPLE_RATE)] += rng.uniform(*ECHO_GAIN)
    return response


def gunshot(rng: np.random.Generator) -> np.ndarray:
    """LENGTH_S seconds of float32 audio at SAMPLE_RATE holding one shot or a burst, peak 1."""
    fs = SAMPLE_RATE * OVERSAMPLE
    dry = direct_sound(rng, fs)
    if rng.random() < P_BURST:
        single, interval = dry.copy(), int(rng.uniform(*BURST_INTERVAL_S) * fs)
        for k in range(1, rng.integers(BURST_SHOTS[0], BURST_SHOTS[1] + 1)):
            if k * interval >= dry.shape[0]:
                break
            dry[k * interval :] += rng.uniform(*BURST_JITTER) * single[: dry.shape[0] - k * interval]
    dry = signal.resample_poly(dry, 1, OVERSAMPLE)
    corner = log_uniform(rng, *ABSORPTION_HZ)
    dry = signal.sosfilt(signal.butter(1, corner, "low", fs=SAMPLE_RATE, output="sos"), dry)
    heard = signal.fftconvolve(dry, place_response(rng, corner))[: dry.shape[0]]
    return (heard / (np.max(np.abs(heard)) + 1e-12)).astype(np.float32)
