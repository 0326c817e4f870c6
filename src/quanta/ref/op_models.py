"""Single integer ops cut out of a quantized model, each a model of its own, for ``verify``.

ONNX Runtime fuses each cut-out op (its input DequantizeLinears, the op, its output
QuantizeLinears) into the same integer kernel as in the full model, so running it on the
reference's integers compares that op's arithmetic alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx
from onnx import helper

from quanta.graph.index import GraphIndex
from quanta.graph.qdq import dequantize_back

__all__ = ["OpModel", "op_models"]


@dataclass(frozen=True)
class OpModel:
    """One integer op of the model as a model of its own: int inputs -> DQ -> op -> Q -> DQ."""

    node: str
    model: onnx.ModelProto
    inputs: list[str]  # the integer tensors (QuantizeLinear outputs / int graph inputs) it reads
    outputs: dict[str, str]  # its graph output -> the tensor of the full model it reproduces


def op_models(plain: onnx.ModelProto, integer_nodes: set[str]) -> list[OpModel]:
    """Cut every op the reference ran with integers out of ``plain`` (expanded QDQ), with its
    weights, its input DequantizeLinear and its output QuantizeLinear; ONNX Runtime fuses each
    as it fuses it in the full model (QLinearConv, QGemm, QLinearAdd, ...)."""
    cutter = _Cutter(plain)
    models = []
    for node in plain.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in cutter.input_types:
            models.append(cutter.edge(node))
        elif node.name in integer_nodes:
            op = cutter.integer_op(node)
            if op is not None:
                models.append(op)
    return models


class _Cutter:
    """Cuts single ops out of one expanded QDQ model into models of their own."""

    def __init__(self, plain: onnx.ModelProto) -> None:
        self.plain = plain
        index = GraphIndex(plain)
        self.inits, self.producer, self.readers = (
            index.initializers,
            index.producer,
            index.consumers,
        )
        self.graph_outputs = {o.name for o in plain.graph.output}
        self.input_types = {i.name: i.type.tensor_type.elem_type for i in plain.graph.input}

    def edge(self, quantize: onnx.NodeProto) -> OpModel:
        """A float graph input quantized (float32 division, half to even), and back."""
        back = f"{quantize.output[0]}__float"
        source = next(i for i in self.plain.graph.input if i.name == quantize.input[0])
        model = self._model(
            [quantize, dequantize_back(quantize, back)], f"edge_{quantize.name}", [source],
            [helper.make_empty_tensor_value_info(back)], quantize.input[1:],
        )  # fmt: skip
        return OpModel(quantize.name, model, [quantize.input[0]], {back: quantize.output[0]})

    def integer_op(self, node: onnx.NodeProto) -> OpModel | None:
        """``node`` with its input DequantizeLinears and output QuantizeLinears (None: it reads
        a float tensor, or nothing of its output is compared)."""
        nodes: list[onnx.NodeProto] = []
        used_inits: set[str] = set()
        int_inputs = self._integer_inputs(node, nodes, used_inits)
        if int_inputs is None:
            return None
        nodes.append(node)
        outputs: list[onnx.ValueInfoProto] = []
        mapping: dict[str, str] = {}
        for out in node.output:
            if out in self.graph_outputs:
                outputs.append(helper.make_empty_tensor_value_info(out))
                mapping[out] = out
            for q in self.readers.get(out, []):
                if q.op_type != "QuantizeLinear":
                    continue
                back = f"{q.output[0]}__float"
                nodes.extend([q, dequantize_back(q, back)])
                used_inits.update(q.input[1:])
                outputs.append(helper.make_empty_tensor_value_info(back))
                mapping[back] = q.output[0]
        if not outputs:
            return None
        inputs = [
            helper.make_tensor_value_info(name, elem, None) for name, elem in int_inputs.items()
        ]
        model = self._model(nodes, f"op_{node.name}", inputs, outputs, sorted(used_inits))
        return OpModel(node.name, model, list(int_inputs), mapping)

    def _integer_inputs(
        self, node: onnx.NodeProto, nodes: list[onnx.NodeProto], used_inits: set[str]
    ) -> dict[str, int] | None:
        """The integer tensors ``node`` reads through DequantizeLinears, with their ONNX element
        types; adds those DequantizeLinears (and constants) to ``nodes`` and the initializers they
        read to ``used_inits``. None if ``node`` reads a float tensor."""
        int_inputs: dict[str, int] = {}
        for name in node.input:
            if not name or name in self.inits:
                used_inits.add(name)
                continue
            dq = self.producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                if dq is not None and dq.op_type == "Constant":
                    nodes.append(dq)
                    continue
                return None  # a float input: not an integer group
            nodes.append(dq)
            used_inits.update(dq.input[1:])
            if dq.input[0] in self.inits:
                used_inits.add(dq.input[0])
                continue
            q = self.producer.get(dq.input[0])
            elem = (
                self.inits[q.input[2]].data_type if q is not None and len(q.input) > 2
                else self.input_types.get(dq.input[0], onnx.TensorProto.UINT8)
            )  # fmt: skip
            int_inputs.setdefault(dq.input[0], elem)
        return int_inputs

    def _model(
        self,
        nodes: list[onnx.NodeProto],
        name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        init_names: Iterable[str],
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            nodes, name, inputs, outputs, [self.inits[n] for n in init_names if n in self.inits]
        )
        model = helper.make_model(graph, opset_imports=list(self.plain.opset_import))
        model.ir_version = self.plain.ir_version
        return model
