"""Run by benchmarks/tflite_vs_tf.py with a Python that has TensorFlow (never quanta's own
dependency): builds the Keras LeNet equal to quanta's, loads the same float weights, and
converts it with TensorFlow's own full-integer post-training quantization.

    python tf_convert_lenet.py WEIGHTS.npz CALIB.npz OUT.tflite

WEIGHTS.npz: quanta's PyTorch state dict as arrays (conv1.weight, ...); CALIB.npz: ``images``
(N, 1, 28, 28) float32 in [0, 1], the representative dataset.
"""

from __future__ import annotations

import sys

import numpy as np
import tensorflow as tf


def main() -> None:
    weights_path, calib_path, out_path = sys.argv[1:4]
    w = dict(np.load(weights_path))
    calib = np.load(calib_path)["images"].transpose(0, 2, 3, 1)  # NHWC
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        layers.Conv2D(32, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(1024, activation="relu"),
        layers.Dense(10),
    ])  # fmt: skip
    conv1, conv2, fc1, fc2 = (model.layers[i] for i in (0, 2, 5, 6))
    conv1.set_weights([w["conv1.weight"].transpose(2, 3, 1, 0), w["conv1.bias"]])
    conv2.set_weights([w["conv2.weight"].transpose(2, 3, 1, 0), w["conv2.bias"]])
    # PyTorch flattens (C, H, W), Keras (H, W, C): reorder fc1's input columns
    fc1_w = w["fc1.weight"].reshape(1024, 64, 7, 7).transpose(0, 2, 3, 1).reshape(1024, -1)
    fc1.set_weights([fc1_w.T, w["fc1.bias"]])
    fc2.set_weights([w["fc2.weight"].T, w["fc2.bias"]])

    def representative():  # type: ignore[no-untyped-def]
        for i in range(len(calib)):
            yield [calib[i : i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data = converter.convert()
    with open(out_path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
