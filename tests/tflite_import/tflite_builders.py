"""Tiny float TFLite models built with quanta's own writer, for the reader's tests."""

from __future__ import annotations

import numpy as np
import tflite

from quanta.tflite.writer import OpSpec, OptionsBuilder, TensorSpec, TFLiteModel

B = tflite.BuiltinOperator
F32 = np.dtype(np.float32)


class Builder:
    """One input ``x``; ``op(...)`` appends an operator and returns its output tensor."""

    def __init__(self, shape: list[int], seed: int = 0) -> None:
        self.model = TFLiteModel()
        self.rng = np.random.default_rng(seed)
        self.x = self.model.add(TensorSpec("x", shape, F32))
        self.model.inputs = [self.x]

    def const(self, value: np.ndarray, name: str | None = None) -> int:
        name = name or f"c{len(self.model.tensors)}"
        return self.model.add(TensorSpec(name, list(value.shape), value.dtype, data=value))

    def weight(self, *shape: int) -> int:
        return self.const(self.rng.normal(0, 0.5, shape).astype(np.float32))

    def op(
        self,
        code: int,
        inputs: list[int],
        shape: list[int],
        opts: OptionsBuilder | None = None,
        version: int = 1,
    ) -> int:
        y = self.model.add(TensorSpec(f"t{len(self.model.tensors)}", shape, F32))
        self.model.ops.append(OpSpec(code, inputs, [y], opts, version))
        return y

    def finish(self, *outputs: int) -> bytes:
        self.model.outputs = list(outputs)
        return self.model.serialize()


def i32(*values: int) -> np.ndarray:
    return np.array(values, np.int32)
