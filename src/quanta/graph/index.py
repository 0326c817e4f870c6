"""A read-only index over an ONNX graph: who produces and consumes each tensor, and constants."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["GraphIndex"]


class GraphIndex:
    """Lookups that every graph pass needs; build a new one after changing the graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.model = model
        self.initializers: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.graph_outputs = {o.name for o in graph.output}
        self.elem_type: dict[str, int] = {}
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.type.HasField("tensor_type"):
                self.elem_type[value.name] = value.type.tensor_type.elem_type
        for init in graph.initializer:
            self.elem_type[init.name] = init.data_type
        self._constants: dict[str, np.ndarray] = {}

    def is_constant(self, name: str) -> bool:
        """An initializer, or the output of a Constant node."""
        if name in self.initializers:
            return True
        node = self.producer.get(name)
        return node is not None and node.op_type == "Constant"

    def constant(self, name: str) -> np.ndarray:
        """The value of an initializer or Constant node output (cached)."""
        if name not in self._constants:
            if name in self.initializers:
                self._constants[name] = numpy_helper.to_array(self.initializers[name])
            else:
                node = self.producer[name]
                attr = next(a for a in node.attribute if a.name == "value")
                self._constants[name] = numpy_helper.to_array(attr.t)
        return self._constants[name]

    def is_float(self, name: str) -> bool:
        return self.elem_type.get(name) == onnx.TensorProto.FLOAT

    def owns_initializer(self, node: onnx.NodeProto, k: int) -> bool:
        """Whether ``node``'s input ``k`` is an initializer that no other node reads (a pass may
        rewrite it in place)."""
        name = node.input[k] if len(node.input) > k else ""
        return bool(name) and name in self.initializers and len(self.consumers[name]) == 1

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        if len(users) == 1 and name not in self.graph_outputs:
            return users[0]
        return None
