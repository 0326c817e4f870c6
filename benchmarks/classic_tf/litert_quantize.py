"""Run by benchmarks/classic_tf.py in a Python with ``litert-quantizer`` (Google's quantizer for
float ``.tflite`` files, formerly ai-edge-quantizer): its documented full-integer recipe,
``recipe.static_wi8_ai8()`` (int8 per-channel symmetric weights, int8 per-tensor asymmetric
activations, min/max calibration), calibrated on the given samples.

    python litert_quantize.py FLOAT.tflite CALIB.npz OUT.tflite

CALIB.npz: one array per model input, keyed by the TFLite input tensor's name, samples on axis
0, in the layout the ``.tflite`` takes (NHWC). Prints one JSON line with the version used.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from litert_quantizer import quantizer, recipe


def with_signature(model: bytes) -> bytes:
    """``model`` with a ``serving_default`` signature over subgraph 0's inputs and outputs if it
    has none (MediaPipe's files have none; the quantizer calibrates through a signature). The
    graph, its tensors and its weights are unchanged."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    if obj.signatureDefs:
        return model
    graph = obj.subgraphs[0]

    def tensor_map(indices) -> list:  # type: ignore[no-untyped-def,type-arg]
        maps = []
        for i in indices:
            name = graph.tensors[i].name
            maps.append(schema.TensorMapT(name.decode() if isinstance(name, bytes) else name, i))
        return maps

    obj.signatureDefs = [
        schema.SignatureDefT(
            tensor_map(graph.inputs), tensor_map(graph.outputs), "serving_default", 0
        )
    ]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def signature_feeds(model: bytes, calib: dict[str, np.ndarray]) -> tuple[str, list[dict]]:
    """The default signature's key and one feed per sample, keyed by the signature's input names
    (which differ from the tensor names: ``serving_default_x:0`` is ``x``)."""
    it = Interpreter(model_content=model)
    key = next(iter(it.get_signature_list()))
    details = it.get_signature_runner(key).get_input_details()
    by_index = {d["index"]: d["name"] for d in it.get_input_details()}
    names = {sig_name: by_index[d["index"]] for sig_name, d in details.items()}
    count = len(next(iter(calib.values())))
    samples = [{s: calib[t][i : i + 1] for s, t in names.items()} for i in range(count)]
    return key, samples


def main() -> int:
    float_path, calib_path, out_path = sys.argv[1:4]
    model = with_signature(Path(float_path).read_bytes())
    calib = dict(np.load(calib_path))
    key, samples = signature_feeds(model, calib)
    qt = quantizer.Quantizer(model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    result = qt.calibrate({key: samples}, num_threads=1)
    quantized = qt.quantize(result, enable_progress_report=False).quantized_model
    Path(out_path).write_bytes(bytes(quantized))
    print(json.dumps({"litert_quantizer": version("litert-quantizer")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
