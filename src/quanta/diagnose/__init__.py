"""Why a quantized model is as accurate and as fast as it is (``quanta inspect``)."""

from quanta.diagnose.layers import LayerReport, inspect_layers

# NOTE: profiling lives in quanta.runtime (it makes its own session); re-exported here because
# the README documents ``quanta.diagnose.profile_op_times``.
from quanta.runtime.profile import OpTimes, profile_op_times

__all__ = ["LayerReport", "OpTimes", "inspect_layers", "profile_op_times"]
