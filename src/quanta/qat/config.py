"""Options of quantization-aware training."""

from __future__ import annotations

from dataclasses import dataclass

from quanta.errors import InputError

__all__ = ["QATConfig"]


@dataclass(frozen=True)
class QATConfig:
    """How ``prepare_qat`` quantizes a model.

    Attributes:
        quant_delay: training steps during which activation ranges are observed but nothing is
            fake-quantized (TensorFlow's ``create_training_graph(quant_delay=...)``), so the
            ranges settle before the network has to adapt to them.
        ema_decay: decay of the moving-average min/max of activations.
        activation_type: "int8" or "uint8" activations in the exported model.
        per_channel: one weight scale per output channel (default) or per tensor.
        input_range: the known range of the model input, e.g. (0.0, 1.0) for images scaled to
            [0, 1]; None observes it like any activation. A known range makes the input grid
            exactly the raw pixels' (scale 1/255), so a uint8-input model loses nothing.
    """

    quant_delay: int = 0
    ema_decay: float = 0.99
    activation_type: str = "int8"
    per_channel: bool = True
    input_range: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.quant_delay < 0:
            raise InputError(f"--quant-delay must be >= 0 steps, got {self.quant_delay}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"EMA decay must be in [0, 1), got {self.ema_decay}")
        if self.activation_type not in ("int8", "uint8"):
            raise InputError(f"activation type {self.activation_type!r}; expected int8 or uint8")
        if self.input_range is not None and not self.input_range[0] < self.input_range[1]:
            raise InputError(f"input_range {self.input_range} must be (low, high) with low < high")
