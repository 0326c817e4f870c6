"""Graph preparation before quantization: a private copy, unique node names, shape inference."""

from __future__ import annotations

import onnx

from quanta.errors import ModelError
from quanta.graph.canonicalize import canonicalize
from quanta.graph.fold_affine import fold_channel_affine
from quanta.graph.fold_bn import fold_batchnorm
from quanta.graph.normalize import normalize

__all__ = ["prepare", "QUANTIZED_OPS"]

# Ops that only appear in a model that is already quantized.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "QGemm",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)

_EXPORTER_RECORDS = ("pkg.torch.export.",)


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a prepared copy of ``model``; the caller's proto is never modified.

    - refuses a model that is already quantized (quantizing twice compounds the error);
    - normalizes it (``quanta.graph.normalize``): Constant nodes become initializers, constant
      sub-graphs are folded, unused opset imports are dropped, so that weights are initializers;
    - gives every node a unique name (handlers, warnings and reports refer to nodes by name);
    - runs ONNX shape inference so that passes know each tensor's element type and rank;
    - folds BatchNormalization, and a per-channel Mul/Add of constants, into the Conv before it;
    - rewrites op spellings into the ones with int8 kernels (``quanta.graph.canonicalize``).
    """
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if found:
        raise ModelError(
            f"the model is already quantized (it contains {', '.join(found)}); "
            "pass the float model instead"
        )
    prepared = normalize(model)  # a copy
    # The exporter's record of its parameters and buffers (torch.export's graph signature, about
    # 30 KB on MobileNetV2) no longer describes the graph once BatchNorm is folded and weights
    # are replaced; model-level metadata (author, licence, ...) is kept.
    stale = [p for p in prepared.graph.metadata_props if p.key.startswith(_EXPORTER_RECORDS)]
    for prop in stale:
        prepared.graph.metadata_props.remove(prop)
    seen: set[str] = set()
    for i, node in enumerate(prepared.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)
    prepared = _infer(prepared)
    if fold_batchnorm(prepared) + fold_channel_affine(prepared) + canonicalize(prepared):
        del prepared.graph.value_info[:]
        prepared = _infer(prepared)
    return prepared


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - the inference raises several error types
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"ONNX shape inference failed on the model: {first}") from exc
