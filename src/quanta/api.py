"""``quanta.quantize``: one call from a float model and calibration data to a quantized model.

The ``quanta quantize`` command is a thin layer over ``run_mode``, the step this call ends with,
so the same model and data give the same bytes from Python and from the command line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quanta.data_forms import arrays_of, check_layout, eval_set_of
from quanta.errors import InputError

if TYPE_CHECKING:  # `import quanta` stays light: the pipeline is imported when a call runs
    import onnx

    from quanta.graph import CalibrationData, QuantizeConfig
    from quanta.graph.auto import AutoTarget
    from quanta.graph.result import FidelityReport, FloatNode, QuantizeResult
    from quanta.runtime import EvalSet

__all__ = [
    "Quantized",
    "quantize",
    "run_mode",
    "auto_target",
    "load_path",
    "source_size",
    "check_layout",
]

# NOTE: the TFLite ranges are those of the model's outputs and Softmax inputs: a few hundred
# samples settle them, as export-tflite's --calibration has always used.
RANGE_SAMPLES = 500


@dataclass(frozen=True)
class Quantized:
    """A quantized model and what quanta decided on the way.

    Attributes:
        model: the quantized ``onnx.ModelProto``.
        float_nodes: the nodes left float, each with its reason.
        notes: what the mode decided (activation type, range method, candidates tried).
        fidelity: the outputs' mean cosine to float on held-out samples, with its target
            (None when no target was set).
        mode: "static", "dynamic", "fp16" or "auto"; ``chosen`` names auto's candidate.
        source: the float model it was quantized from; a fp16 or dynamic ``.tflite`` is
            written from it (TFLite's own float16 and dynamic-range forms), not from ``model``.
    """

    model: onnx.ModelProto
    float_nodes: list[FloatNode] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fidelity: FidelityReport | None = None
    mode: str = "static"
    chosen: str = ""
    source: onnx.ModelProto | None = field(default=None, repr=False)

    def save(self, path: str | os.PathLike[str], *, input_uint8: bool = False) -> Path:
        """Write the model atomically; the suffix picks the format: ``.onnx``, or ``.tflite``
        (NHWC inputs; full integer for static, float16 weights for fp16, int8 weights with
        hybrid kernels for dynamic; ``input_uint8``: see ``tflite_bytes``). Returns the path
        written."""
        out = Path(path)
        suffix = out.suffix.lower()
        if input_uint8 and suffix != ".tflite":
            raise InputError("input_uint8 is only used when writing a .tflite file")
        if suffix == ".onnx":
            from quanta.graph import save_model

            save_model(self.model, out)
        elif suffix == ".tflite":
            from quanta._io import write_bytes_atomic

            write_bytes_atomic(out, self.tflite_bytes(input_uint8=input_uint8))
        else:
            raise InputError(
                f"cannot tell the format of {str(out)!r} from its suffix; expected .onnx or .tflite"
            )
        return out

    def tflite_bytes(self, *, input_uint8: bool = False) -> bytes:
        """The TFLite flatbuffer: full integer (with the ranges recorded when it was quantized),
        or for fp16 and dynamic the float source model with float16 or int8 weights.

        ``input_uint8`` (static only): the input is uint8 on the float input's int8 grid shifted
        by 128, ``(s, z + 128)``, as TensorFlow's converter writes it for
        ``inference_input_type=tf.uint8``."""
        if input_uint8 and self.mode != "static":
            raise InputError(f"input_uint8 is only used with mode static, not {self.mode}")
        from quanta.tflite import onnx_to_tflite
        from quanta.tflite.ranges import recorded_ranges

        if self.mode in ("fp16", "dynamic") and self.source is not None:
            from quanta.tflite.float_convert import float_onnx_to_tflite

            return float_onnx_to_tflite(self.source, self.mode)
        if not any(n.op_type == "QuantizeLinear" for n in self.model.graph.node):
            label = f"{self.mode} ({self.chosen})" if self.chosen else self.mode
            if self.mode == "static":
                raise InputError(
                    "the latency check kept every layer float (ONNX Runtime ran the int8 model "
                    "slower here), so there is no full-integer model to write as .tflite; "
                    "quantize with latency_check=False (--no-latency-check) for LiteRT"
                )
            raise InputError(
                f"a .tflite file is written from a static, fp16 or dynamic model, not from a "
                f"{label} one; quantize with one of those modes or write .onnx"
            )
        return onnx_to_tflite(self.model, recorded_ranges(self.model), input_uint8=input_uint8)


def quantize(
    model: Any,
    calibration: Any = None,
    mode: str = "static",
    *,
    example_inputs: Any = None,
    eval: Any = None,  # noqa: A002 - the CLI's --eval
    max_accuracy_drop: float | None = None,
    **options: Any,
) -> Quantized:
    """Quantize a float model in one call.

    Args:
        model: an ``.onnx`` or float ``.tflite`` path, an ``onnx.ModelProto``, a
            ``torch.nn.Module`` with ``example_inputs`` (exported with ``torch.onnx``, batch
            dimension dynamic, as ``quanta.models.export`` does), or with ``quanta[tf]`` a Keras
            model, a ``.keras``/``.h5`` path or a SavedModel directory (NHWC inputs, as Keras has).
        calibration: static and auto modes: an ``.npz`` path (one array per model input), a
            dict of arrays keyed by input name, one array (single-input models), or an iterable
            of batches (arrays, tensors, ``(x, y)`` pairs as a ``torch.utils.data.DataLoader``
            or a batched ``tf.data.Dataset`` yields, or dicts), concatenated along axis 0.
        mode: "static", "dynamic", "fp16" or "auto".
        example_inputs: a tensor (or a tuple of tensors) to trace a ``torch.nn.Module`` with.
        eval: ``mode="auto"``: evaluation data, in any form ``calibration`` takes (labels from
            an ``.npz``'s "labels" or from ``(x, y)`` batches), or "mnist".
        max_accuracy_drop: ``mode="auto"``: the allowed top-1 drop in percentage points.
        **options: ``QuantizeConfig`` fields (``per_channel``, ``method``, ``min_fidelity``,
            ``latency_check``, ...); with ``mode="auto"``, ``min_fidelity`` is the target cosine.

    Returns:
        A ``Quantized``: ``.model``, ``.float_nodes``, ``.notes``, ``.fidelity``, ``.save(path)``.

    Example:
        >>> q = quanta.quantize("lenet.onnx", "calib.npz")  # doctest: +SKIP
        >>> q.save("lenet_int8.tflite")  # doctest: +SKIP
    """
    from quanta.graph import CalibrationData

    config, auto_fidelity = _config(mode, options)
    proto = _onnx_model(model, example_inputs)
    names = _input_names(proto)
    notes: list[str] = []
    data = None
    if calibration is not None:
        if config.mode not in ("static", "auto"):
            raise InputError(f"calibration data is only used by mode static or auto, not {mode}")
        arrays = arrays_of(calibration, names, "calibration", notes.append)[0]
        check_layout(proto, arrays)
        data = CalibrationData(arrays, samples=config.samples, batch_size=config.batch_size)
    elif config.mode in ("static", "auto"):
        raise InputError(
            f"mode {config.mode} needs calibration data: an .npz path, a dict of arrays, one "
            "array or an iterable of batches (samples along axis 0)"
        )
    auto = None
    if config.mode == "auto":
        if eval is None:
            raise InputError("mode auto needs eval= data to measure accuracy on")
        ev = eval_set_of(eval, names, notes.append)
        auto = (ev, auto_target(ev.labels, max_accuracy_drop, auto_fidelity)[0])
    elif eval is not None or max_accuracy_drop is not None:
        raise InputError("eval= and max_accuracy_drop= are only used with mode='auto'")
    result = run_mode(proto, config, data, auto)
    return _wrap(result, config, notes, proto)


def run_mode(
    model: onnx.ModelProto,
    config: QuantizeConfig,
    data: CalibrationData | None,
    auto: tuple[EvalSet, AutoTarget] | None = None,
    *,
    on_batch: Callable[[int, int], None] | None = None,
    on_search: Callable[[int, int], None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """``config.mode`` on a loaded model; an int8 model also records the ranges a TFLite export
    needs (``quanta.tflite.ranges``), measured on the calibration data."""
    from quanta.graph import quantize_static
    from quanta.graph.dynamic import quantize_dynamic
    from quanta.graph.fp16 import quantize_fp16

    if config.mode == "dynamic":
        return quantize_dynamic(model, config)
    if config.mode == "fp16":
        return quantize_fp16(model, config)
    if data is None:
        raise InputError(f"mode {config.mode} needs calibration data")
    if config.mode == "auto":
        if auto is None:
            raise InputError("mode auto needs evaluation data and a target")
        result = _auto(model, data, config, *auto, on_step=on_step)
    else:
        result = quantize_static(model, data, config, on_batch=on_batch, on_search=on_search)
    if any(n.op_type == "QuantizeLinear" for n in result.model.graph.node):
        from quanta.tflite.ranges import measure_ranges, record_ranges

        feeds = data.head(model, RANGE_SAMPLES)
        record_ranges(result.model, measure_ranges(result.model, feeds))
    return result


def auto_target(
    labels: np.ndarray | None, max_accuracy_drop: float | None, min_fidelity: float | None
) -> tuple[AutoTarget, bool]:
    """The auto mode's target and whether it is the default (0.5 pp with labels, else 0.99)."""
    from quanta.graph.auto import AutoTarget

    if max_accuracy_drop is not None and min_fidelity is not None:
        raise InputError("give one of --max-accuracy-drop and --min-fidelity, not both")
    if max_accuracy_drop is None and min_fidelity is None:
        if labels is not None:
            return AutoTarget(max_accuracy_drop=0.5), True
        return AutoTarget(min_fidelity=0.99), True
    return AutoTarget(max_accuracy_drop, min_fidelity), False


def _auto(
    model: onnx.ModelProto,
    data: CalibrationData,
    config: QuantizeConfig,
    ev: EvalSet,
    target: AutoTarget,
    *,
    on_step: Callable[[str], None] | None,
) -> QuantizeResult:
    from quanta.graph.auto import quantize_auto
    from quanta.runtime import feeds_for, make_session

    feeds = feeds_for(make_session(model.SerializeToString()), ev)
    return quantize_auto(
        model, data, feeds, target, labels=ev.labels, config=config, on_step=on_step
    )


def _config(mode: str, options: Mapping[str, Any]) -> tuple[QuantizeConfig, float | None]:
    """The ``QuantizeConfig`` of ``options``; in auto mode ``min_fidelity`` is the auto target
    (returned apart) and static's fallback keeps its default, as ``quanta quantize`` does."""
    from quanta.graph import QuantizeConfig

    fields = [f.name for f in dataclasses.fields(QuantizeConfig) if f.name != "mode"]
    unknown = [k for k in options if k not in fields]
    if unknown:
        raise InputError(
            f"quanta.quantize() got an unknown option {unknown[0]!r}; expected one of "
            f"{', '.join(fields)}"
        )
    kwargs = dict(options)
    auto_fidelity = kwargs.pop("min_fidelity", None) if mode == "auto" else None
    return QuantizeConfig(mode=mode, **kwargs), auto_fidelity  # type: ignore[arg-type]


def _onnx_model(model: Any, example_inputs: Any) -> onnx.ModelProto:
    """``model`` as a checked, normalized ONNX ModelProto."""
    import onnx

    from quanta.graph.model_io import from_proto

    if isinstance(model, onnx.ModelProto):
        return from_proto(model)
    if isinstance(model, (str, os.PathLike)):
        return load_path(model)
    torch = sys.modules.get("torch")  # NOTE: a torch module means torch is already imported
    if torch is not None and isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise InputError(
                "a torch.nn.Module needs example_inputs= (e.g. torch.randn(1, 1, 28, 28)) to be "
                "exported to ONNX"
            )
        from quanta.models.export import to_onnx_model

        examples = example_inputs if isinstance(example_inputs, tuple) else None
        names = [f"input_{i}" for i in range(len(examples))] if examples else None
        return from_proto(to_onnx_model(model, example_inputs, input_names=names))
    from quanta.keras_in import is_keras_model, keras_to_onnx

    if is_keras_model(model):
        return keras_to_onnx(model)
    raise InputError(
        f"model is a {type(model).__name__}; expected an .onnx, .tflite, .keras or .h5 path, a "
        "SavedModel directory, an onnx.ModelProto, a torch.nn.Module or a Keras model"
    )


def load_path(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The float model at ``path``: an ``.onnx`` or float ``.tflite`` file, or with
    ``quanta[tf]`` a ``.keras``/``.h5`` file or a SavedModel directory (TensorFlow's converter
    to a float ``.tflite``, then the TFLite reader)."""
    from quanta.graph.model_io import load_model
    from quanta.keras_in import is_keras_path, keras_to_onnx

    if is_keras_path(path):
        return keras_to_onnx(path)
    return load_model(path)


def source_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a model file, or of every file in a SavedModel directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def _input_names(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _wrap(
    result: QuantizeResult, config: QuantizeConfig, notes: list[str], source: onnx.ModelProto
) -> Quantized:
    return Quantized(
        model=result.model,
        float_nodes=list(result.float_nodes),
        notes=[*notes, *result.notes],
        fidelity=result.fidelity,
        mode=config.mode,
        chosen=getattr(result, "chosen", ""),
        source=source,
    )
