"""A tiny Keras convnet, built in the test and saved as ``.keras``, ``.h5`` and a SavedModel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = (16, 16, 3)  # NHWC, as Keras has it


@dataclass
class KerasFiles:
    model: Any  # the keras.Model the files were saved from
    keras: Path
    h5: Path
    saved_model: Path


def tiny_convnet(seed: int = 0) -> Any:
    """Conv2D+ReLU, DepthwiseConv2D, ReLU6, max and average pooling, Dense, Softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(SHAPE, name="image"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same"),
            keras.layers.ReLU(6.0),
            keras.layers.MaxPooling2D(2),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
            keras.layers.Softmax(),
        ]
    )


def save_all(model: Any, folder: Path) -> KerasFiles:
    files = KerasFiles(model, folder / "m.keras", folder / "m.h5", folder / "saved_model")
    model.save(files.keras)
    model.save(files.h5)
    model.export(files.saved_model, verbose=False)
    return files


def images(n: int, seed: int = 1) -> np.ndarray:
    """Seeded NHWC images in [0, 1)."""
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


def two_input_net(seed: int = 0) -> Any:
    """Inputs "image" (8, 8, 3) and "extra" (4,): a Conv2D and a global mean beside a Dense,
    concatenated into a Dense head."""
    import keras

    keras.utils.set_random_seed(seed)
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(4, 3, activation="relu")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    y = keras.layers.Dense(4, activation="relu")(extra)
    out = keras.layers.Dense(3)(keras.layers.Concatenate()([x, y]))
    return keras.Model([image, extra], out)
