"""Data for quanta: MNIST (bundled or from IDX files) and ``.npz`` calibration inputs.

NumPy only; nothing is read until a function is called.
"""

from __future__ import annotations

from quanta.data.arrays import load_npz
from quanta.data.idx import read_idx
from quanta.data.mnist import bundled_dir, load_mnist, read_mnist_csv
from quanta.data.split import Dataset, Split, calibration_split

__all__ = [
    # top level API
    "Split",
    "Dataset",
    "load_mnist",
    "load_npz",
    "calibration_split",
    # building blocks
    "read_idx",
    "read_mnist_csv",
    "bundled_dir",
]
