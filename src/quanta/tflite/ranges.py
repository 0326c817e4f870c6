"""The float ranges a full-integer TFLite file needs and a QDQ model does not hold.

quanta's int8 ONNX model keeps some tensors float that TFLite must hold in int8: a graph output
written by an integer op (QGemm's float logits) and the input of a Softmax or Sigmoid, which
TFLite runs on int8. Their ranges are measured by running the model on samples, once, when
``quanta quantize`` writes the model (``record_ranges``: JSON in the model's metadata), so that
``quanta export-tflite`` needs no second calibration; ``--calibration`` measures them for any
other QDQ model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import onnx

from quanta.runtime.batching import run_batched
from quanta.runtime.session import session_with_outputs

__all__ = ["RANGES_KEY", "measure_ranges", "record_ranges", "recorded_ranges", "tflite_tensors"]

RANGES_KEY = "quanta.tflite_ranges"

Ranges = dict[str, tuple[float, float]]


def tflite_tensors(model: onnx.ModelProto) -> list[str]:
    """The float tensors TFLite holds in int8: the outputs, and what a Softmax/Sigmoid reads."""
    names = [o.name for o in model.graph.output]
    names += [n.input[0] for n in model.graph.node if n.op_type in ("Softmax", "Sigmoid")]
    return list(dict.fromkeys(names))


def measure_ranges(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> Ranges:
    """The min and max of each of ``tflite_tensors(model)`` over the samples ``feeds``."""
    names = tflite_tensors(model)
    session = session_with_outputs(model, names)
    values = run_batched(session, feeds, names=names)
    return {n: (float(np.min(v)), float(np.max(v))) for n, v in zip(names, values, strict=True)}


def record_ranges(model: onnx.ModelProto, ranges: Ranges) -> None:
    """Store ``ranges`` in ``model``'s metadata (replacing an earlier record), in place."""
    for prop in [p for p in model.metadata_props if p.key == RANGES_KEY]:
        model.metadata_props.remove(prop)
    doc = {name: [lo, hi] for name, (lo, hi) in sorted(ranges.items())}
    model.metadata_props.add(key=RANGES_KEY, value=json.dumps(doc))


def recorded_ranges(model: onnx.ModelProto) -> Ranges:
    """The ranges ``record_ranges`` stored in ``model`` (empty when there are none)."""
    for prop in model.metadata_props:
        if prop.key == RANGES_KEY:
            doc = json.loads(prop.value)
            return {name: (float(lo), float(hi)) for name, (lo, hi) in doc.items()}
    return {}
