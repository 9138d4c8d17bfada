"""The three CNNs, sized for a Raspberry Pi 3B+ (under ten million multiply-adds per window each)."""

from __future__ import annotations

import keras
from keras import layers, ops

WAVE_SAMPLES = 16000
DROPOUT = 0.3
MEL_DROPOUT = 0.5  # the mel models overfit the training sources sooner than the waveform model
# Filters per conv block. Measured on validation, from 16-32-48-64 to these: window AUC of the
# waveform model 0.979 -> 0.986, of the mel models about even (0.971 -> 0.965, 0.956 -> 0.959), but
# the ensemble's clip recall at the false-alert target rose (0.51 -> 0.61 with the wide wave model).
WAVE_FILTERS = (24, 48, 64, 96)
MEL_FILTERS = (24, 48, 64, 96)


@keras.saving.register_keras_serializable(package="gunshot")
class PeakNormalize(layers.Layer):
    """Divides a window by its peak: the waveform model sees the shape, not the microphone gain."""

    def call(self, x):
        return x / (ops.max(ops.abs(x), axis=1, keepdims=True) + 1e-3)


@keras.saving.register_keras_serializable(package="gunshot")
class BandMeanRemoval(layers.Layer):
    """A second view of a log-mel patch with each band's mean over time removed (stationary
    colouring of the microphone and the background gone), stacked as a channel."""

    def __init__(self, mean: float = -50.0, std: float = 20.0, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = float(mean), float(std)

    def call(self, x):
        level = (x - self.mean) / self.std
        contrast = (x - ops.mean(x, axis=1, keepdims=True)) / self.std
        return ops.stack([level, contrast], axis=-1)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="gunshot")
class SpecMask(layers.Layer):
    """SpecAugment-style masking while training (one band of frames, one band of mels per example,
    each up to `max_fraction` wide, set to the patch mean); the identity at inference and export."""

    def __init__(self, max_fraction: float = 0.15, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.max_fraction = float(max_fraction)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        batch, frames, mels = ops.shape(x)[0], x.shape[1], x.shape[2]

        def band(length: int, shape):
            start = keras.random.uniform(shape, 0.0, 1.0, seed=self.seed_generator) * length
            width = keras.random.uniform(shape, 0.0, self.max_fraction, seed=self.seed_generator) * length
            return start, start + width

        t0, t1 = band(frames, (batch, 1, 1))
        f0, f1 = band(mels, (batch, 1, 1))
        t = ops.cast(ops.reshape(ops.arange(frames), (1, frames, 1)), x.dtype)
        f = ops.cast(ops.reshape(ops.arange(mels), (1, 1, mels)), x.dtype)
        mask = ops.logical_or(ops.logical_and(t >= t0, t < t1), ops.logical_and(f >= f0, f < f1))
        return ops.where(mask, ops.mean(x, axis=(1, 2), keepdims=True), x)

    def get_config(self):
        return {**super().get_config(), "max_fraction": self.max_fraction, "seed": self.seed}


def _conv_block(y, filters: int, kernel, conv, pool=None, strides=1):
    y = conv(filters, kernel, strides=strides, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    return pool(y) if pool is not None else y


def _head(y, pools, dropout: float = DROPOUT):
    y = layers.Concatenate()([pool()(y) for pool in pools])
    y = layers.Dropout(dropout)(y)
    return layers.Dense(1, activation="sigmoid", name="gunshot")(y)


def wave_model() -> keras.Model:
    x = keras.Input((WAVE_SAMPLES,), name="waveform")
    y = layers.Reshape((WAVE_SAMPLES, 1))(PeakNormalize()(x))
    f1, f2, f3, f4 = WAVE_FILTERS
    y = _conv_block(y, f1, 32, layers.Conv1D, layers.MaxPooling1D(4), strides=8)
    y = _conv_block(y, f2, 9, layers.Conv1D, layers.MaxPooling1D(4))
    y = _conv_block(y, f3, 5, layers.Conv1D, layers.MaxPooling1D(2))
    y = _conv_block(y, f4, 3, layers.Conv1D)
    return keras.Model(x, _head(y, [layers.GlobalMaxPooling1D, layers.GlobalAveragePooling1D]), name="wave")


def mel_model(name: str, frames: int, mels: int, mean: float, std: float) -> keras.Model:
    x = keras.Input((frames, mels), name="logmel")
    y = BandMeanRemoval(mean, std)(SpecMask()(x))
    f1, f2, f3, f4 = MEL_FILTERS
    y = _conv_block(y, f1, 3, layers.Conv2D, layers.MaxPooling2D(2), strides=2)
    y = _conv_block(y, f2, 3, layers.Conv2D, layers.MaxPooling2D(2))
    y = _conv_block(y, f3, 3, layers.Conv2D, layers.MaxPooling2D(2))
    y = _conv_block(y, f4, 3, layers.Conv2D)
    head = _head(y, [layers.GlobalMaxPooling2D, layers.GlobalAveragePooling2D], MEL_DROPOUT)
    return keras.Model(x, head, name=name)


def count_macs(model: keras.Model) -> int:
    """Multiply-adds of the convolutions and dense layers for one window."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a model inside this one: its multiply-adds once per call
            total += count_macs(layer) * len(layer._inbound_nodes)
        elif isinstance(layer, layers.Conv1D | layers.Conv2D | layers.Dense):
            kernel = layer.kernel.shape
            out = layer.output.shape[1:-1]
            positions = 1
            for d in out:
                positions *= d
            fan = 1
            for d in kernel:
                fan *= d
            total += positions * fan
    return int(total)
