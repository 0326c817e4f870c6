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
    # NOTE: the modules as traced; the loop keeps reading this snapshot while it swaps layers
    # for their QAT modules and erases folded BatchNorm nodes (which it still visits, harmlessly).
    modules = dict(gm.named_modules())
    quantize_after = _ActivationInserter(gm, config)
    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            quantize_after(node, config.input_range)
        elif node.op == "call_module" and isinstance(
            layer := modules[str(node.target)], nn.Conv2d | nn.Linear
        ):
            quantize_after(_wrap_layer(gm, node, layer, modules, config))
        elif _writes_own_grid(node, modules):
            quantize_after(node)
        elif not _keeps_grid(node, modules):
            what = (
                node.target
                if node.op != "call_module"
                else type(modules[str(node.target)]).__name__
            )
            warnings.warn(f"QAT: node {node.name!r} ({what}) stays float", stacklevel=2)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


class _ActivationInserter:
    """Inserts ``act_quant_0``, ``act_quant_1``, ... after nodes, numbered in insertion order."""

    def __init__(self, gm: fx.GraphModule, config: QATConfig) -> None:
        self.gm = gm
        self.config = config
        self.count = 0

    def __call__(self, node: fx.Node, fixed: tuple[float, float] | None = None) -> None:
        name = f"act_quant_{self.count}"
        self.count += 1
        quantizer = ActivationQuantizer(self.config.activation_type, self.config.ema_decay, fixed)
        self.gm.add_submodule(name, quantizer)
        graph = self.gm.graph
        with graph.inserting_after(node):
            q = graph.call_module(name, (node,))
        node.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)


def _wrap_layer(
    gm: fx.GraphModule,
    node: fx.Node,
    layer: nn.Conv2d | nn.Linear,
    modules: dict[str, nn.Module],
    config: QATConfig,
) -> fx.Node:
    """Swap the Conv2d/Linear at ``node`` for its QAT module (a Conv2d takes in the BatchNorm2d
    right after it); return the node whose output the int8 kernel writes: its ReLU when one
    follows, as the kernel fuses it."""
    bn = _fold_batchnorm(gm.graph, node, modules) if isinstance(layer, nn.Conv2d) else None
    wrapped: nn.Module = (
        QuantConv2d(layer, bn, config.per_channel)
        if isinstance(layer, nn.Conv2d)
        else QuantLinear(layer, config.per_channel)
    )
    gm.add_submodule(str(node.target), wrapped)
    user = _sole_user(node)
    return user if user is not None and _is_relu(user, modules) else node


def _fold_batchnorm(
    graph: fx.Graph, node: fx.Node, modules: dict[str, nn.Module]
) -> nn.BatchNorm2d | None:
    """The BatchNorm2d that is the conv ``node``'s sole user, removed from the graph (None if
    there is none, or if it has no running statistics to fold)."""
    user = _sole_user(node)
    candidate = modules[str(user.target)] if user is not None and user.op == "call_module" else None
    if not isinstance(candidate, nn.BatchNorm2d):
        return None
    assert user is not None
    if candidate.running_mean is None or candidate.running_var is None:
        # NOTE: without running statistics there is no inference-time affine map
        # to fold; the BatchNorm stays a float op after the int8 conv.
        warnings.warn(
            f"QAT: {user.name!r} (BatchNorm2d without running statistics) is not "
            "folded and stays float",
            stacklevel=4,  # the caller of prepare_qat, through _wrap_layer
        )
        return None
    user.replace_all_uses_with(node)
    graph.erase_node(user)
    return candidate


def _writes_own_grid(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Residual adds and average pools: their output gets its own quantizer."""
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _OWN_MODULES)
    return node.op == "call_function" and node.target in _OWN_FUNCTIONS


def _keeps_grid(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Nodes that move values (or are a ReLU or BatchNorm handled with their layer) and so need
    no quantizer of their own."""
    if node.op in ("placeholder", "output", "get_attr"):
        return True
    if node.op == "call_module":
        kept = _PASS_MODULES + _RELU_MODULES + (nn.BatchNorm2d,)
        return isinstance(modules[str(node.target)], kept)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS | _RELU_FUNCTIONS
    return node.op == "call_method" and (node.target in _PASS_METHODS or _is_relu(node, modules))


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
