"""The forms of data ``quanta.quantize`` accepts (an ``.npz`` path, a dict of arrays, one
array, an iterable of batches: tensors, ``(x, y)`` pairs, dicts), made into one array per model
input, and the check that 4-D images come in the channel order the model takes.

Imports only NumPy at module level, so that ``import quanta`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from quanta.errors import DataError

if TYPE_CHECKING:
    import onnx

    from quanta.runtime import EvalSet

__all__ = ["arrays_of", "check_layout", "eval_set_of"]


def check_layout(
    model: onnx.ModelProto, arrays: Mapping[str, Any], what: str = "calibration"
) -> None:
    """Raise one line when a 4-D input gets images in the other channel order: NCHW arrays for
    an NHWC model (a Keras or ``.tflite`` one), or NHWC arrays for an NCHW model."""
    from quanta.data.layout import layout_mismatch

    for value in model.graph.input:
        array = arrays.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if array is None or len(dims) != 4 or getattr(array, "ndim", 0) != 4:
            continue
        expected = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if None in expected[1:] or [*array.shape[1:]] == expected[1:]:
            continue  # NOTE: a free dimension says nothing about the layout
        line = layout_mismatch(what, value.name, array.shape, expected)
        if line:  # NOTE: another mismatch: calibration's own shape check names it
            raise DataError(line)


def eval_set_of(value: Any, names: list[str], on_note: Callable[[str], None]) -> EvalSet:
    from quanta.runtime import EvalSet

    if isinstance(value, (str, os.PathLike)):
        from quanta.cli.datasets import eval_set

        return eval_set(os.fspath(value), names)
    arrays, labels = arrays_of(value, names, "eval", on_note)
    return EvalSet(arrays, labels, "eval= data")


def arrays_of(
    value: Any, names: list[str], what: str, on_note: Callable[[str], None]
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One array per model input (and labels, where the data holds them) from any accepted form."""
    if isinstance(value, (str, os.PathLike)):
        from quanta.data import load_npz

        return load_npz(value, input_names=names, stream=True, on_note=on_note)
    if isinstance(value, Mapping):
        return {k: _numpy(v) for k, v in value.items()}, None
    if _is_array(value):
        return _single(names, _numpy(value), what), None
    if isinstance(value, Iterable):
        return _concatenated(value, names, what)
    raise DataError(
        f"{what} data is a {type(value).__name__}; expected an .npz path, a dict of arrays, one "
        "array or an iterable of batches"
    )


def _concatenated(
    batches: Iterable[Any], names: list[str], what: str
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Batches (arrays, ``(x, y)`` pairs or dicts) joined along axis 0."""
    parts: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            if len(batch) > 1:
                labels.append(_numpy(batch[1]))
            batch = batch[0]
        arrays = (
            {k: _numpy(v) for k, v in batch.items()}
            if isinstance(batch, Mapping)
            else _single(names, _numpy(batch), what)
        )
        for k, v in arrays.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise DataError(f"{what} data yielded no batches; expected at least one")
    joined = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
    return joined, (np.concatenate(labels).astype(np.int64) if labels else None)


def _single(names: list[str], array: np.ndarray, what: str) -> dict[str, np.ndarray]:
    if len(names) != 1:
        raise DataError(
            f"{what} data is one array but the model has {len(names)} inputs {names}; "
            "expected a dict keyed by input name"
        )
    return {names[0]: array}


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "numpy") and hasattr(value, "shape")


def _numpy(value: Any) -> np.ndarray:
    """An array; a torch tensor through ``.numpy()`` (detached, on the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)
