"""Ops that move int8 values without arithmetic: RESHAPE (Flatten, Reshape), TRANSPOSE (back to
NCHW, or an ONNX Transpose), and PAD for a window op's explicit pads. TFLite's int8 kernels keep
their input's grid, so a Reshape or Transpose whose output has another grid (a QDQ model from
elsewhere; quanta's own keep the input's) is followed by a QUANTIZE onto it.

A Transpose between NCHW and NHWC (the layout Transposes of a model that takes NHWC, such as an
imported ``.tflite``) writes no operator: its output is its input's TFLite tensor, held in the
other layout (``Act.nhwc``).

A Flatten/Reshape of an NHWC tensor that feeds only fully connected layers needs no TRANSPOSE:
the (C, H, W) -> (H, W, C) column order is folded into those layers' weights instead
(``ctx.folded``, read by ``fully_connected``).
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Act, Context, attr
from quanta.tflite.writer import TensorSpec, int_vector, options

B = tflite.BuiltinOperator


def to_nchw(ctx: Context, act: Act, prefix: str) -> int:
    """An int8 NCHW copy of the NHWC tensor ``act`` (a TRANSPOSE on the same grid)."""
    n, h, w, c = ctx.shape_of(act)
    y = ctx.int8(f"{prefix}_nchw", [n, c, h, w], ctx.grid_of(act.index))
    perm = ctx.constant(f"{prefix}_perm", np.array([0, 3, 1, 2], np.int32))
    ctx.emit(B.TRANSPOSE, [act.index, perm], [y], options("TransposeOptions"))
    return y


def _explicit_pads(
    node: onnx.NodeProto, sizes: list[int], kernel: list[int], strides: list[int]
) -> list[int]:
    """The node's pads (begin..., end...), spelled out where ``auto_pad`` is SAME_UPPER or
    SAME_LOWER (tf2onnx writes them so): as ONNX computes them, ``ceil(size / stride)``
    outputs, the odd pad at the end (UPPER) or the beginning (LOWER)."""
    auto = attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        return list(attr(node, "pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
    dilations = list(attr(node, "dilations", [1, 1]))  # type: ignore[call-overload]
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin + end


def window_padding(
    ctx: Context, node: onnx.NodeProto, x: Act, kernel: list[int]
) -> tuple[int, Act]:
    """TFLite padding mode of a Conv/pool, and the tensor the window op reads.

    TFLite's SAME is ONNX's centred pads, and its pools leave that padding out: a max over real
    values, an average over the real count (ONNX's ``count_include_pad=0``). Other pads become
    a PAD before a VALID window, filled with zeros (the zero point) for a Conv and for an
    AveragePool that counts its padding, and with the lowest value of the tensor's type for a
    MaxPool, which then never takes a pad for the max. A MaxPool's ``ceil_mode`` pads the end
    the same way, so its last, partial window exists. An AveragePool that leaves non-centred
    pads out of its count, or rounds its output size up, has no TFLite form."""
    strides = list(attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
    t = ctx.out.tensors[x.index]  # N, H, W, C
    pads = _explicit_pads(node, list(t.shape[1:3]), kernel, strides)
    maximum = node.op_type == "MaxPool"
    average = node.op_type == "AveragePool"
    counts_pads = average and bool(attr(node, "count_include_pad", 0))
    if attr(node, "ceil_mode", 0):
        if not maximum:
            raise ModelError(f"{node.op_type} {node.name!r}: ceil_mode has no TFLite form")
        out = ctx.nhwc_shape(node.output[0], t.shape[0])
        for axis, (size, k, s) in enumerate(zip(t.shape[1:3], kernel, strides, strict=True)):
            pads[axis + 2] += max(
                (out[axis + 1] - 1) * s + k - size - pads[axis] - pads[axis + 2], 0
            )
    if not any(pads):
        return tflite.Padding.VALID, x
    same = True
    for axis, (size, k, s) in enumerate(zip(t.shape[1:3], kernel, strides, strict=True)):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        if [pads[axis], pads[axis + 2]] != [total // 2, total - total // 2]:
            same = False
    if same and not counts_pads:
        return tflite.Padding.SAME, x
    if average and not counts_pads:
        raise ModelError(
            f"AveragePool {node.name!r}: pads {pads} left out of the average have no TFLite "
            "form (TFLite leaves out only centred pads)"
        )
    n, h, w, c = t.shape
    padded_shape = [n, h + pads[0] + pads[2], w + pads[1] + pads[3], c]
    paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
    inputs = [x.index, ctx.constant(f"{node.name}_paddings", paddings)]
    # same type and grid as the input
    y = ctx.add(
        TensorSpec(
            f"{node.name}_padded", padded_shape, t.dtype, scale=t.scale, zero_point=t.zero_point
        )
    )
    if not maximum:  # zeros: int8 pads with its zero point (real 0), float with 0
        ctx.emit(B.PAD, inputs, [y], options("PadOptions"))
        return tflite.Padding.VALID, Act(y, True)
    low = np.iinfo(t.dtype).min if np.issubdtype(t.dtype, np.integer) else np.finfo(t.dtype).min
    fill = TensorSpec(
        f"{node.name}_pad_value", [1], t.dtype, data=np.array([low], t.dtype),
        scale=t.scale, zero_point=t.zero_point,
    )  # fmt: skip
    ctx.emit(B.PADV2, [*inputs, ctx.add(fill)], [y], options("PadV2Options"))
    return tflite.Padding.VALID, Act(y, True)


def _folds_into_fully_connected(ctx: Context, node: onnx.NodeProto, x: Act) -> bool:
    """Whether every reader of this NHWC Flatten/Reshape (through its Q/DQ) is a Gemm/MatMul."""
    users = ctx.index.consumers.get(node.output[0], [])
    q = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
    if not x.nhwc or q is None:
        return False
    readers = [
        r
        for dq in ctx.index.consumers.get(q.output[0], [])
        for r in ctx.index.consumers.get(dq.output[0], [])
    ]
    return bool(readers) and all(r.op_type in ("Gemm", "MatMul") for r in readers)


def reshape(ctx: Context, node: onnx.NodeProto) -> None:
    """Flatten and Reshape: RESHAPE to the ONNX shape, any batch."""
    x = ctx.act_of(node.input[0])
    t = ctx.out.tensors[x.index]
    fold = _folds_into_fully_connected(ctx, node, x)
    # NOTE: 1 x 1 pixels (after a global pool) are in the same order in NHWC and NCHW
    transpose = x.nhwc and not fold and list(t.shape[1:3]) != [1, 1]
    source = to_nchw(ctx, x, node.name) if transpose else x.index
    dims = ctx.shapes.get(node.output[0])
    batch = t.shape[0]
    features = int(np.prod(t.shape[1:]))
    shape = (
        [batch, features]
        if dims is None or len(dims) == 2
        else [batch if d is None else d for d in dims]
    )
    y = ctx.output_act(node, shape, False)
    if fold:
        _, h, w, c = t.shape
        q = ctx.index.consumers[node.output[0]][0]
        aliases = [node.output[0], q.output[0]]
        aliases += [d.output[0] for d in ctx.index.consumers.get(q.output[0], [])]
        for name in aliases:
            ctx.folded[name] = (c, h, w)
    # NOTE: TFLite's RESHAPE copies int8 values without rescaling; where the output's grid is not
    # its input's (a QDQ model from elsewhere), reshape on the input's grid and QUANTIZE onto it
    grid = ctx.grid_of(source)
    if ctx.grid_of(y) == grid:
        emit_reshape(ctx, node.name, source, y, shape)
        return
    reshaped = ctx.int8(f"{node.output[0]}_reshaped", shape, grid)
    emit_reshape(ctx, node.name, source, reshaped, shape)
    ctx.emit(B.QUANTIZE, [reshaped], [y], None, 2)


def emit_reshape(ctx: Context, name: str, source: int, y: int, shape: list[int]) -> None:
    """RESHAPE ``source`` into ``y`` of ``shape``, its batch left free (-1)."""
    new_shape = [-1, *shape[1:]]  # any batch
    shape_t = ctx.constant(f"{name}_shape", np.array(new_shape, np.int32))

    def reshape_options(b: object) -> tuple[int, int]:
        vec = int_vector(b, tflite.ReshapeOptionsStartNewShapeVector, new_shape)
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, vec)
        return tflite.BuiltinOptions.ReshapeOptions, tflite.ReshapeOptionsEnd(b)

    ctx.emit(B.RESHAPE, [source, shape_t], [y], reshape_options)


# NOTE: an Act holds an ONNX tensor O as the TFLite tensor T = O, or for ``nhwc`` as
# T = O.transpose(NCHW_TO_NHWC). A Transpose between those two layouts is then no operator at
# all: its output is the same TFLite tensor with the other flag.
NCHW_TO_NHWC = [0, 2, 3, 1]
NHWC_TO_NCHW = [0, 3, 1, 2]


def _transposed(ctx: Context, node: onnx.NodeProto, x: Act) -> tuple[bool | None, list[int]]:
    """(the ``nhwc`` flag of an alias of ``x``, or None when a TRANSPOSE is needed; the
    TFLite permutation that TRANSPOSE applies to ``x``'s tensor, its output then held as is)."""
    perm = [int(p) for p in attr(node, "perm", [])]  # type: ignore[attr-defined]
    rank = len(ctx.shape_of(x))
    perm = perm or list(range(rank))[::-1]
    if x.nhwc and perm == NCHW_TO_NHWC:
        return False, perm
    if not x.nhwc and perm == NHWC_TO_NCHW:
        return True, perm
    held = NHWC_TO_NCHW if x.nhwc else list(range(rank))  # O = T.transpose(held)
    return None, [held[p] for p in perm]


def _emit_transpose(ctx: Context, x: Act, perm: list[int], y: int, name: str) -> None:
    p_index = ctx.constant(f"{name}_perm", np.array(perm, np.int32))
    ctx.emit(B.TRANSPOSE, [x.index, p_index], [y], options("TransposeOptions"))


def transpose(ctx: Context, node: onnx.NodeProto) -> None:
    """An int8 Transpose: an alias between the NCHW and NHWC views (no operator), else
    TRANSPOSE; a QUANTIZE follows only when the grid after it differs (it keeps its input's)."""
    x = ctx.act_of(node.input[0])
    nhwc, perm = _transposed(ctx, node, x)
    users = ctx.index.consumers.get(node.output[0], [])
    q = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
    name = q.output[0] if q is not None else node.output[0]
    if nhwc is None:
        shape = [ctx.shape_of(x)[p] for p in perm]
        y = ctx.int8(f"{name}_transposed", shape, ctx.grid_of(x.index))
        _emit_transpose(ctx, x, perm, y, name)
        x, nhwc = Act(y, False), False
    grid = ctx.grid(q) if q is not None else ctx.grid_of(x.index)
    act = Act(ctx.requantized(x, grid, name), nhwc)
    if q is not None:
        ctx.bind(q.output[0], act)
    else:
        ctx.acts[node.output[0]] = act


def float_transpose(ctx: Context, node: onnx.NodeProto) -> None:
    """A float Transpose (the layout Transpose on a float input): an alias, else TRANSPOSE."""
    name = node.input[0]
    # a constant, else computed float or int8 behind a DEQUANTIZE
    x = ctx.float_constant(name) if name in ctx.consts else ctx.float_of(name)
    nhwc, perm = _transposed(ctx, node, x)
    if nhwc is None:
        shape = [ctx.shape_of(x)[p] for p in perm]
        y = ctx.add(TensorSpec(node.output[0], shape, np.dtype(np.float32)))
        _emit_transpose(ctx, x, perm, y, node.output[0])
        ctx.floats[node.output[0]] = Act(y, False)
    else:
        ctx.floats[node.output[0]] = Act(x.index, nhwc)


def input_layout(ctx: Context, value: onnx.ValueInfoProto) -> tuple[list[int], bool]:
    """(TFLite shape, ``nhwc``) of a model input. A 4-D input is taken as NCHW and held NHWC,
    unless the model itself takes NHWC: every reader is a Transpose to NCHW (an imported
    ``.tflite``, a tf2onnx model), which then is no operator and the input keeps its layout."""
    dims = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
    if len(dims) != 4:
        return dims, False
    users = ctx.index.consumers.get(value.name, [])
    own = bool(users) and all(
        u.op_type == "Transpose" and list(attr(u, "perm", [])) == NHWC_TO_NCHW  # type: ignore[call-overload]
        for u in users
    )
    if own:
        return dims, False
    return [dims[0], dims[2], dims[3], dims[1]], True  # (N, H, W, C)
