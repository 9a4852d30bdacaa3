"""The numpy engine against TFLite Micro's reference kernels, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need_module, zoo_models
from fleetvote.engine import Engine, load_model_bytes
from fleetvote.engine.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from fleetvote.engine.kernels import K_CHUNK, exact_matmul
from fleetvote.errors import ModelFormatError, UnsupportedModel


@pytest.fixture(scope="module")
def synth():
    need_module("tensorflow")
    need_module("tflite_micro")
    import synth as s

    return s


def _oracle(blob: bytes, q: np.ndarray) -> np.ndarray:
    from fleetvote.offline.oracle import MicroInterpreter

    return MicroInterpreter(blob).run_quantized(q)


# --- fixed-point primitives, against values worked out by hand from common.h ----------------

def test_rounding_divide_by_pot_rounds_half_away_from_zero():
    x = np.array([5, -5, 6, -6, 7, -7, 4, -4])
    assert list(rounding_divide_by_pot(x, 1)) == [3, -3, 3, -3, 4, -4, 2, -2]


def test_srdhm_saturates_only_min_times_min():
    m = -(1 << 31)
    assert saturating_rounding_doubling_high_mul(np.array([m]), m)[0] == (1 << 31) - 1
    # (2^30 * 2^30 * 2) >> 32 = 2^29, and a negative product truncates toward zero after the nudge
    assert saturating_rounding_doubling_high_mul(np.array([1 << 30]), 1 << 30)[0] == 1 << 29
    assert saturating_rounding_doubling_high_mul(np.array([-3]), 1 << 30)[0] == -1


def test_quantize_multiplier_renormalises_the_rounding_overflow():
    q, s = quantize_multiplier(0.5)
    assert (q, s) == (1 << 30, 0)
    q, s = quantize_multiplier(1 - 2 ** -40)  # rounds up to 2^31: renormalised
    assert (q, s) == (1 << 30, 1)
    assert quantize_multiplier(2 ** -40) == (0, 0)


def test_multiply_by_quantized_multiplier_matches_real_product():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, 1000)
    for m in (0.00123, 0.37, 0.999, 3.5):
        q, s = quantize_multiplier(m)
        got = multiply_by_quantized_multiplier(x, q, s)
        assert np.max(np.abs(got - x * m)) <= 1


def test_exact_matmul_is_exact_beyond_one_float32_chunk():
    k = 3 * K_CHUNK + 7
    a = np.full((2, k), -128, np.float32)
    b = np.full((k, 3), -128, np.float32)
    # k * 2^14 = 50,446,336 > 2^24: one float32 dot product would round; chunks must not
    assert exact_matmul(a, b)[0, 0] == k * 16384
    naive = (a.astype(np.float32) @ b.astype(np.float32))[0, 0]
    assert int(naive) == k * 16384 or True  # BLAS may or may not round; ours must be exact


# --- loading: what is rejected and how it is said ---------------------------------------------

def test_not_a_tflite_file_is_rejected_by_name():
    with pytest.raises(ModelFormatError, match="not a TFLite model"):
        load_model_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_truncated_model_is_rejected(synth):
    rng = np.random.default_rng(0)
    blob = synth.convert(synth.build("long_dense"), rng)
    for cut in (16, len(blob) // 3, len(blob) - 100):
        with pytest.raises(ModelFormatError):
            Engine.from_bytes(blob[:cut])


def test_float_model_is_rejected_naming_the_tensor(synth):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(synth.build("long_dense"))
    with pytest.raises(UnsupportedModel, match="float32"):
        Engine.from_bytes(conv.convert())


def test_unsupported_operator_is_rejected_naming_it(synth):
    import keras
    import tensorflow as tf

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Activation("tanh")(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    with pytest.raises(UnsupportedModel, match="TANH"):
        Engine.from_bytes(synth.convert(model, np.random.default_rng(0)))
    del tf


# --- synthetic models at the limits -------------------------------------------------------------

@pytest.mark.parametrize("kind,per_channel", [("long_conv", True), ("long_dense", True),
                                              ("long_dense", False), ("ops", True)])
def test_synthetic_model_is_bit_exact_at_the_extremes(synth, kind, per_channel):
    rng = np.random.default_rng(7)
    blob = synth.convert(synth.build(kind, seed=3), rng, per_channel_dense=per_channel)
    engine = Engine.from_bytes(blob)
    x = synth.probe_images(rng)
    q = engine.quantize_input(x)
    assert q[0].min() == -128 and q[1].max() == 127
    got, want = engine.run(x), _oracle(blob, q)
    assert np.array_equal(got, want), f"{(got != want).any(1).sum()} of {len(x)} outputs differ"


def test_synthetic_long_conv_really_reaches_the_chunk_limit(synth):
    blob = synth.convert(synth.build("long_conv"), np.random.default_rng(0))
    engine = Engine.from_bytes(blob)
    conv = engine.layers[0][1]
    second = next(k for op, k in engine.layers[1:] if op.opcode == "CONV_2D")
    # 3*3*128 = 1152 terms: more than K_CHUNK, so the split path is what the test exercised
    assert second.w.shape[0] == 1152 > K_CHUNK
    assert np.abs(conv.w).max() == 127


# --- the zoo --------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_dir", zoo_models(), ids=lambda p: p.name)
def test_zoo_model_is_bit_exact_on_test_images(model_dir, test_images):
    need_module("tflite_micro")
    blob = (model_dir / "model.tflite").read_bytes()
    engine = Engine.from_bytes(blob)
    x = test_images.x[::50]  # 200 images, every class
    got, want = engine.run(x), _oracle(blob, engine.quantize_input(x))
    assert np.array_equal(got, want), f"{(got != want).any(1).sum()} of {len(x)} outputs differ"


def test_single_image_and_batch_give_the_same_bytes(test_images):
    models = zoo_models()
    if not models:
        pytest.skip("no zoo model yet")
    engine = Engine.from_file(models[0] / "model.tflite")
    batch = engine.run(test_images.x[:5])
    assert np.array_equal(engine.run(test_images.x[3]), batch[3])
    p = engine.probabilities(batch)
    assert p.shape == (5, 10) and np.all(np.abs(p.sum(1) - 1) < 0.05)


def test_fast_requantizer_equals_the_reference_on_extremes():
    from fleetvote.engine.kernels import Requantizer, _requantize

    rng = np.random.default_rng(5)
    channels = 64
    # multipliers across the whole Q31 range and shifts from -31 to +7, as TFLite allows
    mult = rng.integers(1 << 30, (1 << 31) - 1, channels)
    mult[:4] = [1 << 30, (1 << 31) - 1, 0, 1 << 30]
    shift = rng.integers(-31, 8, channels)
    shift[:4] = [0, -31, -5, 7]
    acc = rng.integers(-(1 << 31), 1 << 31, (2000, channels))
    acc[:3] = [[-(1 << 31)], [(1 << 31) - 1], [0]]
    # ties: values exactly halfway after the high multiply
    acc[3:10] = (np.arange(-3, 4) * (1 << 20))[:, None]
    for lo, hi, zp in ((-128, 127, -3), (-128, 127, 127), (0, 127, -128)):
        want = _requantize(acc, mult, shift, zp, lo, hi)
        got = Requantizer(mult, shift, zp, lo, hi, channels)(acc.astype(np.int64).copy())
        assert np.array_equal(got, want)
