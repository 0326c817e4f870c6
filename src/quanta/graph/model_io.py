"""Loading and saving ONNX models, with the checks a file from the internet deserves."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import version_converter

from quanta._io import atomic_path
from quanta.errors import ModelError

__all__ = ["MIN_OPSET", "load_model", "save_model", "default_opset"]

# NOTE: per-channel QuantizeLinear/DequantizeLinear (the `axis` attribute) needs opset 13.
MIN_OPSET = 13


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ("" / "ai.onnx") domain the model imports."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    raise ModelError("model imports no default-domain opset; expected an ONNX opset import")


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read an ONNX file, check it, and upgrade it to opset >= 13 if it is older.

    Raises ModelError (one line naming the file and the problem) for a missing, empty, truncated
    or non-ONNX file and for a model that fails ``onnx.checker``.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {str(p)!r} does not exist; expected an .onnx file")
    if p.stat().st_size == 0:
        raise ModelError(f"model file {str(p)!r} is empty; expected an ONNX model")
    try:
        model = onnx.load_model(os.fspath(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for garbage input
        raise ModelError(f"{str(p)!r} is not an ONNX model (protobuf parse failed: {exc})") from exc
    if not model.graph.node:
        raise ModelError(f"{str(p)!r} holds no ONNX graph nodes; expected an ONNX model")
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ModelError(
            f"{str(p)!r} keeps weights in external data files; save it as one file "
            "(onnx.save_model(model, path, save_as_external_data=False))"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{str(p)!r} fails the ONNX checker: {first}") from exc
    opset = default_opset(model)
    if opset < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"{str(p)!r} uses opset {opset}; quanta needs >= {MIN_OPSET} and the upgrade "
                f"failed: {exc}"
            ) from exc
    return model


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` as one file, atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        onnx.save_model(model, os.fspath(tmp))
