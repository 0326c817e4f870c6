"""Which kernels ONNX Runtime really runs: op types of its optimized graph, and which are integer.

A QDQ model says what *may* run in int8; only the graph that ONNX Runtime builds after fusion says
what does. We save that graph, count its op types, and follow element types through it to tell
an int8 MaxPool or Reshape from a float one.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import onnx

from quanta.opfacts import FACTS
from quanta.runtime.session import make_session

__all__ = ["INTEGER_OPS", "KernelCounts", "count_kernels"]

# Ops whose arithmetic is integer.
INTEGER_OPS = frozenset(
    {
        "QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger",
        "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul",
        "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid",
        "QLinearLeakyRelu", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere", "QAttention",
        "DynamicQuantizeLSTM", "QEmbedLayerNormalization", "QOrderedMatMul", "NhwcQLinearConv",
    }
)  # fmt: skip
# Ops that only move values: they run in int8 when their input is int8 (NhwcMaxPool is ONNX
# Runtime's own layout-transformed MaxPool).
MOVERS = frozenset(op for op, facts in FACTS.items() if facts.ort_int8_mover) | {"NhwcMaxPool"}
# Index of the output zero point of integer ops whose output is quantized.
_OUTPUT_ZP = {"QLinearConv": 7, "QLinearMatMul": 7, "QGemm": 8, "QLinearAdd": 7, "QLinearMul": 7,
              "QLinearAveragePool": 4, "QLinearGlobalAveragePool": 4, "QLinearConcat": 1,
              "QLinearSigmoid": 4, "QLinearLeakyRelu": 4, "QLinearSoftmax": 4}  # fmt: skip
_INT8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


class KernelCounts:
    """Op-type counts of an optimized graph, split into integer, QDQ and the rest."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.all: Counter[str] = Counter(node.op_type for node in graph.node)
        self.int8: Counter[str] = Counter()
        dtype: dict[str, int] = {t.name: t.data_type for t in graph.initializer}
        for value in graph.input:
            dtype[value.name] = value.type.tensor_type.elem_type
        for node in graph.node:
            out_type: int = onnx.TensorProto.FLOAT
            if node.op_type in INTEGER_OPS:
                self.int8[node.op_type] += 1
                k = _OUTPUT_ZP.get(node.op_type)
                if k is not None and len(node.input) > k and node.input[k]:
                    out_type = dtype.get(node.input[k], onnx.TensorProto.UINT8)
            elif node.op_type == "QuantizeLinear":
                zp = node.input[2] if len(node.input) > 2 else ""
                out_type = dtype.get(zp, onnx.TensorProto.UINT8)
            elif node.op_type == "DynamicQuantizeLinear":
                out_type = onnx.TensorProto.UINT8
            elif node.op_type in MOVERS and node.input and dtype.get(node.input[0]) in _INT8:
                self.int8[node.op_type] += 1
                out_type = dtype[node.input[0]]
            for name in node.output:
                dtype[name] = out_type
        self.qdq: Counter[str] = Counter(
            {k: v for k, v in self.all.items() if k in ("QuantizeLinear", "DequantizeLinear")}
        )

    @classmethod
    def from_counts(cls, ops: Counter[str], edges: Sequence[str] = ()) -> KernelCounts:
        """Counts of a runtime whose file already names its integer ops (TFLite): every op is
        integer except the ``edges`` (its quantize/dequantize)."""
        counts = cls.__new__(cls)
        counts.all = Counter(ops)
        counts.int8 = Counter({k: v for k, v in ops.items() if k not in edges})
        counts.qdq = Counter({k: v for k, v in ops.items() if k in edges})
        return counts

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"int8": dict(sorted(self.int8.items())), "all": dict(sorted(self.all.items()))}


def count_kernels(model_path: str | os.PathLike[str], *, threads: int = 1) -> KernelCounts:
    """Let ONNX Runtime optimize the model as it would for inference, and count what it kept."""
    with tempfile.TemporaryDirectory(prefix="quanta-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        make_session(model_path, threads=threads, optimized_path=optimized)
        graph = onnx.load_model(os.fspath(optimized), load_external_data=False).graph
    return KernelCounts(graph)
