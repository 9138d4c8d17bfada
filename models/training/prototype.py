"""The 2019 prototype's design, re-created as a baseline (never part of the product).

Source: Morehead et al., "Low Cost Gunshot Detection using Deep Learning on the Raspberry Pi",
IEEE BigData 2019; code at github.com/gabemagee/gunshot_detection (models in
`python/Alex/1D CNN/gunshot_1d_cnn_alex.py` and `python/Alex/2D CNN/gunshot_2d_cnn_alex.py`,
features and the 2-of-3 vote in `raspberry_pi/gunshot_detection.py`). Three float Keras models
on a non-overlapping 2 s window, each with a 2-way softmax (index 1 = gunshot, threshold 0.5),
and a gunshot when at least two agree:

- `wave_1d`: 1D CNN on the raw waveform (Conv1D 16-16 k9, pool 16, 32-32 k3, pool 4, 32-32 k3,
  pool 4, 256-256 k3, global max pool, Dense 64, Dense 1028, softmax; dropouts as published).
- `mel_128x64` and `mel_128x128`: the same 2D CNN (Conv2D 32, pool 3; 64-64, pool 2; 128-128,
  pool 2; each with ReLU and batch norm; Dense 1024; softmax) on 128-band mel power spectrograms
  in dB (ref 1.0, top_db 80) with a hop of 690 and 345 samples.

Adapted to our 16 kHz input, everything else kept (sizes, layers, dropouts, features):
- the prototype worked at 22 050 Hz (2 s = 44 100 samples); here 2 s = 32 000 samples;
- hops and FFT length scaled by 16000/22050 so that the frames keep their duration and the
  spectrograms keep their published shapes (hop 690 -> 501, 345 -> 251, n_fft 2560 -> 1858), and
  the mel range is 20 Hz to Nyquist (8 kHz instead of 11 kHz);
- Keras 3 layers instead of TF1 Keras (same layer types and arguments); the volume gate (skip a
  window whose peak is under 0.01) and noise reduction of the Pi script are not part of the models.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
PROTOTYPE_WINDOW_S = 2.0
WINDOW_SAMPLES = round(PROTOTYPE_WINDOW_S * SAMPLE_RATE)
PROTOTYPE_RATE = 22050
N_MELS = 128
N_FFT = round(128 * 20 * SAMPLE_RATE / PROTOTYPE_RATE)  # the prototype: NUMBER_OF_MELS * 20 at 22.05 kHz
FMIN = 20.0
TOP_DB = 80.0
THRESHOLD = 0.5  # MODEL_CONFIDENCE_THRESHOLD of the prototype
VOTES_REQUIRED = 2
# Mel hop per model, scaled from the prototype's 690 and 345 samples at 22.05 kHz; with librosa's
# centred frames they give the published 64 and 128 frames per 2 s window.
MEL_HOPS = {"mel_128x64": 501, "mel_128x128": 251}
MODEL_IDS = ("wave_1d", *MEL_HOPS)


def _wave_model():
    import keras
    from keras import layers

    inputs = keras.Input(shape=(WINDOW_SAMPLES, 1))
    x = inputs
    for filters, kernel, pool in ((16, 9, 16), (32, 3, 4), (32, 3, 4)):
        x = layers.Conv1D(filters, kernel, activation="relu", padding="same")(x)
        x = layers.Conv1D(filters, kernel, activation="relu", padding="same")(x)
        x = layers.MaxPool1D(pool)(x)
        x = layers.Dropout(0.5)(x)
    x = layers.Conv1D(256, 3, activation="relu", padding="same")(x)
    x = layers.Conv1D(256, 3, activation="relu", padding="same")(x)
    x = layers.GlobalMaxPool1D()(x)
    x = layers.Dropout(0.75)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(1028, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x), name="wave_1d")


def _mel_model(name: str, frames: int):
    import keras
    from keras import layers

    def conv(x, filters):
        x = layers.Conv2D(filters, (3, 3), padding="same", activation="relu")(x)
        return layers.BatchNormalization(axis=-1)(x)

    inputs = keras.Input(shape=(N_MELS, frames, 1))
    x = layers.MaxPooling2D((3, 3))(conv(inputs, 32))
    x = layers.Dropout(0.25)(x)
    for filters in (64, 128):
        x = layers.MaxPooling2D((2, 2))(conv(conv(x, filters), filters))
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(layers.Dense(1024, activation="relu")(x))
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x), name=name)


def mel_frames(hop: int) -> int:
    """Frames of a centred librosa spectrogram over one window."""
    return WINDOW_SAMPLES // hop + 1


def build_prototype_models() -> dict:
    """The three float Keras models at their published sizes (uncompiled), keyed by MODEL_IDS."""
    models = {"wave_1d": _wave_model()}
    for name, hop in MEL_HOPS.items():
        models[name] = _mel_model(name, mel_frames(hop))
    return models


def fit_window(window: np.ndarray) -> np.ndarray:
    """A window cut or zero-padded to exactly 2 s, as float32."""
    window = np.asarray(window, dtype=np.float32)[:WINDOW_SAMPLES]
    return np.pad(window, (0, WINDOW_SAMPLES - window.shape[0]))


def prototype_features(window: np.ndarray) -> dict[str, np.ndarray]:
    """Each model's input for one 16 kHz window (no batch axis): the waveform (32000, 1) and the
    mel spectrograms in dB (128, 64, 1) and (128, 128, 1), computed with librosa as the prototype did."""
    import librosa

    window = fit_window(window)
    features = {"wave_1d": window[:, None]}
    for name, hop in MEL_HOPS.items():
        power = librosa.feature.melspectrogram(
            y=window,
            sr=SAMPLE_RATE,
            n_fft=N_FFT,
            hop_length=hop,
            n_mels=N_MELS,
            fmin=FMIN,
            fmax=SAMPLE_RATE / 2,
        )
        features[name] = librosa.power_to_db(power, ref=1.0, top_db=TOP_DB).astype(np.float32)[..., None]
    return features


def prototype_vote(gunshot_probs: dict[str, float]) -> bool:
    """The prototype's majority rule: a gunshot when two of the three models say >= 0.5."""
    return sum(p >= THRESHOLD for p in gunshot_probs.values()) >= VOTES_REQUIRED
