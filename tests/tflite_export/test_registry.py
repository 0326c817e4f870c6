"""The TFLite writer's op registries: structural facts a new op entry must keep true."""

from __future__ import annotations

from quanta.tflite import SUPPORTED_OPS
from quanta.tflite.ops import ABSORBED, FLOAT_HANDLERS, FUSED_ACTIVATIONS, HANDLERS


def test_supported_ops_are_the_int8_registry() -> None:
    assert SUPPORTED_OPS == tuple(HANDLERS)


def test_absorbed_ops_have_no_handler() -> None:
    assert not ABSORBED & (set(HANDLERS) | set(FLOAT_HANDLERS))


def test_fused_activations_are_written_alone_too() -> None:
    # a Relu/Clip that cannot be fused into the float op before it is written on its own
    assert FUSED_ACTIVATIONS <= set(FLOAT_HANDLERS)


def test_every_entry_has_a_handler() -> None:
    assert all(callable(entry.write) for entry in HANDLERS.values())
    assert all(callable(handler) for handler in FLOAT_HANDLERS.values())
    assert all(e.data_inputs is None or e.data_inputs >= 1 for e in HANDLERS.values())
