"""Learned weight rounding: each layer's int8 weights rounded to keep its output, not its weights.

Rounding each weight to the nearest grid point minimizes ``|W - Wq|``; what the model needs is
a small output error ``|X·W - X·Wq|`` on the inputs the layer sees. With ``H = XᵀX`` (the layer's
input second moment over calibration data, ``(K, K)``), one output channel's error is
``(w - wq)ᵀ H (w - wq)``. GPTQ (Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization
for Generative Pre-trained Transformers", after Optimal Brain Quantization) minimizes it
sequentially: round input column ``i`` of every output channel at once, then spread that
column's rounding error over the columns not yet rounded through ``H⁻¹``, so they absorb it.
The grid (scale per output channel, ``[-qmax, qmax]``, zero point 0) is the one nearest rounding
uses; only which grid point each weight takes changes. Pure NumPy, float64, no randomness but
the seeded choice of rows, so the same model and data give the same bytes.

Covered: Conv with ``group == 1`` and explicit pads (its input unfolded into patches), Gemm
(``transA == 0``) and MatMul with a 2-D constant weight. Anything else keeps nearest rounding.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnx

from quanta.graph.calibrate import CalibrationData
from quanta.graph.index import GraphIndex
from quanta.graph.ops import get_attr
from quanta.graph.planner import StaticPlan
from quanta.graph.rewrite import REDUCED_MAX, quantize_weight
from quanta.runtime.session import session_with_outputs

if TYPE_CHECKING:
    from quanta.graph.apply_qdq import WeightCache

__all__ = ["COVERED", "gptq_round", "layer_matrix", "learned_rounding", "unfold_rows"]

COVERED = ("Conv", "Gemm", "MatMul")
DAMP = 0.01  # added to H's diagonal, as a fraction of its mean: keeps H⁻¹ well conditioned
BLOCK = 128  # columns rounded together before the rest is updated (same result, fewer passes)
SAMPLES = 64  # calibration samples whose layer inputs make H
ROWS = 4096  # input rows per layer and batch (a Conv has one per output position)


def gptq_round(
    weight: npt.NDArray[np.floating],
    scale: npt.NDArray[np.floating],
    hessian: np.ndarray,
    qmax: int,
) -> npt.NDArray[np.int8]:
    """Int8 values of ``weight`` ``(O, K)`` on the grid ``q · scale[o]``, ``q`` in
    ``[-qmax, qmax]``, chosen column by column to keep ``(w - wq)ᵀ H (w - wq)`` small.

    Rounding is half to even (``np.rint``) at each step; with ``H`` diagonal this is exactly
    nearest rounding.

    Args:
        weight: one row per output channel, ``(O, K)``.
        scale: the per-channel scale, ``(O,)`` (every entry > 0).
        hessian: ``XᵀX`` of the layer's inputs, ``(K, K)``, symmetric positive semi-definite.
        qmax: 127, or 64 for 7-bit weights.
    """
    # NOTE: columns go in order of decreasing H[i, i] ("act order" in GPTQ's code): the inputs
    # with the most energy are rounded first, while many columns remain to absorb their error.
    order = np.argsort(-np.diag(hessian), kind="stable")
    w = weight.astype(np.float64)[:, order]  # (O, K)
    s = scale.astype(np.float64).reshape(-1, 1)  # (O, 1)
    h = hessian.astype(np.float64)[np.ix_(order, order)]
    k = w.shape[1]
    dead = np.diag(h) <= 0  # inputs that are always zero: their weights do not matter
    h[dead, dead] = 1.0
    h[np.diag_indices(k)] += DAMP * float(np.mean(np.diag(h)))
    # upper Cholesky factor of H⁻¹: row i holds how column i's error spreads to columns > i
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # (K, K)
    q = np.zeros(w.shape, np.float64)
    for start in range(0, k, BLOCK):
        stop = min(start + BLOCK, k)
        block_err = np.zeros((w.shape[0], stop - start))
        for i in range(start, stop):
            qi = np.clip(np.rint(w[:, i : i + 1] / s), -qmax, qmax)  # (O, 1)
            q[:, i : i + 1] = qi
            err = (w[:, i : i + 1] - qi * s) / u[i, i]  # (O, 1)
            w[:, i + 1 : stop] -= err * u[i, i + 1 : stop]
            block_err[:, i - start] = err[:, 0]
        w[:, stop:] -= block_err @ u[start:stop, stop:]
    out = np.empty_like(q)
    out[:, order] = q
    return out.astype(np.int8)


def layer_matrix(node: onnx.NodeProto, weight: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``weight`` as ``(O, K)`` (one row per output channel, columns in the order of the input
    rows ``unfold_rows`` makes) and the weight's output-channel axis; None when not covered."""
    if node.op_type == "Conv" and weight.ndim >= 3 and int(get_attr(node, "group", 1)) == 1:
        return weight.reshape(weight.shape[0], -1), 0  # (O, I·kh·kw)
    if node.op_type == "Gemm" and weight.ndim == 2 and not get_attr(node, "transA", 0):
        if get_attr(node, "transB", 0):
            return weight, 0  # (N, K)
        return weight.T, 1  # (K, N) -> (N, K)
    if node.op_type == "MatMul" and weight.ndim == 2:
        return weight.T, 1
    return None


def unfold_rows(
    node: onnx.NodeProto,
    x: np.ndarray,
    kernel: tuple[int, ...],
    rng: np.random.Generator | None = None,
    limit: int = ROWS,
) -> np.ndarray | None:
    """The layer's input ``x`` as rows of ``K`` values, one row per output position: a Conv's
    patches (``(N·positions, I·kh·kw)``), a Gemm's or MatMul's rows (``(M, K)``). With ``rng``,
    at most ``limit`` of them, drawn without replacement (only those are copied)."""
    if node.op_type != "Conv":
        rows = x.reshape(-1, x.shape[-1])  # (M, K)
        return rows[_draw(len(rows), rng, limit)] if rng is not None else rows
    if get_attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None  # SAME_UPPER / VALID: not worth a second padding rule here
    spatial = len(kernel)
    pads = list(get_attr(node, "pads", [0] * 2 * spatial))
    strides = list(get_attr(node, "strides", [1] * spatial))
    dilations = list(get_attr(node, "dilations", [1] * spatial))
    widths = [(0, 0), (0, 0)] + [(pads[d], pads[d + spatial]) for d in range(spatial)]
    padded = np.pad(x, widths)
    # a dilated kernel covers (k - 1)·d + 1 inputs; take every d-th of them
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True))
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, span, axis=tuple(range(2, 2 + spatial))
    )  # (N, I, *out_full, *span), a view
    pick = tuple(slice(None, None, s) for s in strides) + tuple(
        slice(None, None, d) for d in dilations
    )
    windows = windows[(slice(None), slice(None), *pick)]  # (N, I, *out, *kernel), a view
    n, c = windows.shape[:2]
    grid = (n, *windows.shape[2 : 2 + spatial])
    count = int(np.prod(grid))
    chosen = _draw(count, rng, limit) if rng is not None else np.arange(count)
    at = np.unravel_index(chosen, grid)
    index: tuple[Any, ...] = (at[0], slice(None), *at[1:])
    patches = windows[index]  # (R, I, *kernel): only these rows are copied
    return patches.reshape(len(chosen), c * int(np.prod(kernel)))  # (R, I·kh·kw)


def _draw(count: int, rng: np.random.Generator | None, limit: int) -> np.ndarray:
    if rng is None or count <= limit:
        return np.arange(count)
    return np.sort(rng.choice(count, limit, replace=False))


def rounded(
    weight: np.ndarray, matrix_axis: int, scale: np.ndarray, hessian: np.ndarray, qmax: int
) -> np.ndarray:
    """``weight`` quantized on the grid ``scale`` (one per output channel) by ``gptq_round``,
    in its own layout."""
    matrix = weight.reshape(weight.shape[0], -1) if matrix_axis == 0 else weight.T
    q = gptq_round(matrix, scale, hessian, qmax)
    return q.reshape(weight.shape) if matrix_axis == 0 else np.ascontiguousarray(q.T)


def learned_rounding(
    model: onnx.ModelProto,
    plan: StaticPlan,
    data: CalibrationData,
    cache: WeightCache,
    *,
    per_channel: bool,
    reduced: bool,
    samples: int = SAMPLES,
) -> int:
    """Fill ``cache`` (``quanta.graph.apply_qdq``) with GPTQ-rounded int8 weights for the
    planned layers it covers, from their float inputs on the first ``samples`` samples of
    ``data``; returns how many weights it rounded. A weight read by several layers (an unrolled
    recurrent cell) is rounded once, for the sum of their ``H``."""
    index = GraphIndex(model)
    layers: dict[tuple[str, int | None], list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        op_plan = plan.plans.get(node.name)
        if op_plan is None or node.op_type not in COVERED:
            continue
        for slot, axis in op_plan.weights:
            weight = index.constant(node.input[slot]) if slot == 1 else None
            shape = layer_matrix(node, weight) if weight is not None else None
            if shape is None or shape[1] != axis:
                continue
            key = (node.input[slot], axis if per_channel else None)
            layers.setdefault(key, []).append((node, shape[1]))
    if not layers:
        return 0
    hessians = _hessians(model, index, layers, data, samples)
    for key, h in hessians.items():
        weight = index.constant(key[0])
        _, qp = quantize_weight(weight, key[1], reduced=reduced)
        matrix_axis = layers[key][0][1]
        channels = weight.shape[matrix_axis]
        scale = np.broadcast_to(np.asarray(qp.scale, np.float64).reshape(-1), (channels,))
        cache[key] = (rounded(weight, matrix_axis, scale, h, REDUCED_MAX if reduced else 127), qp)
    return len(hessians)


def _hessians(
    model: onnx.ModelProto,
    index: GraphIndex,
    layers: Mapping[tuple[str, int | None], list[tuple[onnx.NodeProto, int]]],
    data: CalibrationData,
    samples: int,
) -> dict[tuple[str, int | None], np.ndarray]:
    """``XᵀX`` of each weight's layer inputs (summed over its readers), at most ``ROWS`` rows
    per reader and batch, chosen with a seed from the weight's name."""
    tensors = sorted({node.input[0] for readers in layers.values() for node, _ in readers})
    session = session_with_outputs(model, tensors, threads=1)
    names = [o.name for o in session.get_outputs()]
    hessians: dict[tuple[str, int | None], np.ndarray] = {}
    skipped: set[tuple[str, int | None]] = set()
    seen = 0
    for feed in data.batches(model, batch_size=8):
        values = dict(zip(names, session.run(names, feed), strict=True))
        for key, readers in layers.items():
            weight = index.constant(key[0])
            for node, _ in readers:
                rng = np.random.default_rng([zlib.crc32(key[0].encode()), seen])
                rows = unfold_rows(node, values[node.input[0]], tuple(weight.shape[2:]), rng)
                if rows is None:
                    skipped.add(key)
                    continue
                r = rows.astype(np.float64)
                hessians[key] = hessians.get(key, 0) + r.T @ r
        seen += len(next(iter(feed.values())))
        if seen >= samples:
            break
    return {k: h for k, h in hessians.items() if k not in skipped}
