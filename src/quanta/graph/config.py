"""How to quantize: one frozen config; the CLI flags map one-to-one onto its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from quanta.errors import InputError

__all__ = ["QuantizeConfig", "MODES", "METHODS", "ACTIVATION_TYPES"]

MODES = ("static", "dynamic", "fp16", "auto")
METHODS = ("auto", "minmax", "percentile", "entropy", "mse")
ACTIVATION_TYPES = ("auto", "int8", "uint8")
WEIGHT_RANGES = ("auto", "full", "reduced")
WEIGHT_ROUNDINGS = ("auto", "nearest", "gptq")


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of ``quanta quantize``.

    Attributes:
        mode: "static" (int8 weights and activations, calibrated), "dynamic" (int8 weights,
            activation ranges computed at run time), "fp16" (float16 weights), or "auto" (the
            fastest of these and of partly-float models that meets an accuracy target on
            evaluation data: ``quanta.graph.auto``).
        per_channel: one weight scale per output channel (default) or one per tensor.
        activation_type: "int8" (S8S8, ORT's recommended QDQ default), "uint8", or "auto":
            int8 unless ONNX Runtime fuses more of the model into integer kernels with uint8
            (counted in the graph it builds).
        method: how activation ranges are chosen from calibration data: "minmax" (the extremes),
            "percentile" (cut ``percentile`` % tails), "entropy" (KL divergence, as TensorRT),
            "mse" (least expected quantization error), or "auto": each of these scored by the
            quantized model's output fidelity on held-out calibration samples, best kept.
        percentile: the kept percentile for ``method="percentile"``.
        bias_correction: correct each layer's bias for its weight rounding error, using the
            mean of its input over the calibration data.
        min_fidelity: keep the nodes whose quantization costs the most accuracy float until the
            quantized model's outputs reach this mean cosine similarity to the float model's on
            ``holdout_samples`` calibration samples (None: quantize every node it can).
        holdout_samples: calibration samples used to measure fidelity.
        samples: use at most this many calibration samples (None: all).
        batch_size: calibration samples fed to ONNX Runtime at once (dynamic batch models).
        compact: store only the quantization parameters that carry information (no all-zero
            zero points; bias scales computed in the graph as ``s_in * s_w``), see
            ``quanta.graph.compact``; static and dynamic mode. False writes every scale and
            zero point as an initializer, under its long name.
        workers: calibration processes: the samples are split between them and their
            statistics merged (min-max exactly; see ``quanta.graph.calibrate``).
        max_float: the accuracy-aware fallback keeps at most this many nodes float (None: a
            quarter of the quantizable nodes).
        weight_range: "full" int8 weights in [-127, 127]; "reduced" 7-bit weights in [-64, 64],
            so that CPUs whose u8 x s8 dot products add pairs in saturating int16 (x86 AVX2
            without VNNI: ``vpmaddubsw``) never overflow; "auto": reduced on such a CPU, full
            elsewhere (static and dynamic modes).
        weight_rounding: static mode: "nearest" rounds each weight to its nearest int8 value;
            "gptq" rounds Conv/Gemm/MatMul weights column by column so that each layer's output
            on calibration samples changes least (``quanta.graph.rounding``); "auto": GPTQ
            where the fully int8 model misses its fidelity target with nearest rounding and
            GPTQ comes closer to it (``quanta.graph.rounding_choice``), nearest elsewhere.
        latency_check: static mode: profile the float and int8 models at batch 1 on this
            machine and keep float the layers whose int8 kernel runs slower
            (``quanta.graph.latency``); False skips the measuring (quantizes faster).
        equalize: static mode: cross-layer equalization before calibrating: consecutive
            convolutions joined by Relu/LeakyRelu/PRelu (or nothing) get equal per-channel
            weight ranges, the float function unchanged (``quanta.graph.equalize``).
    """

    mode: Literal["static", "dynamic", "fp16", "auto"] = "static"
    per_channel: bool = True
    activation_type: Literal["auto", "int8", "uint8"] = "auto"
    method: Literal["auto", "minmax", "percentile", "entropy", "mse"] = "auto"
    percentile: float = 99.99
    bias_correction: bool = True
    min_fidelity: float | None = 0.997
    holdout_samples: int = 32
    samples: int | None = None
    batch_size: int = 100
    compact: bool = True
    weight_range: Literal["auto", "full", "reduced"] = "auto"
    max_float: int | None = None
    workers: int = 1
    latency_check: bool = True
    weight_rounding: Literal["auto", "nearest", "gptq"] = "nearest"
    equalize: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(
                f"--mode {self.mode!r} is not known; expected one of {', '.join(MODES)}"
            )
        if self.activation_type not in ACTIVATION_TYPES:
            raise InputError(
                f"--activation-type {self.activation_type!r} is not known; expected auto, int8 "
                "or uint8"
            )
        if self.weight_range not in WEIGHT_RANGES:
            raise InputError(
                f"--weight-range {self.weight_range!r} is not known; expected auto, full or reduced"
            )
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise InputError(
                f"--weight-rounding {self.weight_rounding!r} is not known; expected auto, "
                "nearest or gptq"
            )
        if self.method not in METHODS:
            raise InputError(
                f"--method {self.method!r} is not known; expected one of {', '.join(METHODS)}"
            )
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"--percentile must be in (50, 100], got {self.percentile}")
        if self.min_fidelity is not None and not 0.0 < self.min_fidelity <= 1.0:
            raise InputError(f"--min-fidelity must be in (0, 1], got {self.min_fidelity}")
        if self.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.workers}")
        if self.max_float is not None and self.max_float < 0:
            raise InputError(f"--max-float must be >= 0, got {self.max_float}")
        if self.holdout_samples < 1:
            raise InputError(f"holdout samples must be >= 1, got {self.holdout_samples}")
        if self.samples is not None and self.samples < 1:
            raise InputError(f"--samples must be >= 1, got {self.samples}")
        if self.batch_size < 1:
            raise InputError(f"calibration batch size must be >= 1, got {self.batch_size}")
