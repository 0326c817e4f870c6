"""``prepare_qat``: rewrite a float PyTorch model for quantization-aware training.

The model is traced with ``torch.fx``; then, walking its graph:

- Conv2d (+ a BatchNorm2d right after it, folded) and Linear become ``QuantConv2d`` /
  ``QuantLinear`` with per-channel int8 fake-quantized weights;
- an ``ActivationQuantizer`` goes where the exported int8 graph quantizes activations: at each
  input, after each Conv/Linear (after its ReLU/ReLU6 when one follows, as the int8 kernel
  fuses it), after residual adds and average pools;
- MaxPool, Flatten/reshape and Dropout only move values and keep their input's grid;
- anything else stays float, with a warning naming the node.
"""

from __future__ import annotations

import copy
import operator
import warnings

import torch
import torch.nn.functional as F
from torch import fx, nn

from quanta.errors import ModelError
from quanta.qat.config import QATConfig
from quanta.qat.modules import ActivationQuantizer, QuantConv2d, QuantLinear

__all__ = ["prepare_qat", "set_qat_state", "activation_quantizers"]

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = {F.relu, torch.relu, F.relu6}
_PASS_MODULES = (nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_PASS_FUNCTIONS = {torch.flatten, F.max_pool2d, F.dropout, torch.reshape}
_PASS_METHODS = {"view", "reshape", "flatten", "size", "contiguous", "dim"}
_OWN_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_OWN_FUNCTIONS = {operator.add, torch.add, F.avg_pool2d, F.adaptive_avg_pool2d}


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _RELU_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _sole_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def prepare_qat(model: nn.Module, config: QATConfig | None = None) -> fx.GraphModule:
    """A QAT copy of ``model`` (the original is untouched). Fake quantization starts off; turn
    it on with ``set_qat_state(qat, fake_quant=True)`` (``quanta.qat.train_qat`` does this after
    the quant delay)."""
    config = config or QATConfig()
    try:
        gm = fx.symbolic_trace(copy.deepcopy(model))
    except Exception as exc:  # noqa: BLE001 - fx raises many types on untraceable code
        raise ModelError(f"torch.fx cannot trace the model for QAT: {exc}") from exc
    modules = dict(gm.named_modules())
    graph = gm.graph
    counter = 0

    def quantize_after(node: fx.Node, fixed: tuple[float, float] | None = None) -> None:
        nonlocal counter
        name = f"act_quant_{counter}"
        counter += 1
        gm.add_submodule(name, ActivationQuantizer(config.activation_type, config.ema_decay, fixed))
        with graph.inserting_after(node):
            q = graph.call_module(name, (node,))
        node.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)

    for node in list(graph.nodes):
        if node.op == "placeholder":
            quantize_after(node, config.input_range)
        elif node.op == "call_module" and isinstance(
            modules[str(node.target)], nn.Conv2d | nn.Linear
        ):
            layer = modules[str(node.target)]
            end = node
            bn = None
            user = _sole_user(node)
            candidate = (
                modules[str(user.target)] if user is not None and user.op == "call_module" else None
            )
            if isinstance(layer, nn.Conv2d) and isinstance(candidate, nn.BatchNorm2d):
                assert user is not None
                if candidate.running_mean is None or candidate.running_var is None:
                    # NOTE: without running statistics there is no inference-time affine map
                    # to fold; the BatchNorm stays a float op after the int8 conv.
                    warnings.warn(
                        f"QAT: {user.name!r} (BatchNorm2d without running statistics) is not "
                        "folded and stays float",
                        stacklevel=2,
                    )
                else:
                    bn = candidate
                    user.replace_all_uses_with(node)
                    graph.erase_node(user)
            wrapped: nn.Module = (
                QuantConv2d(layer, bn, config.per_channel)
                if isinstance(layer, nn.Conv2d)
                else QuantLinear(layer, config.per_channel)
            )
            gm.add_submodule(str(node.target), wrapped)
            user = _sole_user(node)
            if user is not None and _is_relu(user, modules):
                end = user
            quantize_after(end)
        elif node.op == "call_module" and isinstance(modules[str(node.target)], _OWN_MODULES):
            quantize_after(node)
        elif node.op == "call_function" and node.target in _OWN_FUNCTIONS:
            quantize_after(node)
        elif node.op in ("placeholder", "output", "get_attr"):
            continue
        elif node.op == "call_module" and isinstance(
            modules[str(node.target)], _PASS_MODULES + _RELU_MODULES + (nn.BatchNorm2d,)
        ):
            continue
        elif node.op == "call_function" and node.target in _PASS_FUNCTIONS | _RELU_FUNCTIONS:
            continue
        elif node.op == "call_method" and (node.target in _PASS_METHODS or _is_relu(node, modules)):
            continue
        else:
            what = (
                node.target
                if node.op != "call_module"
                else type(modules[str(node.target)]).__name__
            )
            warnings.warn(f"QAT: node {node.name!r} ({what}) stays float", stacklevel=2)
    graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def activation_quantizers(model: nn.Module) -> list[tuple[str, ActivationQuantizer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ActivationQuantizer)]


def set_qat_state(
    model: nn.Module, *, fake_quant: bool | None = None, observe: bool | None = None
) -> None:
    """Switch fake quantization and range observation on or off in every QAT module."""
    for m in model.modules():
        if isinstance(m, ActivationQuantizer | QuantConv2d | QuantLinear):
            if fake_quant is not None:
                m.fake_quant = fake_quant
            if observe is not None and isinstance(m, ActivationQuantizer):
                m.observe = observe
