"""Why a quantized model is as accurate and as fast as it is (``quanta inspect``)."""

from quanta.diagnose.layers import LayerReport, inspect_layers
from quanta.diagnose.profile import OpTimes, profile_op_times

__all__ = ["LayerReport", "OpTimes", "inspect_layers", "profile_op_times"]
