"""What a quantization pass returns: the model, and what stayed float and why."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import onnx

__all__ = ["FidelityReport", "FloatKind", "FloatNode", "FloatReason", "QuantizeResult"]


class FloatKind(enum.Enum):
    """Why a node stayed float, as a value callers switch on (the text is for people)."""

    NO_HANDLER = "no_handler"  # quanta has no int8 plan for the op type
    UNSUPPORTED = "unsupported"  # the op's handler refused this configuration
    BY_DESIGN = "by_design"  # quanta keeps this op type float on purpose (quanta.opfacts)
    RANGES = "ranges"  # a Concat whose inputs cannot share one scale, or a node reading it
    ACCURACY = "accuracy"  # measured: quantizing it alone cost the most output fidelity
    SPEED = "speed"  # measured: its int8 kernel ran slower than its float one
    UNREAD = "unread"  # no int8 consumer reads its output, so int8 would buy nothing
    REQUESTED = "requested"  # the caller asked for it

    @property
    def measured(self) -> bool:
        """A choice quanta made from measurements (a note), not an op it could not quantize."""
        return self in (FloatKind.ACCURACY, FloatKind.SPEED, FloatKind.UNREAD)


class FloatReason(str):
    """The text of a reason, carrying its ``FloatKind``.

    A ``str`` so that the dicts passes exchange (node name -> reason) keep their shape; a plain
    string reason is an op handler's refusal (``FloatKind.UNSUPPORTED``).
    """

    kind: FloatKind

    def __new__(cls, text: str, kind: FloatKind) -> FloatReason:
        reason = super().__new__(cls, text)
        reason.kind = kind
        return reason

    def __getnewargs__(self) -> tuple[str, FloatKind]:  # type: ignore[override]
        return str(self), self.kind


def reason_kind(reason: str) -> FloatKind:
    """The kind of ``reason``: its own, or UNSUPPORTED for a plain string."""
    return reason.kind if isinstance(reason, FloatReason) else FloatKind.UNSUPPORTED


@dataclass(frozen=True)
class FloatNode:
    """A node left in float, with the reason (shown to the user as a note or a warning)."""

    name: str
    op_type: str
    reason: str

    @property
    def kind(self) -> FloatKind:
        return reason_kind(self.reason)

    def __str__(self) -> str:
        return f"node {self.name!r} ({self.op_type}) stays float: {self.reason}"


@dataclass(frozen=True)
class FidelityReport:
    """How the accuracy-aware fallback fared against its target.

    ``achieved`` is the score of the model written (``before``: fully int8) on ``held_out``
    samples that calibration did not use (0: too few samples to spare any, so the ``calibrated``
    ones were scored), with ``kept_float`` nodes float out of at most ``max_float``.

    A model whose output is a sequence of class scores (``quanta.graph.measures``) is also
    judged by its per-position arg-max ``agreement`` with float (None otherwise), against
    ``agreement_target``. ``met`` needs every target; ``missed`` names the measures that missed
    theirs ("" when met).
    """

    target: float
    achieved: float
    met: bool
    held_out: int
    calibrated: int
    before: float
    kept_float: int = 0
    max_float: int = 0
    measure: str = "mean output cosine to float"
    agreement: float | None = None
    agreement_before: float | None = None
    agreement_target: float | None = None
    missed: str = ""

    def as_dict(self) -> dict[str, float | int | bool | str]:
        """JSON-ready, scores rounded to 6 digits."""
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}

    def summary(self) -> str:
        """One line: "fidelity target 0.997 met: 0.9981 ..." or "... not met: ..."."""
        floats = f" with {self.kept_float} node(s) float" if self.kept_float else " fully int8"
        if self.agreement is not None and self.agreement_target is not None:
            return self._summary_with_agreement(floats)
        if self.met:
            return f"fidelity target {self.target:g} met: {self.achieved:.4f}{floats}"
        digits = 4  # enough digits that a miss never prints as the target itself
        while digits < 9 and round(self.achieved, digits) >= self.target:
            digits += 1
        return (
            f"fidelity target {self.target:g} not met: {self.achieved:.{digits}f}{floats} "
            f"(at most {self.max_float} allowed); try --mode auto or --max-float N"
        )

    def _summary_with_agreement(self, floats: str) -> str:
        assert self.agreement is not None and self.agreement_target is not None
        figures = (
            f"{self.measure} {_below(self.achieved, self.target)} (target {self.target:g}), "
            f"per-position argmax agreement {_below(self.agreement, self.agreement_target)} "
            f"(target {self.agreement_target:.4f}){floats}"
        )
        if self.met:
            return f"fidelity targets met: {figures}"
        return (
            f"fidelity target not met ({self.missed}): {figures} (at most {self.max_float} "
            "allowed); try --mode auto or --max-float N"
        )


def _below(value: float, target: float) -> str:
    """``value`` with enough digits that a miss never prints as the target itself."""
    digits = 4
    while digits < 9 and value < target and round(value, digits) >= target:
        digits += 1
    return f"{value:.{digits}f}"


@dataclass
class QuantizeResult:
    model: onnx.ModelProto
    float_nodes: list[FloatNode] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fidelity: FidelityReport | None = None  # None: no fidelity target was set
