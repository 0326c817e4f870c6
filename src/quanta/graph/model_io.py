"""Loading and saving ONNX models, with the checks a file from the internet deserves."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import version_converter

from quanta._io import atomic_path
from quanta.errors import ModelError
from quanta.graph.normalize import normalize, reachable_nodes

__all__ = ["MIN_OPSET", "load_model", "from_proto", "save_model", "default_opset"]

# NOTE: per-channel QuantizeLinear/DequantizeLinear (the `axis` attribute) needs opset 13.
MIN_OPSET = 13


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ("" / "ai.onnx") domain the model imports."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    raise ModelError("model imports no default-domain opset; expected an ONNX opset import")


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read an ONNX file, check it, upgrade it to opset >= 13 if it is older, and normalize it.

    A float ``.tflite`` file (by suffix, or "TFL3" at bytes 4..8) is imported instead by
    ``quanta.tflite.reader.tflite_to_onnx``: NHWC inputs and outputs, as the TFLite model has.

    Normalizing (``quanta.graph.normalize``, without folding) turns ``Constant`` nodes into
    initializers and drops the opset imports no node uses; a model with neither comes back as
    the file holds it.

    Raises ModelError (one line naming the file and the problem) for a missing, empty, truncated
    or non-ONNX file, for a model that fails ``onnx.checker`` and for one whose nodes use an
    operator domain ONNX Runtime's CPU provider does not run.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {str(p)!r} does not exist; expected an .onnx file")
    if p.stat().st_size == 0:
        raise ModelError(f"model file {str(p)!r} is empty; expected an ONNX model")
    if _is_tflite(p):
        from quanta.tflite.reader import tflite_to_onnx  # NOTE: only .tflite input needs it

        try:
            return normalize(tflite_to_onnx(p.read_bytes()), fold=False)
        except ModelError as exc:
            raise ModelError(f"{str(p)!r}: {exc}") from exc
    try:
        model = onnx.load_model(os.fspath(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for garbage input
        raise ModelError(f"{str(p)!r} is not an ONNX model (protobuf parse failed: {exc})") from exc
    if not model.graph.node:
        raise ModelError(f"{str(p)!r} holds no ONNX graph nodes; expected an ONNX model")
    _check_tensors(model, p)
    return _checked(model, p)


def from_proto(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an in-memory ``model``, checked, upgraded and normalized as ``load_model`` does
    for a file (its external data, if any, cannot be read: save the model to a file first)."""
    p = Path("<onnx.ModelProto>")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if not model.graph.node:
        raise ModelError("the onnx.ModelProto holds no graph nodes; expected an ONNX model")
    tensors = list(model.graph.initializer)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise ModelError(
            "the onnx.ModelProto keeps its weights in external files; pass the .onnx path instead"
        )
    return _checked(model, p)


def _checked(model: onnx.ModelProto, p: Path) -> onnx.ModelProto:
    """The checker, the opset upgrade and normalization, for a file or an in-memory model."""
    _check_domains(model, p)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError, and e.g. UnicodeDecodeError for
        # names that are not UTF-8 (found by fuzzing): either way the file is not a valid model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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
    return normalize(model, fold=False)


def _check_tensors(model: onnx.ModelProto, p: Path) -> None:
    """Every initializer and Constant tensor holds the bytes its shape declares; external data
    lies inside the model's directory and is read in (no path traversal)."""
    # Constant nodes become initializers: their tensors get the same checks
    constants = [
        a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
        if a.name == "value"
    ]  # fmt: skip
    tensors = [*model.graph.initializer, *constants]
    external = [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in tensors:
        _check_tensor_size(tensor, p, external=tensor.data_location == onnx.TensorProto.EXTERNAL)
    if external:
        for tensor in external:
            _check_external(tensor, p)
        try:
            onnx.load_external_data_for_model(model, os.fspath(p.parent))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{str(p)!r}: its external data could not be read: {exc}") from exc


def _is_tflite(p: Path) -> bool:
    """A ``.tflite`` suffix, or the TFLite file identifier "TFL3" at bytes 4..8."""
    if p.suffix.lower() == ".tflite":
        return True
    with p.open("rb") as f:
        return f.read(8)[4:8] == b"TFL3"


# Operator domains ONNX Runtime's CPU provider implements; anything else cannot run here.
KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})

# bytes per element of the fixed-size tensor types (sub-byte and string types are not sized here)
_ITEM_BYTES: dict[int, int] = {
    onnx.TensorProto.FLOAT: 4, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT16: 2, onnx.TensorProto.INT16: 2, onnx.TensorProto.INT32: 4,
    onnx.TensorProto.INT64: 8, onnx.TensorProto.BOOL: 1, onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.UINT32: 4, onnx.TensorProto.UINT64: 8,
    onnx.TensorProto.BFLOAT16: 2,
}  # fmt: skip


def _check_domains(model: onnx.ModelProto, p: Path) -> None:
    """Judge the operator domains that nodes use; an import that no node uses is harmless
    (Paddle2ONNX imports ``Paddle``; ONNX Runtime runs such models) and ``normalize`` drops it."""
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ModelError(
                f"{str(p)!r} uses opset {opset.version}, newer than the {newest} this onnx "
                "package knows; export with an older opset or upgrade onnx"
            )
    functions = {(f.domain, f.name) for f in model.functions}
    for node in reachable_nodes(model):
        if node.domain not in KNOWN_DOMAINS and (node.domain, node.op_type) not in functions:
            raise ModelError(
                f"{str(p)!r}: node {node.name!r} is {node.domain}::{node.op_type}, from operator "
                f"domain {node.domain!r}, which quanta and ONNX Runtime's CPU provider do not run; "
                f"expected one of {', '.join(repr(d) for d in sorted(KNOWN_DOMAINS))}"
            )


def _elements(tensor: onnx.TensorProto, p: Path) -> int:
    count = 1
    for d in tensor.dims:
        if d < 0:
            raise ModelError(
                f"{str(p)!r}: tensor {tensor.name!r} declares a negative dimension {d}"
            )
        count *= d
    return count


def _check_tensor_size(tensor: onnx.TensorProto, p: Path, *, external: bool) -> None:
    """The bytes a constant declares (its dims) must be the bytes it holds: a file that says
    otherwise is corrupt, or crafted to make a reader allocate far more than the file."""
    item = _ITEM_BYTES.get(tensor.data_type)
    if item is None or external:
        return
    want = _elements(tensor, p)
    if tensor.HasField("raw_data"):
        have, unit = len(tensor.raw_data) // item, len(tensor.raw_data) % item
        if have != want or unit:
            raise ModelError(
                f"{str(p)!r}: tensor {tensor.name!r} declares shape {list(tensor.dims)} "
                f"({want * item} bytes) but holds {len(tensor.raw_data)} bytes"
            )
        return
    fields = (tensor.float_data, tensor.int32_data, tensor.int64_data, tensor.double_data,
              tensor.uint64_data)  # fmt: skip
    have = max(len(f) for f in fields)
    if have != want:
        raise ModelError(
            f"{str(p)!r}: tensor {tensor.name!r} declares shape {list(tensor.dims)} "
            f"({want} values) but holds {have}"
        )


def _check_external(tensor: onnx.TensorProto, p: Path) -> None:
    """External data must lie in a file inside the model's own directory (no absolute paths,
    no ``..`` escapes, no links out), within that file's size, and be exactly the declared size."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    base = p.parent.resolve()
    target = (base / location).resolve()
    if not location or Path(location).is_absolute() or not target.is_relative_to(base):
        raise ModelError(
            f"{str(p)!r}: tensor {tensor.name!r} points to external data {location!r} outside "
            "the model's directory; refusing (path traversal). Expected a file beside the model"
        )
    if not target.is_file():
        raise ModelError(
            f"{str(p)!r}: external data file {location!r} of tensor {tensor.name!r} is missing"
        )
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
    except ValueError as exc:
        raise ModelError(
            f"{str(p)!r}: tensor {tensor.name!r} has a bad external offset/length"
        ) from exc
    size = target.stat().st_size
    item = _ITEM_BYTES.get(tensor.data_type)
    want = _elements(tensor, p) * item if item else None
    length = length if length >= 0 else size - offset
    if offset < 0 or offset + length > size or (want is not None and length != want):
        raise ModelError(
            f"{str(p)!r}: tensor {tensor.name!r} declares {want} bytes at offset {offset} of "
            f"{location!r}, which holds {size} bytes; expected the declared bytes to be there"
        )


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` as one file, atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        onnx.save_model(model, os.fspath(tmp))
