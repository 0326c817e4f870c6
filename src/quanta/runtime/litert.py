"""LiteRT (TensorFlow Lite's interpreter) behind the small part of ONNX Runtime's session API
that quanta's measurements use, so ``.tflite`` files are benchmarked beside ``.onnx`` ones.

A 4-D input of a TFLite model is NHWC. The data quanta measures with is NCHW where it was made
for an ONNX model (quanta's own TFLite exports of NCHW models), and it is then transposed on the
way in; data that already has the file's own NHWC shape (a float ``.tflite`` from TensorFlow and
the files quanta quantized from it) is fed as it is: ``fit_layout`` decides. The batch dimension
is resized per call.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quanta.errors import InputError, ModelError
from quanta.runtime.kernels import KernelCounts

__all__ = ["LiteRTSession", "is_tflite", "tflite_kernels", "tflite_operators"]

_TYPES = {np.dtype(np.float32): "tensor(float)", np.dtype(np.uint8): "tensor(uint8)",
          np.dtype(np.int8): "tensor(int8)", np.dtype(np.int64): "tensor(int64)",
          np.dtype(np.int32): "tensor(int32)"}  # fmt: skip


def is_tflite(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix == ".tflite"


@dataclass(frozen=True)
class _Arg:
    name: str
    type: str
    shape: list[int | str | None]


class LiteRTSession:
    """``get_inputs()``, ``get_outputs()`` and ``run(names, feeds)``, as ONNX Runtime's."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 1) -> None:
        try:  # NOTE: LiteRT is optional (quanta[litert]); only .tflite files need it
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise InputError(
                f"{os.fspath(path)!r} is a TFLite model; running it needs LiteRT: "
                "pip install 'quanta[litert]' (ai-edge-litert)"
            ) from exc
        try:
            self._interpreter = Interpreter(model_path=os.fspath(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"LiteRT cannot load {os.fspath(path)!r}: {exc}") from exc
        self._inputs = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()
        self._batch = int(self._inputs[0]["shape"][0]) if self._inputs else 1
        self._channels_last = False

    def fit_layout(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Feed 4-D data as it is when every 4-D input's array has the file's own NHWC shape
        and not also its NCHW one (a lone array feeds a lone input whatever its key); transpose
        NCHW data otherwise, as before."""
        held = {d["name"]: [int(x) for x in d["shape"]] for d in self._inputs}
        four = {n: s for n, s in held.items() if len(s) == 4}
        if not four:
            return
        lone = next(iter(arrays.values())) if len(arrays) == 1 and len(held) == 1 else None

        def as_held(name: str, shape: list[int]) -> bool:
            value = arrays.get(name, lone)
            if value is None or np.ndim(value) != 4:
                return False
            dims = list(np.shape(value))[1:]
            return dims == shape[1:] and dims != [shape[3], shape[1], shape[2]]

        self._channels_last = all(as_held(n, s) for n, s in four.items())

    def _shown(self, detail: dict) -> list[int | str | None]:  # type: ignore[type-arg]
        shape = [int(d) for d in detail["shape"]]
        dims: list[int | str | None] = ["N", *shape[1:]]
        if len(shape) == 4 and not self._channels_last:  # NHWC held, NCHW shown
            dims = ["N", shape[3], shape[1], shape[2]]
        return dims

    def get_inputs(self) -> list[_Arg]:
        return [_Arg(d["name"], _TYPES[np.dtype(d["dtype"])], self._shown(d)) for d in self._inputs]

    def get_outputs(self) -> list[_Arg]:
        return [
            _Arg(d["name"], _TYPES[np.dtype(d["dtype"])], self._shown(d)) for d in self._outputs
        ]

    def run(self, names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        it = self._interpreter
        batch = len(next(iter(feeds.values())))
        if batch != self._batch:
            for d in self._inputs:
                it.resize_tensor_input(d["index"], [batch, *[int(x) for x in d["shape"][1:]]])
            it.allocate_tensors()
            self._inputs = it.get_input_details()
            self._outputs = it.get_output_details()
            self._batch = batch
        for d in self._inputs:
            value = np.asarray(feeds[d["name"]])
            if value.ndim == 4 and not self._channels_last:
                value = value.transpose(0, 2, 3, 1)
            it.set_tensor(d["index"], np.ascontiguousarray(value, dtype=d["dtype"]))
        it.invoke()
        wanted = [d["name"] for d in self._outputs] if names is None else list(names)
        by_name = {d["name"]: d for d in self._outputs}
        return [it.get_tensor(by_name[n]["index"]).copy() for n in wanted]


def tflite_operators(data: bytes) -> list[str]:
    """The builtin operator names of a TFLite flatbuffer's main graph, in execution order."""
    import tflite  # NOTE: ~70 ms of generated schema modules, which only .tflite files need

    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        # NOTE: older files keep small codes only in the deprecated field
        ops.append(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?"))
    return ops


def tflite_kernels(path: str | os.PathLike[str]) -> KernelCounts:
    """The builtin operators of a TFLite file, as ``KernelCounts`` (int8: all but the
    QUANTIZE/DEQUANTIZE at the edges)."""
    ops = Counter(tflite_operators(Path(path).read_bytes()))
    return KernelCounts.from_counts(ops, edges=("QUANTIZE", "DEQUANTIZE"))
