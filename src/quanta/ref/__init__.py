"""An integer-only reference executor for quanta's quantized ONNX graphs (``quanta verify``).

Every op between the model's QuantizeLinear at the input and DequantizeLinear at the output
computes with integers: 8-bit products accumulated in int32, int32 biases, requantization by a
fixed-point multiplier (``quanta.ref.fixed_point``), zero points as integer cross terms, fused
ReLU as the output clamp. Ops a model keeps in float are run in float and counted, so the
report says whether a model is integer-only.
"""

from quanta.ref.executor import ReferenceRun, run_reference
from quanta.ref.tensor import QTensor
from quanta.ref.verify import Agreement, OutputAgreement, VerifyReport, verify

__all__ = [
    "Agreement",
    "OutputAgreement",
    "QTensor",
    "ReferenceRun",
    "VerifyReport",
    "run_reference",
    "verify",
]
