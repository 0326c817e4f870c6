"""Smaller QDQ files: store only the quantization parameters that carry information.

A per-channel QDQ model stores, beside each int8 weight, a float32 weight scale, an int32 bias,
the bias scale ``s_in * s_w`` (float32) and zero points for weight and bias (all zero). On a
depthwise-heavy network such as MobileNetV2 that is several bytes per output channel beside
nine bytes of weights. Two of those tensors say nothing the graph does not already know:

- all-zero zero points: ``DequantizeLinear``'s zero point is optional and defaults to 0. They
  are dropped for int32 biases and for weights read by Conv. ONNX Runtime (1.32, measured) fuses
  Gemm and MatMul into QGemm / QLinearMatMul only when the weight's zero point is explicit, so
  those keep it.
- the bias scale: it is by definition the product of the input's and the weight's scales,
  which are already in the file. It is computed in the graph by a ``Mul`` of the two
  initializers; ONNX Runtime folds that constant when the session starts, before its QDQ
  fusion, and the product in float32 is bit-identical to the one the bias was quantized with
  (checked here: a bias scale that is not exactly that product is left alone).

Then the graph's own structure is made lean, which matters on small models (a 0.6 MB OCR
classifier's QDQ file was a third names and nodes):

- what quantization generated (integer weights and biases, scales, zero points, QuantizeLinear
  outputs, the dequantized weights, the Q/DQ nodes and the ``Cast -> Mul`` decoders of int8-stored
  float weights) and every other constant gets a short name: a role letter and a base-36 counter
  in graph order (``q`` integer tensors, ``s`` scales, ``z`` zero points, ``d`` dequantized
  constants, ``c`` float constants, ``n`` nodes). Activations and the nodes the float model has
  keep their names, so reports, ``inspect --reference`` and the recorded TFLite ranges still
  find them;
- scalar constants with equal type and value are one initializer read by every node that needs
  it;
- attributes equal to the spec's default are dropped (``quanta.graph.lean``).

The arithmetic of the model is unchanged. Readers that require every scale to be an
initializer get the plain form with ``QuantizeConfig(compact=False)`` / ``--no-compact``, or
from a compact file with ``expand_qdq``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.lean import drop_default_attributes
from quanta.graph.rewrite import Names, remove_unused
from quanta.opfacts import FACTS

__all__ = ["compact_qdq", "expand_qdq"]

# op type -> (input, weight, bias) positions of the ops whose bias is int32 at scale s_in * s_w
_BIASED = {
    op: (0, facts.weight, facts.bias)
    for op, facts in FACTS.items()
    if facts.weight is not None and facts.bias is not None
}
# ops that accept a weight DequantizeLinear without an explicit zero point and still fuse
_WEIGHT_ZP_OPTIONAL = frozenset(
    op for op, facts in FACTS.items() if facts.weight_zero_point_optional
)


def compact_qdq(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place as described above; returns how many tensors were dropped."""
    graph = model.graph
    index = GraphIndex(model)
    inits, producer, readers = dict(index.initializers), index.producer, index.consumers
    names = Names(model)
    before = len(graph.initializer)

    def constant(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def dq_of(name: str) -> onnx.NodeProto | None:
        node = producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    products: list[onnx.NodeProto] = []
    for node in graph.node:
        where = _BIASED.get(node.op_type)
        if where is None or len(node.input) <= where[2]:
            continue
        x_dq, w_dq, b_dq = (dq_of(node.input[k]) for k in where)
        if x_dq is None or w_dq is None or b_dq is None:
            continue
        s_x, s_w, s_b = (constant(dq.input[1]) for dq in (x_dq, w_dq, b_dq))
        if s_x is None or s_w is None or s_b is None or len(readers[b_dq.input[1]]) != 1:
            continue
        product = np.multiply(s_x, s_w, dtype=np.float32)
        if product.shape != s_b.shape or not np.array_equal(product, s_b):
            continue
        # the product takes the stored scale's name, so the DequantizeLinear reads it unchanged
        graph.initializer.remove(inits.pop(b_dq.input[1]))
        products.append(
            helper.make_node(
                "Mul", [x_dq.input[1], w_dq.input[1]], [b_dq.input[1]],
                name=names.fresh(f"{b_dq.input[1]}_Mul"),
            )
        )  # fmt: skip

    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        q, zp = constant(node.input[0]), constant(node.input[2])
        if q is None or zp is None or zp.any() or len(readers[node.input[2]]) != 1:
            continue
        users = readers.get(node.output[0], [])
        if q.dtype == np.int32 or (
            q.dtype == np.int8 and users and all(u.op_type in _WEIGHT_ZP_OPTIONAL for u in users)
        ):
            del node.input[2]

    nodes = products + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    remove_unused(model)
    _share_scalars(model)
    _short_names(model)
    drop_default_attributes(model)
    return before - len(graph.initializer)


_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
_INTEGER = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32})


def _subgraph_names(graph: onnx.GraphProto) -> set[str]:
    """Every name a node inside a subgraph (If, Loop, Scan) reads or writes, at any depth."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for inner in sub.node:
                    names.update(inner.input)
                    names.update(inner.output)
                names |= _subgraph_names(sub)
    return names


def _share_scalars(model: onnx.ModelProto) -> None:
    """One initializer per distinct scalar constant, whichever nodes read it (Q/DQ scales and
    zero points, and the float model's own: a HardSwish's 3 and 6, a Clip's bounds)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outer = {v.name for v in [*graph.input, *graph.output]} | _subgraph_names(graph)
    first: dict[tuple[int, bytes], str] = {}
    same: dict[str, str] = {}
    for node in graph.node:
        for name in node.input[1:] if node.op_type in _QDQ else node.input:
            t = inits.get(name)
            if t is None or name in outer or name in same or len(t.dims) != 0:
                continue
            key = (t.data_type, numpy_helper.to_array(t).tobytes())
            kept = first.setdefault(key, name)
            if kept != name:
                same[name] = kept
    if not same:
        return
    for node in graph.node:
        node.input[:] = [same.get(name, name) for name in node.input]
    remove_unused(model)


def _short_names(model: onnx.ModelProto) -> None:
    """Rename what quantization generated (see the module docstring); numbers are untouched."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    keep = {v.name for v in [*graph.input, *graph.output]} | _subgraph_names(graph)
    bias_scales = {
        n.output[0]
        for n in graph.node
        if n.op_type == "Mul" and len(n.input) == 2 and all(x in inits for x in n.input)
    }
    dq_scales = {n.input[1] for n in graph.node if n.op_type == "DequantizeLinear"}
    role: dict[str, str] = {}  # generated name -> role letter, in graph order
    generated_nodes: list[onnx.NodeProto] = []
    decoded: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        if node.op_type in _QDQ:
            generated_nodes.append(node)
            first = 1 if node.op_type == "QuantizeLinear" else 0  # a float input keeps its name
            for k, name in enumerate(node.input[first:], start=first):
                if name in inits:
                    role.setdefault(name, "qsz"[k])
            if node.op_type == "QuantizeLinear" or node.input[0] in inits:
                role.setdefault(node.output[0], "q" if node.op_type == "QuantizeLinear" else "d")
        elif node.op_type == "Mul" and node.output[0] in bias_scales & dq_scales:
            generated_nodes.append(node)
            role.setdefault(node.output[0], "s")
            for name in node.input:
                role.setdefault(name, "s")
    # int8-stored float weights: Cast(q) * scale, or Cast(q) * Cast(scale) for float16 scales
    for node in graph.node:  # (graph/weight_only.py, graph/half_scales.py)
        if node.op_type == "Cast" and node.input[0] in inits:
            decoded[node.output[0]] = node
        elif (
            node.op_type == "Mul"
            and node.input[0] in decoded
            and (node.input[1] in inits or node.input[1] in decoded)
        ):
            decoded[node.output[0]] = node
    for name, node in decoded.items():
        generated_nodes.append(node)
        role.setdefault(name, "d")
    for t in graph.initializer:  # constants the float model had (weights, BN-folded biases)
        role.setdefault(t.name, "q" if t.data_type in _INTEGER else "c")
    names = Names(model)
    counters: dict[str, int] = {}

    def short(letter: str) -> str:
        counters[letter] = counters.get(letter, 0) + 1
        return names.fresh(f"{letter}{np.base_repr(counters[letter], 36).lower()}")

    renamed = {name: short(letter) for name, letter in role.items() if name not in keep}
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for node in generated_nodes:
        node.name = short("n")
    for t in graph.initializer:
        t.name = renamed.get(t.name, t.name)
    for v in graph.value_info:
        v.name = renamed.get(v.name, v.name)


def expand_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every DequantizeLinear's scale and zero point an initializer.

    The inverse of ``compact_qdq`` for readers (and tests) that want plain QDQ: scale products
    are evaluated in float32 as ONNX Runtime folds them, and absent zero points become explicit
    zeros of the quantized tensor's type and the scale's shape.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    dq_scales = {n.input[1] for n in graph.node if n.op_type == "DequantizeLinear"}
    names = Names(out)
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if (
            node.op_type == "Mul"
            and node.output[0] in dq_scales
            and all(name in inits for name in node.input)
        ):
            a, b = (numpy_helper.to_array(inits[name]) for name in node.input)
            product = numpy_helper.from_array(np.multiply(a, b, dtype=np.float32), node.output[0])
            graph.initializer.append(product)
            inits[product.name] = product
        else:
            kept.append(node)
    for node in kept:
        if node.op_type != "DequantizeLinear" or len(node.input) > 2 or node.input[0] not in inits:
            continue
        dtype = numpy_helper.to_array(inits[node.input[0]]).dtype
        shape = numpy_helper.to_array(inits[node.input[1]]).shape
        zp = numpy_helper.from_array(np.zeros(shape, dtype), names.fresh(f"{node.input[0]}_zp"))
        graph.initializer.append(zp)
        node.input.append(zp.name)
    del graph.node[:]
    graph.node.extend(kept)
    remove_unused(out)
    return out
