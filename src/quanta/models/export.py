"""Export a PyTorch model to a single-file ONNX model with a dynamic batch dimension."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Sequence

import onnx
import torch
from torch import nn

from quanta._io import atomic_path
from quanta.errors import ModelError

__all__ = ["export_onnx", "to_onnx_model"]

OPSET = 20


def to_onnx_model(
    model: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    input_name: str = "image",
    output_name: str = "logits",
    input_names: Sequence[str] | None = None,
) -> onnx.ModelProto:
    """Trace ``model`` (in eval mode) with the dynamo exporter and return the ONNX ModelProto.

    The first dimension of every input and output is named ``batch`` and left dynamic. With
    several inputs (``example`` a tuple, ``input_names`` their names), each input's second
    dimension is the dynamic ``sequence`` (token inputs of text models).
    """
    examples = example if isinstance(example, tuple) else (example,)
    names = list(input_names) if input_names is not None else [input_name]
    was_training = model.training
    model.eval()
    dynamic = _dynamic_shapes(len(examples))
    try:
        # NOTE: the exporter prints progress and warns about the missing torchvision ops; neither
        # concerns the user, so both are silenced.
        with (
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
            _quiet_logger("torch.onnx"),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                examples,
                dynamo=True,
                external_data=False,
                opset_version=OPSET,
                input_names=names,
                output_names=[output_name],
                dynamic_shapes=dynamic,
                verbose=False,
            )
    finally:
        model.train(was_training)
    if program is None:
        # NOTE: torch.onnx.export returns None only on the legacy (dynamo=False) path.
        raise ModelError("torch.onnx.export returned no ONNX program for the model")
    return _without_metadata(program.model_proto)


def _dynamic_shapes(n_inputs: int) -> tuple[dict[int, object], ...]:
    """Dimension 0 of every input is ``batch``; with several inputs, dimension 1 is ``sequence``."""
    batch = torch.export.Dim("batch", min=1)
    if n_inputs > 1:
        sequence = torch.export.Dim("sequence", min=1, max=4096)
        return tuple({0: batch, 1: sequence} for _ in range(n_inputs))
    return ({0: batch},)


def _without_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` (edited in place) without the exporter's metadata and value_info."""
    # NOTE: the exporter records the Python-side names of nodes and tensors as metadata; they
    # are noise in a deployable file and make it larger.
    for node in proto.graph.node:
        del node.metadata_props[:]
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        del value.metadata_props[:]
    for init in proto.graph.initializer:
        del init.metadata_props[:]
    del proto.metadata_props[:]
    del proto.graph.value_info[:]
    return proto


@contextlib.contextmanager
def _quiet_logger(name: str):  # type: ignore[no-untyped-def]
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    example: torch.Tensor,
    *,
    input_name: str = "image",
    output_name: str = "logits",
) -> onnx.ModelProto:
    """Export ``model`` to ``path`` atomically (one file, weights inside) and return the proto."""
    proto = to_onnx_model(model, example, input_name=input_name, output_name=output_name)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, os.fspath(tmp))
    return proto
