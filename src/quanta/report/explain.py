"""Sentences that explain a benchmark from its own measurements (never from expectations).

Each sentence cites the figures it rests on: sizes, accuracy deltas, latency ratios, and the
kernels ONNX Runtime actually ran after fusion.
"""

from __future__ import annotations

from collections.abc import Mapping

from quanta.report.table import format_ops
from quanta.runtime import BenchResult

__all__ = ["explain"]


def _speed(r: BenchResult, base: BenchResult, batch: int) -> float | None:
    if batch not in r.latency or batch not in base.latency:
        return None
    return base.latency[batch].p50_ms / r.latency[batch].p50_ms


def _speed_text(r: BenchResult, base: BenchResult) -> str:
    parts = []
    for b in sorted(r.latency):
        s = _speed(r, base, b)
        if s is not None:
            word = "faster" if s >= 1.0 else "slower"
            factor = s if s >= 1.0 else 1 / s
            parts.append(f"{factor:.2f}× {word} at batch {b}")
    return ", ".join(parts)


def _acc(r: BenchResult, base: BenchResult) -> str:
    if r.accuracy is None or base.accuracy is None:
        return ""
    return f"{100 * r.accuracy:.2f} % ({100 * (r.accuracy - base.accuracy):+.2f} pp vs float)"


def _fp16(r: BenchResult, base: BenchResult) -> str:
    return (
        f"fp16 is {base.size_bytes / r.size_bytes:.2f}× smaller (weights stored in 2 bytes) "
        "and "
        f"{_speed_text(r, base)}: ONNX Runtime casts the weights back to float32 when the "
        f"session starts and runs the same float kernels ({format_ops(dict(r.kernels.all))}); "
        "float16 saves disk and download, not time, on this CPU."
    )


def _dynamic(r: BenchResult, base: BenchResult) -> str:
    conv_float = r.kernels.all.get("Conv", 0) + r.kernels.all.get("FusedConv", 0)
    return (
        f"dynamic is {base.size_bytes / r.size_bytes:.2f}× smaller and {_speed_text(r, base)}, "
        f"accuracy {_acc(r, base)}. ONNX Runtime ran {format_ops(dict(r.kernels.int8))} in "
        f"int8, quantizing each input batch at run time"
        + (
            f"; the {conv_float} convolutions kept float arithmetic with int8-stored weights, "
            "because dynamic int8 convolution (ConvInteger) is slower than float on x86 "
            "— that is why TFLite-style dynamic-range models are often slower than float."
            if conv_float
            else "."
        )
    )


def _static(r: BenchResult, base: BenchResult, note: str | None) -> str:
    n_q = r.kernels.all.get("QuantizeLinear", 0)
    n_dq = r.kernels.all.get("DequantizeLinear", 0)
    return (
        f"static is {base.size_bytes / r.size_bytes:.2f}× smaller and {_speed_text(r, base)}, "
        f"accuracy {_acc(r, base)}. After fusion ONNX Runtime ran "
        f"{format_ops(dict(r.kernels.int8))} on int8 data; the only conversions left are "
        f"{n_q} QuantizeLinear and {n_dq} DequantizeLinear at the model's edges, so the "
        "quantize/dequantize overhead is paid once per inference, not per layer."
        + (f" {note}" if note is not None else "")
    )


def _qat(r: BenchResult, base: BenchResult, static: BenchResult | None, note: str | None) -> str:
    extra = ""
    if static is not None and r.accuracy is not None and static.accuracy is not None:
        extra = (
            f" ({100 * (r.accuracy - static.accuracy):+.2f} pp vs static "
            "post-training quantization)"
        )
    return (
        f"qat has the static model's structure and speed ({_speed_text(r, base)}) with "
        f"accuracy {_acc(r, base)}{extra}. The network was fine-tuned with fake-quantized "
        "weights and activations, so it learnt weights that survive rounding; part of any "
        "gain over float comes from the extra fine-tuning epochs themselves."
        + (f" {note}" if note is not None else "")
    )


def _qat_uint8(r: BenchResult, q: BenchResult) -> str:
    same = r.accuracy == q.accuracy
    return (
        "qat_uint8 takes the raw uint8 pixels (0..255) as the classic TFLite interpreter did; "
        "its input scale (1/255) and zero point (0) follow from the model's [0, 1] input "
        "range, no mean/std to pass by hand. Accuracy "
        + (
            "is identical to qat"
            if same
            else f"differs from qat by {100 * ((r.accuracy or 0) - (q.accuracy or 0)):+.2f} pp"
        )
        + "."
    )


def _tflite(name: str, r: BenchResult, base: BenchResult, source: BenchResult | None) -> str:
    from_onnx = (
        f"; the ONNX model it was written from scores {100 * (source.accuracy or 0):.2f} % in "
        "ONNX Runtime"
        if source is not None and source.accuracy is not None
        else ""
    )
    return (
        f"{name} is the same int8 model written by quanta as a TFLite flatbuffer (no "
        f"TensorFlow involved) and run in LiteRT ({format_ops(dict(r.kernels.int8))}): "
        f"accuracy {_acc(r, base)}{from_onnx}; it is {_speed_text(r, base)}."
    )


def _machine(machine: str) -> list[str]:
    if "no VNNI" in machine:
        return [
            "This CPU has no VNNI instructions, so int8 dot products use the slower AVX2 "
            "sequence; int8 speed-ups are smaller here than on VNNI/AMX machines."
        ]
    if "vnni" in machine.lower():
        return [
            "This CPU has VNNI (int8 dot-product) instructions, which ONNX Runtime's int8 "
            "kernels use; on an AVX2-only CPU the int8 speed-ups would be smaller."
        ]
    return []


def explain(
    results: Mapping[str, BenchResult], machine: str, notes: Mapping[str, str] | None = None
) -> list[str]:
    """Explanations for the variants ``float``, ``fp16``, ``dynamic``, ``static``, ``qat``,
    ``qat_uint8`` (whichever are present; ``float`` is required as the baseline)."""
    notes = notes or {}
    base = results["float"]
    lines: list[str] = []
    if "fp16" in results:
        lines.append(_fp16(results["fp16"], base))
    if "dynamic" in results:
        lines.append(_dynamic(results["dynamic"], base))
    if "static" in results:
        lines.append(_static(results["static"], base, notes.get("static")))
    if "qat" in results:
        lines.append(_qat(results["qat"], base, results.get("static"), notes.get("qat")))
    if "qat_uint8" in results and "qat" in results:
        lines.append(_qat_uint8(results["qat_uint8"], results["qat"]))
    for name, r in results.items():
        if name.endswith("_tflite"):
            lines.append(_tflite(name, r, base, results.get(name.removesuffix("_tflite"))))
    return lines + _machine(machine)
