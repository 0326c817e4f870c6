"""RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR as ONNX Resize (on NCHW, between Transposes).

TFLite's flags map onto ONNX's ``coordinate_transformation_mode``: ``align_corners`` ->
"align_corners", ``half_pixel_centers`` -> "half_pixel" (bilinear) or "tf_half_pixel_for_nn"
(nearest), neither -> "asymmetric". TFLite's nearest neighbour rounds down (``floor``), or to
the nearest (``round_prefer_ceil``) with ``align_corners``.
"""

from __future__ import annotations

import numpy as np

from quanta.tflite.read_context import ImportContext, Op

__all__ = ["resize_bilinear", "resize_nearest_neighbor"]


def _resize(ctx: ImportContext, op: Op, mode: str) -> None:
    o = op.options
    x, y = op.inputs[0], op.outputs[0]
    align, half = bool(o.AlignCorners()), bool(o.HalfPixelCenters())
    if align:
        coords = "align_corners"
    elif half:
        coords = "half_pixel" if mode == "linear" else "tf_half_pixel_for_nn"
    else:
        coords = "asymmetric"
    n, h, w, c = ctx.baked_shape(y)
    name = ctx.name(y)
    sizes = ctx.constant(f"{name}_sizes", np.array([n, c, h, w], np.int64))
    attrs: dict[str, object] = {"mode": mode, "coordinate_transformation_mode": coords}
    if mode == "nearest":
        attrs["nearest_mode"] = "round_prefer_ceil" if align else "floor"
    out = ctx.node(
        "Resize", [ctx.to_nchw(ctx.name(x)), "", "", sizes], [ctx.fresh(f"{name}_nchw")], **attrs
    )
    ctx.from_nchw(out, name)


def resize_bilinear(ctx: ImportContext, op: Op) -> None:
    _resize(ctx, op, "linear")


def resize_nearest_neighbor(ctx: ImportContext, op: Op) -> None:
    _resize(ctx, op, "nearest")
