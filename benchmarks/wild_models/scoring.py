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


def detections(boxes: Callable[[np.ndarray], np.ndarray] = _yolox_boxes) -> Scorer:
    """Fraction of the float model's detections (after the package's NMS) that the candidate
    keeps: a candidate box of the same class with IoU >= 0.5, each matched once."""

    def score(ref: Outputs, out: Outputs) -> float:
        kept = total = 0
        for r, o in zip(ref, out, strict=True):
            want, got = boxes(r[0]), list(boxes(o[0]))
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
