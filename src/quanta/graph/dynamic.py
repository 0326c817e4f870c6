"""Dynamic-range quantization: int8 weights; activation ranges measured at run time.

What runs in integer arithmetic is chosen by measurement, not by habit (``benchmarks/
dynamic_ops.py`` prints the figures on your CPU):

- Gemm and MatMul with a constant weight become ``DynamicQuantizeLinear -> MatMulInteger ->
  Cast -> Mul(scales) [-> Add(bias)]``, which ONNX Runtime fuses into one
  ``DynamicQuantizeMatMul`` kernel: int8 weights are 4x less memory to stream and the u8 x s8
  product is faster than float32 at every batch size we measured.
- Conv keeps float arithmetic and stores its weight as int8 ("weight-only"): ONNX Runtime's
  ``ConvInteger`` has no fast kernel on x86: ORT's dynamic LeNet ran 1.8x (batch 1) to 6.6x
  (batch 256) slower than float here (benchmarks/results/dynamic_ops.md), so dynamic
  int8 convolution would make the model smaller *and* slower. The int8 weight is decoded by
  ``Cast -> Mul(scale)``, which ONNX Runtime constant-folds when the session starts, so the Conv
  sees a float constant and keeps its fastest (NCHWc) kernels. A ``DequantizeLinear`` would do
  the same arithmetic, but ONNX Runtime keeps DequantizeLinear unfolded (for QDQ fusion), runs it
  on every inference and loses the NCHWc layout: measured 1.4x slower than float at batch 256.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.compact import compact_qdq
from quanta.graph.config import QuantizeConfig
from quanta.graph.index import GraphIndex
from quanta.graph.ops import get_attr
from quanta.graph.prepare import prepare
from quanta.graph.result import FloatNode, QuantizeResult
from quanta.graph.rewrite import Names, int8_decoder, quantize_weight, remove_unused
from quanta.graph.weight_only import compress_float_weights, stored_int8
from quanta.opfacts import FACTS, Backend, OpKind, weight_axis
from quanta.runtime.machine import int8_pairs_saturate

__all__ = ["dynamic_matmuls", "quantize_dynamic"]

MS_DOMAIN = "com.microsoft"


def quantize_dynamic(
    model: onnx.ModelProto, config: QuantizeConfig | None = None
) -> QuantizeResult:
    """Quantize weights to int8; Gemm/MatMul compute in int8, Conv stays float with int8 storage."""
    config = config or QuantizeConfig(mode="dynamic")
    model = prepare(model)
    # ORT's dynamic MatMul multiplies u8 activations by s8 weights: the same int16 pair sums
    reduced = config.weight_range == "reduced" or (
        config.weight_range == "auto" and int8_pairs_saturate()
    )
    rewrite = _Rewrite(model, config.per_channel, reduced)
    for node in model.graph.node:
        rewrite.visit(node)
    rewrite.finish()
    compressed = compress_float_weights(model, per_channel=config.per_channel)
    if config.compact:  # short names, shared scalars, no default attributes: same numbers
        compact_qdq(model)
    onnx.checker.check_model(model)
    return QuantizeResult(model, rewrite.float_nodes, rewrite.notes(compressed))


def dynamic_matmuls(
    model: onnx.ModelProto, names: Collection[str], per_channel: bool, reduced: bool
) -> list[str]:
    """Rewrite the float Gemm/MatMul nodes named in ``names`` (in place) as dynamic int8
    (``DynamicQuantizeMatMul`` once ONNX Runtime fuses them); the names of those rewritten.

    The static quantizer's last resort for speed (``quanta.graph.escalation``): layers kept
    float because int8 with calibrated ranges ran no faster can still run int8 with ranges
    measured at run time. A node ``_dynamic_matmul_refusal`` refuses stays as it is.
    """
    index, fresh = GraphIndex(model), Names(model)
    wanted = set(names)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    shared: dict[tuple[str, int | None], list[str]] = {}
    done = []
    for node in model.graph.node:
        if (
            node.name in wanted
            and node.op_type in ("Gemm", "MatMul")
            and _dynamic_matmul_refusal(node, index) is None
        ):
            nodes.extend(_dynamic_matmul(node, index, fresh, inits, per_channel, reduced, shared))
            done.append(node.name)
        else:
            nodes.append(node)
    if done:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(inits)
        remove_unused(model)
    return done


class _Rewrite:
    """The dynamic rewrite of one model, node by node: new nodes go to ``head`` (weight
    decoders, first) or ``body`` (the graph's nodes in order), new initializers beside them."""

    def __init__(self, model: onnx.ModelProto, per_channel: bool, reduced: bool) -> None:
        self.model, self.per_channel, self.reduced = model, per_channel, reduced
        self.index = GraphIndex(model)
        self.names = Names(model)
        self.head: list[onnx.NodeProto] = []
        self.body: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self.float_nodes: list[FloatNode] = []
        self.counts = {"matmul": 0, "weight_only": 0, "lstm": 0}
        # a weight read by several nodes (an unrolled recurrent layer) is stored once
        self.shared: dict[tuple[str, int | None], list[str]] = {}

    def visit(self, node: onnx.NodeProto) -> None:
        facts = FACTS.get(node.op_type)
        if facts is None:
            self.body.append(node)
            return
        if node.op_type == "LSTM":
            if self._lstm(node):
                return
        elif Backend.DYNAMIC in facts.backends:
            if self._matmul(node):
                return
        elif facts.float_reason is not None:
            pass  # float on purpose (GRU): compress_float_weights stores its weights as int8
        elif facts.kind is OpKind.COMPUTE and self.index.is_constant(node.input[1]):
            self._weight_only(node)
        elif facts.kind is OpKind.COMPUTE:
            self._keep_float(node, "its weight is not a constant")
        self.body.append(node)

    def _keep_float(self, node: onnx.NodeProto, reason: str) -> None:
        self.float_nodes.append(FloatNode(node.name, node.op_type, reason))

    def _lstm(self, node: onnx.NodeProto) -> bool:
        reason = _dynamic_lstm_refusal(node, self.index)
        if reason is not None:
            self._keep_float(node, reason)
            return False
        self.body.append(
            _dynamic_lstm(
                node, self.index, self.names, self.new_inits, self.per_channel, self.reduced
            )
        )
        self.counts["lstm"] += 1
        return True

    def _matmul(self, node: onnx.NodeProto) -> bool:
        reason = _dynamic_matmul_refusal(node, self.index)
        if reason is not None:
            self._keep_float(node, reason)
            return False
        self.body.extend(
            _dynamic_matmul(
                node, self.index, self.names, self.new_inits, self.per_channel, self.reduced,
                self.shared,
            )
        )  # fmt: skip
        self.counts["matmul"] += 1
        return True

    def _weight_only(self, node: onnx.NodeProto) -> None:
        """No fast int8 kernel with run-time ranges (ConvInteger): float, int8-stored weight."""
        key = (node.input[1], weight_axis(node) if self.per_channel else None)
        if key not in self.shared:
            q, scale = stored_int8(node, self.index.constant(node.input[1]), key[1])
            decode, inits = int8_decoder(q, scale, node.input[1], self.names)
            self.new_inits.extend(inits)
            self.head.extend(decode)
            self.shared[key] = [decode[-1].output[0]]
        node.input[1] = self.shared[key][0]
        self.counts["weight_only"] += 1

    def finish(self) -> None:
        graph = self.model.graph
        del graph.node[:]
        graph.node.extend(self.head + self.body)
        if self.counts["lstm"] and not any(o.domain == MS_DOMAIN for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        graph.initializer.extend(self.new_inits)
        del graph.value_info[:]
        remove_unused(self.model)

    def notes(self, compressed: int) -> list[str]:
        counts = self.counts
        notes = [
            f"{counts['matmul']} Gemm/MatMul run as int8 DynamicQuantizeMatMul",
            f"{counts['weight_only']} Conv keep float arithmetic with int8 weights "
            "(ConvInteger is slower than float Conv on x86)",
        ]
        if counts["lstm"]:
            notes.insert(
                1, f"{counts['lstm']} LSTM run as int8 DynamicQuantizeLSTM (com.microsoft)"
            )
        if compressed:
            notes.append(
                f"{compressed} more weight tensors (embedding tables, float MatMul/Gemm weights) "
                "stored as int8, decoded to float when the session starts"
            )
        return notes


def _dynamic_matmul_refusal(node: onnx.NodeProto, index: GraphIndex) -> str | None:
    """Why this Gemm/MatMul cannot become DynamicQuantizeMatMul, or None if it can."""
    if not index.is_constant(node.input[1]):
        return (
            "both operands are activations (as in attention); dynamic int8 quantizes constant "
            "weights only"
        )
    rank = index.constant(node.input[1]).ndim
    if rank != 2:
        return f"its constant weight has rank {rank}; int8 MatMulInteger weights need rank 2"
    if node.op_type == "Gemm":
        if get_attr(node, "transA", 0):
            return "it transposes its input (transA=1)"
        if get_attr(node, "alpha", 1.0) != 1.0 or get_attr(node, "beta", 1.0) != 1.0:
            return "it scales its product or bias (alpha or beta != 1)"
        if len(node.input) > 2 and node.input[2]:
            c = node.input[2]
            if not index.is_constant(c) or index.constant(c).ndim != 1:
                return "its bias C is not a constant 1-D vector"
    return None


def _dynamic_matmul(
    node: onnx.NodeProto,
    index: GraphIndex,
    names: Names,
    new_inits: list[onnx.TensorProto],
    per_channel: bool,
    reduced: bool = False,
    shared: dict[tuple[str, int | None], list[str]] | None = None,
) -> list[onnx.NodeProto]:
    """``Y = cast(MatMulInteger(q(A), Wq)) * (s_A * s_W) + bias``: the pattern ORT fuses.

    ``shared`` maps (weight, transposed) to the int8 weight, scale and zero point already
    written for another reader of the same weight.
    """
    w_name, w_scale, w_zp = _matmul_weight(
        node, index, names, new_inits, per_channel, reduced, shared
    )
    out = node.output[0]
    a_q, a_scale, a_zp = (names.fresh(f"{out}_{s}") for s in ("x_q", "x_s", "x_zp"))
    acc, acc_f, scale, prod = (
        names.fresh(f"{out}_{s}") for s in ("int32", "float", "scale", "matmul")
    )
    nodes = [
        helper.make_node(
            "DynamicQuantizeLinear",
            [node.input[0]],
            [a_q, a_scale, a_zp],
            name=names.fresh(f"{node.name}_DynamicQuantizeLinear"),
        ),
        helper.make_node(
            "MatMulInteger",
            [a_q, w_name, a_zp, w_zp],
            [acc],
            name=names.fresh(f"{node.name}_MatMulInteger"),
        ),
        helper.make_node(
            "Cast", [acc], [acc_f], to=onnx.TensorProto.FLOAT, name=names.fresh(f"{node.name}_Cast")
        ),
        helper.make_node(
            "Mul", [a_scale, w_scale], [scale], name=names.fresh(f"{node.name}_ScaleMul")
        ),
    ]
    has_bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
    nodes.append(
        helper.make_node(
            "Mul", [acc_f, scale], [prod if has_bias else out], name=names.fresh(f"{node.name}_Mul")
        )
    )
    if has_bias:
        nodes.append(
            helper.make_node(
                "Add", [prod, node.input[2]], [out], name=names.fresh(f"{node.name}_BiasAdd")
            )
        )
    return nodes


def _matmul_weight(
    node: onnx.NodeProto,
    index: GraphIndex,
    names: Names,
    new_inits: list[onnx.TensorProto],
    per_channel: bool,
    reduced: bool,
    shared: dict[tuple[str, int | None], list[str]] | None,
) -> list[str]:
    """The names of the int8 weight (K, N), its scale and zero point: written once per weight
    and orientation, then looked up in ``shared`` by its other readers."""
    base = node.input[1]
    transposed = node.op_type == "Gemm" and bool(get_attr(node, "transB", 0))
    key = (f"matmul:{base}", int(transposed))
    if shared is not None and key in shared:
        return shared[key]
    w = index.constant(base).astype(np.float32)
    if transposed:
        w = w.T  # (N, K) -> (K, N): MatMulInteger takes B as (K, N)
    axis = 1 if per_channel else None
    q, qp = quantize_weight(np.ascontiguousarray(w), axis, reduced=reduced)
    w_name = names.fresh(f"{base}_q")
    w_scale = names.fresh(f"{base}_s")
    w_zp = names.fresh(f"{base}_zp")
    new_inits += [
        numpy_helper.from_array(q, w_name),
        numpy_helper.from_array(qp.scale, w_scale),
        numpy_helper.from_array(qp.zero_point.astype(np.int8), w_zp),
    ]
    if shared is not None:
        shared[key] = [w_name, w_scale, w_zp]
    return [w_name, w_scale, w_zp]


def _dynamic_lstm_refusal(node: onnx.NodeProto, index: GraphIndex) -> str | None:
    """Why this LSTM cannot become DynamicQuantizeLSTM, or None if it can."""
    for k, what in ((1, "W"), (2, "R")):
        if not index.is_constant(node.input[k]) or index.constant(node.input[k]).ndim != 3:
            return f"its weight {what} is not a constant of rank 3"
    if get_attr(node, "layout", 0):
        return "it reads batch-first tensors (layout=1), which DynamicQuantizeLSTM does not take"
    return None


def _dynamic_lstm(
    node: onnx.NodeProto,
    index: GraphIndex,
    names: Names,
    new_inits: list[onnx.TensorProto],
    per_channel: bool,
    reduced: bool,
) -> onnx.NodeProto:
    """ONNX Runtime's ``DynamicQuantizeLSTM``: the LSTM's inputs, with W and R as int8.

    Measured here at batch 1 against the float LSTM: 1.49x faster on ddddocr_ocr (a 512-wide
    bidirectional LSTM over 22 steps), 1.04x on silero_vad (one 128-wide step).
    Its W and R are transposed, ``(num_directions, input, 4 * hidden)``, with scales and zero
    points of shape ``(num_directions, 4 * hidden)`` (one per gate row) or ``(num_directions,)``.
    """
    inputs = [node.input[0]]
    qparams: list[str] = []
    for k in (1, 2):
        w = index.constant(node.input[k]).astype(np.float32)  # (D, 4H, K)
        d, rows, cols = w.shape
        # one scale per direction and gate row (per channel) or per direction (per tensor)
        flat = w.reshape(d * rows, cols) if per_channel else w.reshape(d, rows * cols)
        q, qp = quantize_weight(flat, 0, reduced=reduced)
        scale = qp.scale.reshape(d, rows) if per_channel else qp.scale.reshape(d)
        base = node.input[k]
        q_name, s_name, zp_name = (names.fresh(f"{base}_{s}") for s in ("q", "s", "zp"))
        new_inits += [
            numpy_helper.from_array(q.reshape(d, rows, cols).transpose(0, 2, 1).copy(), q_name),
            numpy_helper.from_array(scale.astype(np.float32), s_name),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), zp_name),
        ]
        inputs.append(q_name)
        qparams += [s_name, zp_name]
    rest = list(node.input[3:8])  # B, sequence_lens, initial_h, initial_c, P: all optional
    rest += [""] * (5 - len(rest))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "layout"}
    return helper.make_node(
        "DynamicQuantizeLSTM",
        [*inputs, *rest, *qparams],
        list(node.output),
        name=node.name,
        domain=MS_DOMAIN,
        **attrs,
    )
