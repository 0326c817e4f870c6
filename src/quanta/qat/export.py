"""Export a QAT model to a standard QDQ ONNX model carrying the ranges learnt in training.

1. The QAT model runs in "float" mode (no fake quantization, BatchNorm folded) and is exported
   to a float ONNX graph;
2. quanta's static planner decides which tensors of that graph are quantized (the same plan as
   post-training quantization, so QAT and PTQ models have the same structure and kernels);
3. each of those tensors is matched to the QAT activation quantizer that saw the same values on
   a sample batch, and takes its moving-average range;
4. the QDQ rewrite quantizes the weights (the same per-channel rule training used) and inserts
   QuantizeLinear/DequantizeLinear with those ranges.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import torch
from torch import nn

from quanta.errors import ModelError
from quanta.graph.compact import compact_qdq
from quanta.graph.model_io import save_model
from quanta.graph.planner import plan_static
from quanta.graph.prepare import prepare
from quanta.graph.static import apply_qdq
from quanta.graph.uint8_input import with_uint8_input
from quanta.models.export import to_onnx_model
from quanta.qat.modules import ActivationQuantizer
from quanta.qat.prepare import activation_quantizers, set_qat_state
from quanta.quant import MinMaxObserver, QParams
from quanta.runtime.session import session_with_outputs

__all__ = ["export_qat_onnx", "qat_to_onnx_model"]


def _float_forward_values(
    model: nn.Module, sample: torch.Tensor
) -> list[tuple[str, np.ndarray, QParams]]:
    """Each activation quantizer's input on ``sample`` (float mode), with its trained qparams."""
    captured: list[tuple[str, np.ndarray, QParams]] = []
    hooks = []
    for name, module in activation_quantizers(model):

        def hook(
            mod: ActivationQuantizer, args: tuple[torch.Tensor, ...], name: str = name
        ) -> None:
            captured.append((name, args[0].detach().numpy().copy(), mod.qparams()))

        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    return captured


def qat_to_onnx_model(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    input_name: str = "image",
    output_name: str = "logits",
    uint8_input: bool = False,
    compact: bool = True,
) -> tuple[onnx.ModelProto, list[str]]:
    """The QDQ ONNX model of a trained QAT model, and notes on how ranges were matched.

    Args:
        model: a model from ``prepare_qat``, trained.
        sample: a few real inputs (e.g. 64 training images); used to match tensors, never to
            change ranges.
        uint8_input: make the input raw uint8 values (see ``quanta.graph.with_uint8_input``).
        compact: drop all-zero zero points and compute bias scales in the graph
            (``quanta.graph.compact``); False keeps every parameter as an initializer.
    """
    was_training = model.training
    states = [(m, m.fake_quant) for m in model.modules() if hasattr(m, "fake_quant")]
    model.eval()
    set_qat_state(model, fake_quant=False)
    try:
        float_proto = to_onnx_model(
            model, sample[:1], input_name=input_name, output_name=output_name
        )
        captured = _float_forward_values(model, sample)
    finally:
        for m, s in states:
            m.fake_quant = s
        model.train(was_training)
    prepared = prepare(float_proto)
    plan = plan_static(prepared, prune=False)  # quantize exactly where training did
    source = plan.source
    needed = plan.calibrated_tensors()
    values = _onnx_values(prepared, needed, {input_name: sample.numpy()})
    qparams: dict[str, QParams] = {}
    notes: list[str] = []
    used: set[str] = set()
    for tensor in needed:
        match = _match(values[tensor], captured, used)
        if match is None:
            obs = MinMaxObserver()
            obs.update(values[tensor])
            qparams[tensor] = obs.qparams(captured[0][2].dtype if captured else "int8")
            notes.append(
                f"tensor {tensor!r} has no QAT quantizer; its range is the sample's min-max"
            )
        else:
            used.add(match[0])
            qparams[tensor] = match[2]
    full = {t: qparams[src] for t, src in source.items()}
    apply_qdq(prepared, plan, full, per_channel=_per_channel(model))
    if compact:
        compact_qdq(prepared)
    onnx.checker.check_model(prepared)
    if uint8_input:
        prepared = with_uint8_input(prepared)
    return prepared, notes


def export_qat_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    sample: torch.Tensor,
    *,
    uint8_input: bool = False,
    compact: bool = True,
) -> tuple[onnx.ModelProto, list[str]]:
    """``qat_to_onnx_model``, written atomically to ``path``."""
    proto, notes = qat_to_onnx_model(model, sample, uint8_input=uint8_input, compact=compact)
    save_model(proto, path)
    return proto, notes


def _per_channel(model: nn.Module) -> bool:
    flags = {m.per_channel for m in model.modules() if hasattr(m, "per_channel")}
    return flags != {False}


def _onnx_values(
    model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    session = session_with_outputs(model, names, "disabled")
    return dict(zip(names, session.run(names, feeds), strict=True))


def _match(
    value: np.ndarray, captured: list[tuple[str, np.ndarray, QParams]], used: set[str]
) -> tuple[str, np.ndarray, QParams] | None:
    """The first unused quantizer whose input equals ``value`` (float32 tolerance)."""
    for item in captured:
        name, seen, _ = item
        if name in used or seen.size != value.size or len(seen) != len(value):
            continue
        seen = seen.reshape(value.shape)  # e.g. (N, C, 1, 1) pooled beside its flattened (N, C)
        tol = 1e-4 * (1.0 + float(np.abs(seen).max(initial=0.0)))
        if np.allclose(seen, value, rtol=0.0, atol=tol):
            return item
    if not captured:
        raise ModelError("the model has no activation quantizers; pass a model from prepare_qat")
    return None
