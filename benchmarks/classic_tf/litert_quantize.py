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


def prepared(model: bytes) -> bytes:
    """``model`` as litert-quantizer can read it; the graph, its tensors and its weights are
    unchanged.

    - Each operator code's ``builtin_code`` is set to ``max(builtin_code,
      deprecated_builtin_code)``, as LiteRT's own reader takes it. Files written before that
      field existed (MediaPipe's) hold their code only in ``deprecated_builtin_code``, and
      litert-quantizer 0.11.0 reads only ``builtin_code``: it took every operator for ADD (0)
      and quantized the weights as activations (asymmetric per-tensor int8), which LiteRT's
      CONV_2D refuses (``zero_point ... != 0``).
    - A ``serving_default`` signature over subgraph 0's inputs and outputs is added if the
      file has none (MediaPipe's have none; the quantizer calibrates through a signature).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    codes = obj.operatorCodes
    stale = any(c.builtinCode < c.deprecatedBuiltinCode for c in codes)
    if obj.signatureDefs and not stale:
        return model
    for c in codes:
        c.builtinCode = max(c.builtinCode, c.deprecatedBuiltinCode)
    graph = obj.subgraphs[0]

    def tensor_map(indices) -> list:  # type: ignore[no-untyped-def,type-arg]
        maps = []
        for i in indices:
            name = graph.tensors[i].name
            maps.append(schema.TensorMapT(name.decode() if isinstance(name, bytes) else name, i))
        return maps

    if not obj.signatureDefs:
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
    model = prepared(Path(float_path).read_bytes())
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
