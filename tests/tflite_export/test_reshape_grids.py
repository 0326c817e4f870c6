"""A layout-only op whose int8 output grid differs from its input's, in a QDQ model quanta did not
write: TFLite's RESHAPE and TRANSPOSE copy int8 values without rescaling, so the writer moves them
on the input's grid and a QUANTIZE follows onto the output's. Oracle: ONNX Runtime on the QDQ
model; LiteRT within one step of the output's grid."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tflite
from onnx import helper, numpy_helper

from quanta.runtime import make_session
from quanta.runtime.litert import tflite_operators as _operators
from quanta.tflite import onnx_to_tflite

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
IN_GRID, OUT_GRID = (0.02, -10), (0.05, 5)  # (scale, int8 zero point)


def _qdq_mover(op: str, in_shape: list[int], quantized_output: bool) -> onnx.ModelProto:
    """x -> Q/DQ on IN_GRID -> ``op`` -> [Q/DQ on OUT_GRID ->] y."""
    inits = [
        numpy_helper.from_array(np.array(IN_GRID[0], np.float32), "s_in"),
        numpy_helper.from_array(np.array(IN_GRID[1], np.int8), "z_in"),
        numpy_helper.from_array(np.array(OUT_GRID[0], np.float32), "s_out"),
        numpy_helper.from_array(np.array(OUT_GRID[1], np.int8), "z_out"),
    ]
    n = helper.make_node
    mover = {
        "Flatten": n("Flatten", ["xd"], ["m"], name="mover"),
        "Transpose": n("Transpose", ["xd"], ["m"], name="mover", perm=[0, 2, 1]),
    }.get(op)
    if mover is None:  # Reshape: (N, a, b...) -> (N, last, rest)
        rest = int(np.prod(in_shape[1:-1]))
        inits.append(numpy_helper.from_array(np.array([-1, in_shape[-1], rest], np.int64), "sh"))
        mover = n("Reshape", ["xd", "sh"], ["m"], name="mover")
    nodes = [
        n("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"], name="q_in"),
        n("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"], name="dq_in"),
        mover,
    ]
    if quantized_output:
        nodes += [
            n("QuantizeLinear", ["m", "s_out", "z_out"], ["mq"], name="q_out"),
            n("DequantizeLinear", ["mq", "s_out", "z_out"], ["y"], name="dq_out"),
        ]
    else:
        nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes, "qdq_mover",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", *in_shape[1:]])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def _litert(data: bytes, x: np.ndarray) -> np.ndarray:
    it = litert.Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    ys = []
    for sample in x[:, None]:
        # a 4-D input is NHWC in TFLite
        it.set_tensor(inp["index"], sample.transpose(0, 2, 3, 1) if x.ndim == 4 else sample)
        it.invoke()
        ys.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(ys)


@pytest.mark.parametrize(
    ("op", "in_shape", "ops"),
    [
        # an NCHW input is held NHWC: TRANSPOSE back to NCHW (on the input's grid), then RESHAPE
        ("Reshape", [1, 3, 4, 5], ["TRANSPOSE", "RESHAPE"]),
        ("Reshape", [1, 6, 4], ["RESHAPE"]),
        ("Flatten", [1, 3, 4, 5], ["TRANSPOSE", "RESHAPE"]),
        ("Transpose", [1, 6, 4], ["TRANSPOSE"]),
    ],
    ids=["reshape_nchw", "reshape_3d", "flatten_nchw", "transpose"],
)
@pytest.mark.parametrize("quantized_output", [True, False], ids=["qdq_output", "float_output"])
def test_mover_onto_another_grid_matches_onnx_runtime(
    op: str, in_shape: list[int], ops: list[str], quantized_output: bool
) -> None:
    model = _qdq_mover(op, in_shape, quantized_output)
    # spans more than the input's grid (-2.36..2.74) to exercise saturation too
    x = np.random.default_rng(0).uniform(-3, 3, (24, *in_shape[1:])).astype(np.float32)
    want = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    # a float output (no Q/DQ after the mover) is held on the grid of the range measured for it
    lo, hi = (-1.0, 3.0) if not quantized_output else (0.0, 0.0)
    data = onnx_to_tflite(model, {"y": (lo, hi)} if not quantized_output else None)
    # a Transpose with no Q/DQ after it keeps its input's grid (exact): no range, no QUANTIZE
    kept = op == "Transpose" and not quantized_output
    got = _litert(data, x)
    assert got.shape == want.shape
    if kept:
        step, limits = IN_GRID[0], (-np.inf, np.inf)
    elif quantized_output:
        step, limits = OUT_GRID[0], (-np.inf, np.inf)
    else:
        step, limits = (hi - lo) / 255, (lo, hi)  # TFLite clips to the measured range
    err = np.abs(got - np.clip(want, *limits)) / step
    # NOTE: one step, not half: LiteRT's int8 -> int8 QUANTIZE applies the scale ratio 0.4 as
    # about 0.398 (94 * 0.4 = 37.6 comes out 37), so ~9% of values land one step off ONNX
    # Runtime's exact rounding; written without the QUANTIZE, the Reshape is 86 steps off
    assert err.max() <= 1 + 1e-4, f"{err.max():.2f} steps of the output grid"
    assert _operators(data) == ["QUANTIZE", *ops, *["QUANTIZE"] * (not kept), "DEQUANTIZE"]
