"""Small float-kept weights are stored int8 where that makes the file smaller.

A Conv kept float (here: on request, or for speed) still reads its weight through
``Cast -> Mul`` when int8 values, one scale per output channel and the decoder take fewer bytes
than float32; a weight of one value per channel never does; a node kept float for its answers
keeps a small weight exact.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.weight_only import DECODER_BYTES, compress_float_weights, saves_bytes
from quanta.runtime import make_session


def two_convs() -> onnx.ModelProto:
    """x (N, 4, 6, 6) -> 3x3 Conv (4 -> 8, 288 values) -> 3x3 Conv (8 -> 3, 216 values)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv3x3", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    inits = {"w1": rand(8, 4, 3, 3, seed=1), "b1": rand(8, seed=2), "w2": rand(3, 8, 3, 3, seed=3)}
    return make_model(nodes, {"x": ["N", 4, 6, 6]}, {"y": ["N", 3, 6, 6]}, inits)


def _float_weights(model: onnx.ModelProto) -> set[str]:
    """The float32 initializers a Conv reads as its weight."""
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return {n.input[1] for n in model.graph.node if n.op_type == "Conv"} & floats


def test_the_rule_counts_bytes() -> None:
    # 288 values, 8 scales: 864 bytes saved against 32 + the decoder
    assert saves_bytes(np.zeros((8, 4, 3, 3)), np.zeros((8, 1, 1, 1)))
    # one value per channel: int8 + a float32 scale each is larger than float32
    assert not saves_bytes(np.zeros((64, 1, 1, 1)), np.zeros((64, 1, 1, 1)))
    # the decoder's own bytes decide at the margin
    n = DECODER_BYTES // 3 + 1
    assert saves_bytes(np.zeros(n + 2), np.zeros(1)) and not saves_bytes(np.zeros(n), np.zeros(1))


def test_small_weights_are_stored_int8_where_smaller() -> None:
    model = two_convs()
    x = rand(2, 4, 6, 6, seed=4, std=1.0)
    want = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    size = model.ByteSize()
    assert compress_float_weights(model) == 2  # both save bytes at this size
    assert not _float_weights(model)
    assert model.ByteSize() < size
    got = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    # weight rounding only, one scale per output channel: within 2 % of the largest output
    np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max())
    assert not np.array_equal(got, want)

    wide = make_model(  # 2 output channels of one value each: int8 would be larger
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        {"x": ["N", 1, 4, 4]},
        {"y": ["N", 2, 4, 4]},
        {"w": rand(2, 1, 1, 1, seed=5)},
    )
    assert compress_float_weights(wide) == 0 and _float_weights(wide) == {"w"}


def test_nodes_kept_float_for_their_answers_keep_small_weights_exact() -> None:
    model = two_convs()
    w1 = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w1"))
    assert compress_float_weights(model, exact={"conv3x3"}) == 1
    assert _float_weights(model) == {"w1"}
    stored = next(t for t in model.graph.initializer if t.name == "w1")
    np.testing.assert_array_equal(numpy_helper.to_array(stored), w1)


def test_static_keeps_a_node_kept_float_on_request_exact() -> None:
    data = CalibrationData({"x": rand(32, 4, 6, 6, seed=6, std=1.0)})
    config = QuantizeConfig(min_fidelity=None, latency_check=False)
    result = quantize_static(two_convs(), data, config, keep_float={"conv3x3": "asked for"})
    assert "conv3x3" in {f.name for f in result.float_nodes}
    consts = {t.name: t for t in result.model.graph.initializer}
    (conv,) = [n for n in result.model.graph.node if n.name == "conv3x3"]
    assert consts[conv.input[1]].data_type == onnx.TensorProto.FLOAT  # exact, as asked


def test_a_small_embedding_table_stays_exact_a_large_one_is_stored_int8() -> None:
    """A gathered row is added to the stream as it is: a table under ``EXACT_BELOW`` values
    stays float32 (bit-exact), a larger one is stored int8 with one float32 scale per row."""
    small, large = rand(2, 64, seed=7), rand(40, 64, seed=8)  # 128 and 2,560 values
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["small", "i"], ["a"], name="g_small"),
            helper.make_node("Gather", ["large", "i"], ["b"], name="g_large"),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        "tables",
        [helper.make_tensor_value_info("i", onnx.TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 64])],
        [numpy_helper.from_array(small, "small"), numpy_helper.from_array(large, "large")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert compress_float_weights(model) == 1
    tables = {t.name: t for t in model.graph.initializer}
    assert tables["small"].data_type == onnx.TensorProto.FLOAT
    np.testing.assert_array_equal(numpy_helper.to_array(tables["small"]), small)
    assert "large" not in tables
    # the large table's per-row scales stay float32 (no Cast from float16 before the Mul)
    producer = {o: n for n in model.graph.node for o in n.output}
    decode = producer[next(n for n in model.graph.node if n.name == "g_large").input[0]]
    assert decode.op_type == "Mul" and decode.input[1] in tables
    assert tables[decode.input[1]].data_type == onnx.TensorProto.FLOAT
    i = np.array([0, 1, 1], np.int64)
    got = make_session(model.SerializeToString()).run(None, {"i": i})[0]
    np.testing.assert_allclose(got, small[i] + large[i], atol=np.abs(large).max() / 127)
