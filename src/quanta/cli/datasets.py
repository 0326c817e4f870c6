"""Turning ``--data`` / ``--calibration`` values into arrays."""

from __future__ import annotations

from pathlib import Path

import onnx

from quanta.data import load_mnist, load_npz
from quanta.errors import DataError
from quanta.runtime import EvalSet

__all__ = ["eval_set", "is_mnist_shaped", "DEFAULT_CALIBRATION_SAMPLES"]

# NOTE: LeNet's ranges are stable from a few hundred images; 500 is what the classic workflow's
# representative dataset typically used and calibrates in well under a second.
DEFAULT_CALIBRATION_SAMPLES = 500


def eval_set(value: str, input_names: list[str] | None = None) -> EvalSet:
    """``mnist`` (bundled test set), an MNIST IDX directory (its test split), or an .npz file."""
    if value == "mnist":
        ds = load_mnist()
        return EvalSet({"image": ds.test.images}, ds.test.labels, "MNIST t10k (bundled)")
    path = Path(value)
    if path.is_dir():
        ds = load_mnist(path)
        return EvalSet({"image": ds.test.images}, ds.test.labels, f"MNIST t10k in {path}")
    if path.suffix == ".npz" or path.is_file():
        names = input_names if input_names and len(input_names) > 1 else None
        inputs, labels = load_npz(path, input_names=names)
        return EvalSet(inputs, labels, str(path))
    raise DataError(
        f"--data {value!r} is neither 'mnist', an MNIST directory, nor an .npz file; "
        "expected one of those"
    )


def is_mnist_shaped(model: onnx.ModelProto) -> bool:
    """One float input of shape (N, 1, 28, 28): the bundled digits can calibrate it."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        return False
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return t.elem_type == onnx.TensorProto.FLOAT and len(dims) == 4 and dims[1:] == [1, 28, 28]
