"""Small synthetic int8 models, built with TensorFlow inside the tests, that push the engine to
the limits it claims: largest weight magnitudes, longest accumulations, every operator."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"


def _extreme(model, rng, scale=1.0):
    """Weights of one magnitude with random signs: per-channel quantisation maps them all to
    +-127, the largest products an int8 kernel can see."""
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([np.where(rng.random(w.shape) < 0.5, -scale, scale).astype(np.float32)
                               if w.ndim > 1 else rng.normal(0, 0.5, w.shape).astype(np.float32) for w in ws])
    return model


def calibration(rng, n=64):
    """Calibration images including the extremes (all 0, all 255) so ranges cover them."""
    x = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.float32)
    x[0], x[1] = 0, 255
    return x / 255.0


def build(kind: str, seed: int = 0):
    import keras
    from keras import layers

    rng = np.random.default_rng(seed)
    inp = keras.Input((32, 32, 3))
    if kind == "long_conv":  # 3x3x128 = 1152 terms per output: beyond one float32 chunk
        x = layers.Conv2D(128, 3, padding="same", activation="relu")(inp)
        x = layers.MaxPooling2D(4)(x)
        x = layers.Conv2D(16, 3, padding="same")(x)
        x = layers.GlobalAveragePooling2D()(x)
        out = layers.Dense(10, activation="softmax")(x)
    elif kind == "long_dense":  # 3072 terms per output
        x = layers.Flatten()(inp)
        x = layers.Dense(64, activation="relu")(x)
        out = layers.Dense(10, activation="softmax")(x)
    elif kind == "ops":  # every other operator: PAD, DEPTHWISE x2, AVG/MAX pool, ADD, RELU6, valid, stride
        x = layers.ZeroPadding2D(1)(inp)
        x = layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu6")(x)
        y = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
        z = layers.Conv2D(16, 1, padding="same")(x)
        x = layers.ReLU()(layers.Add()([y, z]))
        x = layers.AveragePooling2D(2, padding="same")(x)
        x = layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(x)
        x = layers.MaxPooling2D(3, strides=1, padding="same")(x)
        x = layers.GlobalAveragePooling2D()(x)
        out = layers.Dense(10, activation="softmax")(x)
    else:
        raise ValueError(kind)
    model = _extreme(keras.Model(inp, out), rng)
    return model


def convert(model, rng, per_channel_dense: bool = True) -> bytes:
    """The project's own exporter (fixed batch of 1, full int8), optionally per-tensor dense."""
    from fleetvote_models.export import convert as project_convert

    return project_convert(model, calibration(rng), per_channel_dense=per_channel_dense)


def probe_images(rng, n=24) -> np.ndarray:
    """all-0, all-255, checkerboards of the extremes, and uniform noise."""
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[0], x[1] = 0, 255
    x[2] = (np.indices((32, 32)).sum(0) % 2 * 255)[:, :, None]
    x[3] = 255 - x[2]
    return x
