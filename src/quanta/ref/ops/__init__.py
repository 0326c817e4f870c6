"""Integer kernels of the reference executor, one file per op family, in one registry.

A kernel takes the node's inputs as ``QTensor`` (integers on a grid; None for an absent or
non-quantized input such as a shape) and returns its outputs as QTensors. Ops that sum
products (Conv, Gemm, MatMul, Add, Mul, average pools) return their int32 *accumulator*, on the
grid whose step is what one unit of the sum is worth (``s_in * s_w`` for a Conv); the
QuantizeLinear after them requantizes it with the fixed-point multiplier ``M = s_acc / s_out``
(``quanta.ref.fixed_point``). Value movers (MaxPool, Reshape, Transpose, ...) return their
input's integers rearranged, on the input's grid.

A kernel raises ``NotInteger`` for a configuration it cannot compute with integers; the
executor then runs that node in float and counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper

from quanta.quant import QParams
from quanta.ref.tensor import QTensor

__all__ = ["KERNELS", "Kernel", "NotInteger", "OpContext", "register"]


class NotInteger(Exception):
    """This node, as configured, has no integer-only form here; run it in float."""


@dataclass
class OpContext:
    """What a kernel may read besides its integer inputs."""

    node: onnx.NodeProto
    constants: dict[str, np.ndarray]
    out: QParams | None = None  # the grid of the QuantizeLinear reading the output, if any
    rounding: str = "double"  # of fixed-point multiplications (quanta.ref.fixed_point)
    emulate_avx2: bool = False  # u8 x s8 pair sums in saturating int16 (quanta.ref.saturation)
    saturated: int = 0  # set by a kernel: outputs the emulation changed
    attrs: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.attrs = {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    def constant(self, position: int) -> np.ndarray | None:
        """The constant value of input ``position`` (shapes, axes, indices), if it has one."""
        if position >= len(self.node.input) or not self.node.input[position]:
            return None
        return self.constants.get(self.node.input[position])


Kernel = Callable[[OpContext, list[QTensor | None]], list[QTensor]]


@dataclass(frozen=True)
class _Entry:
    kernel: Kernel
    data_inputs: Sequence[int] | None  # positions that carry quantized data; None: all


KERNELS: dict[str, _Entry] = {}


def register(
    *op_types: str, data_inputs: Sequence[int] | None = (0,)
) -> Callable[[Kernel], Kernel]:
    def wrap(kernel: Kernel) -> Kernel:
        for op in op_types:
            KERNELS[op] = _Entry(kernel, data_inputs)
        return kernel

    return wrap


def accumulator(q: np.ndarray, scale: npt.ArrayLike, axis: int | None) -> QTensor:
    """An int32 sum whose unit is worth ``scale`` (per ``axis`` when an array)."""
    scale = np.asarray(scale, np.float32)
    return QTensor(
        q.astype(np.int64), QParams(scale, np.zeros(scale.shape, np.int32), "int32", axis)
    )


def per_tensor(t: QTensor | None, what: str) -> QTensor:
    if t is None:
        raise NotInteger(f"{what} is not quantized")
    if t.qp.axis is not None:
        raise NotInteger(f"{what} has per-axis parameters")
    return t


def spatial_attrs(ctx: OpContext, kernel: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """strides, pads (begin..., end...), dilations of a 2-D window op (auto_pad NOTSET/VALID)."""
    attrs = ctx.attrs
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise NotInteger("auto_pad SAME_* is not supported")
    n = len(kernel)
    strides = list(attrs.get("strides", [1] * n))
    pads = list(attrs.get("pads", [0] * (2 * n)))
    dilations = list(attrs.get("dilations", [1] * n))
    return strides, pads, dilations


def windows(
    q: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    fill: int,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Sliding 2-D windows of ``q`` (N, C, H, W) -> (N, C, OH, OW, kh, kw), padded with ``fill``."""
    if q.ndim != 4 or len(kernel) != 2:
        raise NotInteger("only 2-D (N, C, H, W) windows are supported")
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    top, left, bottom, right = pads
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h, w = q.shape[2] + top + bottom, q.shape[3] + left + right
    if ceil_mode:  # extra end padding so that a last partial window exists
        bottom += (-(h - eh)) % sh
        right += (-(w - ew)) % sw
    padded = np.pad(q, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(padded, (eh, ew), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


# the op files register themselves
from quanta.ref.ops import add, concat, conv, gemm, mul, pool, reshape  # noqa: E402, F401
