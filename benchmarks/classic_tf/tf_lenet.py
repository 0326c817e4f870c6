"""Run by benchmarks/classic_tf.py in a Python with TensorFlow (never quanta's own dependency):
the classic TensorFlow workflow on the classic Keras LeNet.

    python tf_lenet.py train DATA.npz OUT_DIR [--epochs N] [--seed S]
    TF_USE_LEGACY_KERAS=1 python tf_lenet.py qat DATA.npz OUT_DIR [--seed S]

``train`` (Keras 3): trains LeNet (conv 5x5x32, pool, conv 5x5x64, pool, fc 1024, dropout, fc
10; NHWC input (N, 28, 28, 1) in [0, 1], logits out; Adam, seeded), saves ``lenet.keras`` and
``lenet_weights.npz`` and converts it with TensorFlow's TFLite converter: ``tf_float.tflite``
(no optimization), ``tf_fp16.tflite`` (``supported_types=[tf.float16]``), ``tf_dynamic.tflite``
(``optimizations=[DEFAULT]``, dynamic range) and ``tf_int8.tflite`` (full integer: the
calibration digits as representative dataset, TFLITE_BUILTINS_INT8, uint8 input and output as
in the classic tutorial).

``qat`` (Keras 2 through tf-keras, which tensorflow-model-optimization needs): the same LeNet
with the trained weights, ``tfmot.quantization.keras.quantize_model``, fine-tuned one epoch,
converted with ``optimizations=[DEFAULT]`` and uint8 input and output: ``tf_qat.tflite``.

DATA.npz: ``train_x`` (N, 28, 28, 1) float32, ``train_y`` (N,) int64, ``calib_x`` (M, 28, 28, 1).
Prints one JSON line with the versions used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


def build(layers, keras):  # type: ignore[no-untyped-def]
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )


def representative(calib: np.ndarray):  # type: ignore[no-untyped-def]
    def gen():  # type: ignore[no-untyped-def]
        for i in range(len(calib)):
            yield [calib[i : i + 1].astype(np.float32)]

    return gen


def converter_for(model):  # type: ignore[no-untyped-def]
    return tf.lite.TFLiteConverter.from_keras_model(model)


def train(data: dict[str, np.ndarray], out: Path, epochs: int, seed: int) -> dict[str, str]:
    import keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build(keras.layers, keras)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(data["train_x"], data["train_y"], epochs=epochs, batch_size=64, verbose=2)
    model.save(out / "lenet.keras")
    np.savez(out / "lenet_weights.npz", *model.get_weights())

    conv = converter_for(model)
    (out / "tf_float.tflite").write_bytes(conv.convert())
    conv = converter_for(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    (out / "tf_fp16.tflite").write_bytes(conv.convert())
    conv = converter_for(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    (out / "tf_dynamic.tflite").write_bytes(conv.convert())
    conv = converter_for(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(data["calib_x"])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    (out / "tf_int8.tflite").write_bytes(conv.convert())
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def qat(data: dict[str, np.ndarray], out: Path, seed: int) -> dict[str, str]:
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build(keras.layers, keras)
    weights = np.load(out / "lenet_weights.npz")
    model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    q_model = tfmot.quantization.keras.quantize_model(model)
    q_model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    q_model.fit(data["train_x"], data["train_y"], epochs=1, batch_size=64, verbose=2)
    conv = tf.lite.TFLiteConverter.from_keras_model(q_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    (out / "tf_qat.tflite").write_bytes(conv.convert())
    return {"tf_keras": keras.__version__, "tfmot": tfmot.__version__}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["train", "qat"])
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = dict(np.load(args.data))
    out = Path(args.out)
    if args.stage == "qat" and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        print("the qat stage needs TF_USE_LEGACY_KERAS=1 (tfmot runs on tf-keras)", file=sys.stderr)
        return 2
    versions = (
        train(data, out, args.epochs, args.seed)
        if args.stage == "train"
        else qat(data, out, args.seed)
    )
    print(json.dumps(versions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
