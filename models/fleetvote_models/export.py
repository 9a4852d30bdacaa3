"""``fleetvote export``: Keras weights -> full-integer int8 ``.tflite`` in the zoo.

Always runs on the TensorFlow backend (the converter needs it), whatever backend trained the
weights: the architecture is rebuilt from the run's recipe and the best weights loaded into it.

The contract every later stage relies on, asserted here:

* input int8, scale 1/255, zero point -128: the model's float input is pixel / 255, so the
  quantised input byte is ``round(pixel / 255 / (1/255)) - 128 = pixel - 128``;
* output int8, scale 1/256, zero point -128: TFLite's int8 softmax;
* weights int8 per output channel (dense layers included), biases int32, activations int8.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from fleetvote.errors import ModelError

INPUT_SCALE = 1 / 255
INPUT_ZERO_POINT = -128
OUTPUT_SCALE = 1 / 256
OUTPUT_ZERO_POINT = -128


def check_io_quantisation(tflite_bytes: bytes) -> None:
    """Raise ModelError unless input and output follow the contract above."""
    from fleetvote.engine.loader import load_model_bytes

    model = load_model_bytes(tflite_bytes, check_ops=False)
    i, o = model.input, model.output
    i_scale, i_zp = float(i.scale[0]), int(i.zero_point[0])
    o_scale, o_zp = float(o.scale[0]), int(o.zero_point[0])
    problems = []
    if not (np.isclose(i_scale, INPUT_SCALE, rtol=1e-6) and i_zp == INPUT_ZERO_POINT):
        problems.append(f"input quantisation is scale {i_scale:.8g}, zero point {i_zp}; "
                        f"expected 1/255 and -128 (the model's float input must be pixel/255, "
                        f"with no rescaling layer inside and calibration images in [0, 1])")
    if not (np.isclose(o_scale, OUTPUT_SCALE, rtol=1e-6) and o_zp == OUTPUT_ZERO_POINT):
        problems.append(f"output quantisation is scale {o_scale:.8g}, zero point {o_zp}; "
                        f"expected the int8 softmax's 1/256 and -128 (does the model end in softmax?)")
    if problems:
        raise ModelError("; ".join(problems))


def convert(model, calibration: np.ndarray, per_channel_dense: bool = True) -> bytes:
    """Quantise a Keras model; ``calibration`` is float input (already / 255)."""
    import tensorflow as tf

    def representative():
        for i in range(calibration.shape[0]):
            yield [calibration[i : i + 1]]

    import keras

    # a fixed batch of 1: with a dynamic batch, Flatten exports as SHAPE/STRIDED_SLICE/PACK
    # operators that compute the shape at run time; a board only ever sees one image
    inp = keras.Input(tuple(model.input_shape[1:]), batch_size=1, name="image")
    fixed = keras.Model(inp, model(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    # per-channel weights for dense layers too (the converter's default in TF >= 2.16; explicit
    # here because the engine and the firmware are written for per-channel everywhere)
    conv._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
    return conv.convert()


def export_run(run: Path, model_id: str, zoo: Path, role: str = "member",
               data: str | None = None, calibration: int = 1000) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    from fleetvote.data import load_split

    from .archs import build

    run_info = json.loads((run / "run.json").read_text())
    recipe = run_info["recipe"]
    model = build(recipe["arch"])
    weights = run / "best.weights.h5"
    if not weights.exists():
        raise ModelError(f"{weights}: missing; has `fleetvote train --out {run}` finished an epoch?")
    model.load_weights(weights)

    tr = load_split("train", data)
    rng = np.random.default_rng(12345)
    pick = rng.choice(len(tr), size=min(calibration, len(tr)), replace=False)
    blob = convert(model, tr.x[pick].astype(np.float32) / 255.0)
    check_io_quantisation(blob)

    dest = zoo / model_id
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.tflite").write_bytes(blob)
    train_info = {
        "id": model_id, "role": role, "arch": recipe["arch"], "seed": recipe["seed"],
        "epochs": run_info["epoch"], "best_epoch": run_info["best_epoch"],
        "train_seconds": run_info["train_seconds"],
        "float_val_accuracy": run_info["best_val_accuracy"],
        "recipe": {k: v for k, v in recipe.items() if k not in ("arch", "seed")},
        "calibration": f"{calibration} seeded training images",
    }
    (dest / "train.json").write_text(json.dumps(train_info, indent=2) + "\n")
    log = run / "log.jsonl"
    if log.exists():
        shutil.copy(log, dest / "train_log.jsonl")
    from fleetvote.offline.cards import write_card

    return write_card(dest, data=data)
