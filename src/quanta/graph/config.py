"""How to quantize: one frozen config; the CLI flags map one-to-one onto its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from quanta.errors import InputError

__all__ = ["QuantizeConfig", "MODES", "ACTIVATION_TYPES"]

MODES = ("static", "dynamic", "fp16")
ACTIVATION_TYPES = ("int8", "uint8")


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of ``quanta quantize``.

    Attributes:
        mode: "static" (int8 weights and activations, calibrated), "dynamic" (int8 weights,
            activation ranges computed at run time), "fp16" (float16 weights).
        per_channel: one weight scale per output channel (default) or one per tensor.
        activation_type: "int8" (S8S8, ORT's recommended QDQ default) or "uint8".
        samples: use at most this many calibration samples (None: all).
        batch_size: calibration samples fed to ONNX Runtime at once (dynamic batch models).
    """

    mode: Literal["static", "dynamic", "fp16"] = "static"
    per_channel: bool = True
    activation_type: Literal["int8", "uint8"] = "int8"
    samples: int | None = None
    batch_size: int = 100

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(
                f"--mode {self.mode!r} is not known; expected one of {', '.join(MODES)}"
            )
        if self.activation_type not in ACTIVATION_TYPES:
            raise InputError(
                f"--activation-type {self.activation_type!r} is not known; expected int8 or uint8"
            )
        if self.samples is not None and self.samples < 1:
            raise InputError(f"--samples must be >= 1, got {self.samples}")
        if self.batch_size < 1:
            raise InputError(f"calibration batch size must be >= 1, got {self.batch_size}")
