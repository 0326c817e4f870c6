"""Read a model as its exporter wrote it: constants become initializers, constant sub-graphs are
folded, and opset imports that no node uses are dropped.

Exporters spell one float model in several ways, and quanta's passes read only one of them:

- **Constant nodes to initializers.** Paddle2ONNX (and others) store weights as ``Constant``
  nodes. The planner recognises a weight as an initializer; left as nodes, every weight looked like
  an activation, int8 copies were added and the float constants stayed in the file, which grew.
- **Constant folding.** A weight may reach its Conv through ``Transpose``/``Reshape``/``Cast``/
  ``Unsqueeze``/``Mul`` of constants, and shapes are often computed from constants. Each node
  whose inputs are all initializers is evaluated once, with ``onnx.reference.ReferenceEvaluator``
  (an independent evaluator, no ONNX Runtime session: sessions belong to ``quanta.runtime``), and
  replaced by initializers, until nothing is left to fold. Not folded: non-deterministic ops
  (``RandomNormal``, ``Multinomial``, ...), ``QuantizeLinear``/``DequantizeLinear`` (an int8
  weight must stay int8), nodes with a sub-graph (``If``/``Loop``/``Scan``), nodes outside the
  default domain, nodes whose output is a graph output (it must stay one), and nodes whose output
  would be much larger than their inputs (``ConstantOfShape``/``Expand``/``Tile``/``Range``
  blowing a few bytes up into megabytes: the file would grow; the cap is
  ``max(input bytes, FOLD_MAX_BYTES)``, checked on the inferred shape *before* evaluating).
- **Unused opset imports dropped.** Paddle2ONNX imports domain ``Paddle`` though no node uses it;
  ONNX Runtime runs such a model, so quanta must not refuse it. Domains used by any node (in
  sub-graphs and in the model's functions too) are kept.

A model with none of these comes back byte-identical. Only the main graph's nodes are changed:
sub-graphs and functions are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["normalize", "FOLD_MAX_BYTES", "reachable_nodes", "used_domains"]

# NOTE: folding may grow a tensor up to this size (a Cast of int8 to float is 4x); beyond it, only
# when the output is no larger than the inputs.
FOLD_MAX_BYTES = 1 << 20

_NEVER_FOLD = frozenset(
    {
        # non-deterministic: a fixed sample would change the model's meaning
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",  # random when training_mode is true
        # quantization: an int8 weight and its DequantizeLinear are what quantized files are made of
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        # handled by _constants_to_initializers
        "Constant",
    }
)

# Integer inputs up to this many elements are given to shape inference as values (shapes, axes,
# repeats), so that it can size ConstantOfShape/Expand/Tile/Range outputs before they are computed.
_SHAPE_VALUE_ELEMENTS = 1024

_DEFAULT_DOMAINS = ("", "ai.onnx")


def normalize(model: onnx.ModelProto, *, fold: bool = True) -> onnx.ModelProto:
    """Return a normalized copy of ``model``; the caller's proto is never modified.

    Args:
        model: an ONNX model, as exported.
        fold: also fold constant sub-graphs. ``load_model`` passes False: a quantized file holds
            constant sub-graphs on purpose (an int8 weight decoded by ``Cast -> Mul``), which
            folding would turn back into float; ``prepare`` folds the float models it is given.

    Example:
        >>> from onnx import helper, TensorProto
        >>> w = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
        >>> g = helper.make_graph(
        ...     [helper.make_node("Constant", [], ["w"], value=w),
        ...      helper.make_node("Mul", ["x", "w"], ["y"])], "g",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        >>> m = normalize(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]))
        >>> [n.op_type for n in m.graph.node], [t.name for t in m.graph.initializer]
        (['Mul'], ['w'])
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    added = _constants_to_initializers(out.graph)
    if fold:
        added += _fold_constants(out)
    if added and out.ir_version < 4:
        # NOTE: before IR 4 every initializer also had to be a graph input; from IR 4 an
        # initializer that is not an input is a constant, which is what these are.
        out.ir_version = 4
    _drop_unused_opsets(out)
    return out


# --- 1. Constant nodes -> initializers -------------------------------------------------------


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node as a tensor named after its output; None for a sparse value
    (an initializer cannot hold one; ``graph.sparse_initializer`` would, but quanta's passes do
    not read it, so the node is left as it is)."""
    if len(node.attribute) != 1 or len(node.output) != 1:
        return None
    attr = node.attribute[0]
    name = node.output[0]
    tensor: onnx.TensorProto
    if attr.name == "value":
        tensor = onnx.TensorProto()
        tensor.CopyFrom(attr.t)
    elif attr.name == "value_float":
        tensor = numpy_helper.from_array(np.array(attr.f, np.float32))
    elif attr.name == "value_floats":
        tensor = numpy_helper.from_array(np.array(attr.floats, np.float32))
    elif attr.name == "value_int":
        tensor = numpy_helper.from_array(np.array(attr.i, np.int64))
    elif attr.name == "value_ints":
        tensor = numpy_helper.from_array(np.array(attr.ints, np.int64))
    elif attr.name == "value_string":
        tensor = onnx.helper.make_tensor(name, onnx.TensorProto.STRING, [], [attr.s])
    elif attr.name == "value_strings":
        strings = list(attr.strings)
        tensor = onnx.helper.make_tensor(name, onnx.TensorProto.STRING, [len(strings)], strings)
    else:  # sparse_value, or an attribute reference inside a function
        return None
    tensor.name = name
    return tensor


def _constants_to_initializers(graph: onnx.GraphProto) -> int:
    """Move the main graph's Constant nodes into ``graph.initializer``; returns how many."""
    outputs = {o.name for o in graph.output}
    added, done = [], []
    for i, node in enumerate(graph.node):
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            continue
        if node.output[0] in outputs:
            continue  # a graph output stays produced by a node (an initializer is not an output)
        tensor = _constant_tensor(node)
        if tensor is not None:
            added.append(tensor)
            done.append(i)
    _delete(graph.node, done)
    graph.initializer.extend(added)
    return len(added)


def _delete(field, indices: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Delete these positions of a repeated proto field (by index: ``remove`` would compare
    whole messages, weights included)."""
    for i in sorted(indices, reverse=True):
        del field[i]


# --- 2. constant folding ---------------------------------------------------------------------


def _fold_constants(model: onnx.ModelProto) -> int:
    """Replace foldable nodes by initializers until none is left; returns the tensors added."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is None:
        return 0
    overridable = {i.name for i in graph.input}  # an initializer that is also an input can change
    outputs = {o.name for o in graph.output}
    tensors = {t.name: t for t in graph.initializer if t.name not in overridable}
    values: dict[str, np.ndarray] = {}
    added: list[onnx.TensorProto] = []
    folded_inputs: set[str] = set()
    while True:  # to a fixed point (one pass suffices for a topologically sorted graph)
        done = []
        for i, node in enumerate(graph.node):
            results = (
                _evaluate(node, tensors, values, opset)
                if _foldable(node, tensors, outputs)
                else None
            )
            if results is None:
                continue
            for name, value in results.items():
                tensor = numpy_helper.from_array(value, name)
                tensors[name] = tensor
                values[name] = value
                added.append(tensor)
            folded_inputs.update(name for name in node.input if name)
            done.append(i)
        if not done:
            break
        _delete(graph.node, done)
    if not added:
        return 0
    graph.initializer.extend(added)
    # The constants a folded node read are dropped when nothing else reads them (that is how a
    # Transpose of a weight stops costing the weight twice).
    used = set(_names_read(graph)) | outputs
    _delete(
        graph.initializer,
        [
            i
            for i, t in enumerate(graph.initializer)
            if t.name in folded_inputs and t.name not in used
        ],
    )
    return len(added)


def _foldable(
    node: onnx.NodeProto, tensors: dict[str, onnx.TensorProto], outputs: set[str]
) -> bool:
    return (
        node.domain in _DEFAULT_DOMAINS
        and node.op_type not in _NEVER_FOLD
        and not any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        )  # fmt: skip
        and all(not i or i in tensors for i in node.input)
        and all(o not in outputs for o in node.output)
        and any(node.output)
    )


def _evaluate(
    node: onnx.NodeProto,
    tensors: dict[str, onnx.TensorProto],
    values: dict[str, np.ndarray],
    opset: int,
) -> dict[str, np.ndarray] | None:
    """The node's outputs, or None when it must not or cannot be folded."""
    from onnx.reference import ReferenceEvaluator

    names = [i for i in node.input if i]
    in_bytes = sum(_tensor_bytes(tensors[n]) for n in names)
    cap = max(in_bytes, FOLD_MAX_BYTES)
    sizes = _inferred_bytes(node, [tensors[n] for n in names], opset)
    if sizes is None or any(s is None or s > cap for s in sizes):
        return None  # unknown or too large an output: computing it could exhaust memory
    for n in names:
        if n not in values:
            values[n] = numpy_helper.to_array(tensors[n])
    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [onnx.helper.make_value_info(n, _type_of(tensors[n])) for n in dict.fromkeys(names)],
        [onnx.helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o],
    )
    tiny = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        got = ReferenceEvaluator(tiny).run(None, {n: values[n] for n in names})
    except Exception:  # noqa: BLE001 - an op the evaluator lacks stays a node; ORT will run it
        return None
    out: dict[str, np.ndarray] = {}
    for name, value in zip([o for o in node.output if o], got, strict=True):
        if not isinstance(value, np.ndarray | np.generic):
            return None  # a sequence or an optional: not an initializer
        array = np.asarray(value)
        if array.nbytes > cap or array.dtype.kind not in "biufcU":
            return None
        out[name] = array
    return out


def _inferred_bytes(
    node: onnx.NodeProto, inputs: list[onnx.TensorProto], opset: int
) -> list[int | None] | None:
    """Bytes of each output as ONNX shape inference sizes it, before anything is computed."""
    unique = list({t.name: t for t in inputs}.values())
    small = [t for t in unique if _is_shape_value(t)]
    small_names = {t.name for t in small}
    graph = onnx.helper.make_graph(
        [node],
        "size",
        [
            onnx.helper.make_value_info(t.name, _type_of(t))
            for t in unique
            if t.name not in small_names
        ],
        [onnx.helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o],
        small,
    )
    tiny = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        inferred = onnx.shape_inference.infer_shapes(tiny, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001 - inference raises several error types
        return None
    sizes: list[int | None] = []
    for value in inferred.graph.output:
        tensor_type = value.type.tensor_type
        item = _item_bytes(tensor_type.elem_type)
        dims = tensor_type.shape.dim
        if (
            item is None
            or not tensor_type.HasField("shape")
            or not all(d.HasField("dim_value") for d in dims)
        ):
            sizes.append(None)
            continue
        sizes.append(item * int(np.prod([d.dim_value for d in dims], dtype=np.int64)))
    return sizes


def _is_shape_value(t: onnx.TensorProto) -> bool:
    count = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
    return t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and (
        count <= _SHAPE_VALUE_ELEMENTS
    )


def _type_of(t: onnx.TensorProto) -> onnx.TypeProto:
    return onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims))


def _item_bytes(elem_type: int) -> int | None:
    if elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        return int(onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, TypeError, ValueError):
        return None


def _tensor_bytes(t: onnx.TensorProto) -> int:
    count = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
    return count * (_item_bytes(t.data_type) or 1)


def _names_read(graph: onnx.GraphProto) -> Iterator[str]:
    """Every tensor name a node reads, in this graph and in its sub-graphs (outer-scope reads)."""
    for node in graph.node:
        yield from (i for i in node.input if i)
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _names_read(sub)
                yield from (o.name for o in sub.output)


# --- 3. opset imports ------------------------------------------------------------------------


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _all_nodes(sub)


def reachable_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node that can run: those of the main graph and its sub-graphs, and those of the
    model's functions that these nodes call (transitively)."""
    functions = {(f.domain, f.name): f for f in model.functions}
    pending = [model.graph]
    seen: set[tuple[str, str]] = set()
    while pending:
        for node in _all_nodes(pending.pop()):
            yield node
            key = (node.domain, node.op_type)
            if key in functions and key not in seen:
                seen.add(key)
                pending.append(onnx.helper.make_graph(functions[key].node, key[1], [], []))


def used_domains(model: onnx.ModelProto) -> set[str]:
    """The operator domains that reachable nodes use (``"ai.onnx"`` spelled ``""``); a function's
    own domain counts as used where a node calls the function."""
    return {"" if n.domain == "ai.onnx" else n.domain for n in reachable_nodes(model)}


def _drop_unused_opsets(model: onnx.ModelProto) -> None:
    """Remove the opset imports of domains no node uses (the default domain always stays)."""
    used = used_domains(model)
    stale = [
        o for o in model.opset_import if o.domain not in _DEFAULT_DOMAINS and o.domain not in used
    ]
    for opset in stale:
        model.opset_import.remove(opset)
