"""Keras and SavedModel in (``pip install 'quanta[tf]'``): TensorFlow's own converter writes the
float ``.tflite`` (no optimizations: the exact float graph), which ``quanta.tflite.reader``
imports into quanta's pipeline as it does any float ``.tflite`` file.

TensorFlow is imported only here, and only when a Keras model or SavedModel is given: ``import
quanta``, the CLI's ``--help`` and every ONNX or ``.tflite`` path never load it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quanta.errors import InputError, ModelError

if TYPE_CHECKING:
    import onnx

__all__ = ["is_keras_path", "is_keras_model", "keras_to_tflite", "keras_to_onnx", "TF_EXTRA"]

TF_EXTRA = "pip install 'quanta[tf]'"
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_keras_path(path: str | os.PathLike[str]) -> bool:
    """A ``.keras``/``.h5`` file or a SavedModel directory (one holding ``saved_model.pb``)."""
    p = Path(path)
    return p.suffix.lower() in _KERAS_SUFFIXES or (p.is_dir() and (p / "saved_model.pb").is_file())


def is_keras_model(model: Any) -> bool:
    """A Keras model object (Keras 3, tf.keras or tf_keras), told apart without importing them."""
    return type(model).__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow")


def keras_to_onnx(model: Any) -> onnx.ModelProto:
    """A Keras model, or a ``.keras``/``.h5`` path or SavedModel directory, as quanta's float ONNX
    model: the TFLite converter's float graph imported by ``quanta.tflite.reader``, NHWC inputs
    and outputs as the Keras model has, batch dimension 1.

    Raises:
        InputError: TensorFlow is not installed (the message names ``pip install 'quanta[tf]'``).
        ModelError: the file or directory cannot be loaded, or the converter refuses the model.
    """
    from quanta.graph.normalize import normalize
    from quanta.tflite.reader import tflite_to_onnx

    where = f"{os.fspath(model)!r}: " if isinstance(model, (str, os.PathLike)) else ""
    try:
        onnx_model = tflite_to_onnx(keras_to_tflite(model))
    except ModelError as exc:
        raise ModelError(f"{where}{exc}") from exc
    _name_inputs(onnx_model)
    return normalize(onnx_model, fold=False)


def keras_to_tflite(model: Any) -> bytes:
    """The float ``.tflite`` bytes TensorFlow's converter writes for ``model`` (a Keras model or
    a path), traced at batch 1 so that shape arithmetic (a Flatten's ``SHAPE``) folds away.

    No optimization is asked for: the converter keeps float32 weights and the float graph.
    """
    tf = _tensorflow()
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if not p.exists():
            raise ModelError(
                f"{str(p)!r} does not exist; expected a .keras or .h5 file or a SavedModel "
                "directory"
            )
        if p.is_dir():
            fn, keep = _saved_model_function(tf, p)
        else:
            fn, keep = _keras_function(tf, _load_keras(p))
    else:
        fn, keep = _keras_function(tf, model)
    # NOTE: the variables become constants first: left to the converter, Keras 3's variables
    # stay RESOURCE tensors that no TFLite reader can import
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [convert_variables_to_constants_v2(fn)], keep
    )
    try:
        with _quiet_stderr():
            return bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - the converter raises many error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"TensorFlow's TFLite converter refused the model: {first}") from exc


def _name_inputs(model: onnx.ModelProto) -> None:
    """The converter names input ``x`` "serving_default_x:0"; give it back the Keras name, which
    an ``.npz`` or a dict of calibration arrays is keyed by."""
    prefix, suffix = "serving_default_", ":0"
    renames = {
        i.name: i.name[len(prefix) : -len(suffix)]
        for i in model.graph.input
        if i.name.startswith(prefix) and i.name.endswith(suffix)
    }
    taken = {n for node in model.graph.node for n in (*node.input, *node.output)}
    if any(new in taken for new in renames.values()):
        return  # NOTE: a clash is not worth a guess: the converter's names stay
    for i in model.graph.input:
        i.name = renames.get(i.name, i.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]


def _tensorflow() -> Any:
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _quiet_stderr():
            import tensorflow as tf
    except ImportError as exc:
        raise InputError(
            f"a Keras model or SavedModel needs TensorFlow: {TF_EXTRA} (not installed here)"
        ) from exc
    return tf


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while: TensorFlow's C++ start-up and converter logs
    (oneDNN, absl, MLIR passes) are written there whatever the log level, around quanta's own
    lines. Python errors still reach the caller as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _load_keras(p: Path) -> Any:
    import keras

    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many error types for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{str(p)!r} cannot be loaded by Keras: {first}") from exc


def _keras_function(tf: Any, model: Any) -> tuple[Any, Any]:
    """The model traced at batch 1, one ``TensorSpec`` per Keras input, named as the input is."""
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs:
        raise ModelError(
            f"the Keras model {type(model).__name__} has no defined inputs; build it with "
            "keras.Input(shape) (or call it once) before quantizing"
        )
    specs = [
        tf.TensorSpec([1, *inp.shape[1:]], inp.dtype, name=_spec_name(inp, i))
        for i, inp in enumerate(inputs)
    ]

    def call(*xs: Any) -> Any:
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    return tf.function(call).get_concrete_function(*specs), model


def _saved_model_function(tf: Any, p: Path) -> tuple[Any, Any]:
    """The SavedModel's serving signature traced again at batch 1."""
    try:
        loaded = tf.saved_model.load(os.fspath(p))
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{str(p)!r} cannot be loaded as a SavedModel: {first}") from exc
    signatures = dict(loaded.signatures)
    if not signatures:
        raise ModelError(f"{str(p)!r} has no signature; expected a serving signature")
    signature = signatures.get("serving_default") or next(iter(signatures.values()))
    args, kwargs = signature.structured_input_signature
    specs = {
        name: tf.TensorSpec([1, *spec.shape[1:]], spec.dtype, name=name)
        for name, spec in sorted(kwargs.items())
    }
    if args or any(None in s.shape.as_list() for s in specs.values()):
        raise ModelError(
            f"{str(p)!r}: the serving signature's inputs must be named with fixed sizes "
            "after the batch dimension; export with model.export(path)"
        )

    def call(**xs: Any) -> Any:
        return signature(**xs)

    return tf.function(call).get_concrete_function(**specs), loaded


def _spec_name(inp: Any, index: int) -> str:
    name = str(getattr(inp, "name", "") or f"input_{index}")
    return name.split(":")[0]
