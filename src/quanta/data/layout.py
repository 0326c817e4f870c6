"""Whether a 4-D array that does not fit a model's input is that input in the other layout.

NCHW arrays for an NHWC model (an imported ``.tflite``) and NHWC arrays for an NCHW model (most
ONNX exports) are the commonest calibration mistake; the shape error then says which, and the
``transpose`` that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["layout_mismatch"]

_TO_NHWC = (0, 2, 3, 1)
_TO_NCHW = (0, 3, 1, 2)


def _shape(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in dims) + ")"


def layout_mismatch(
    what: str, name: str, shape: Sequence[int], expected: Sequence[int | None]
) -> str | None:
    """The one-line error for a ``what`` array (e.g. "calibration") of ``shape`` that is the
    model input ``name``'s 4-D ``expected`` shape in the other layout, else None.

    Example:
        >>> layout_mismatch("calibration", "x", (20, 1, 28, 28), (1, 28, 28, 1))
        "the model's input 'x' takes NHWC (1, 28, 28, 1); the calibration array is (N, 1, 28, 28), NCHW? transpose it to NHWC: array.transpose(0, 2, 3, 1)"
    """  # noqa: E501
    if len(shape) != 4 or len(expected) != 4:
        return None
    sample = [None, *shape[1:]]

    def fits(perm: tuple[int, ...]) -> bool:
        # the array's axes permuted by ``perm`` match every fixed dimension the model names
        moved = [shape[p] for p in perm]
        pairs = enumerate(zip(expected, moved, strict=True))
        return all(e is None or k == 0 or e == m for k, (e, m) in pairs)

    layouts = ((_TO_NHWC, "NHWC", "NCHW"), (_TO_NCHW, "NCHW", "NHWC"))
    for perm, model_layout, array_layout in layouts:
        if fits(perm):
            return (
                f"the model's input {name!r} takes {model_layout} {_shape(expected)}; the {what} "
                f"array is {_shape(sample)}, {array_layout}? transpose it to {model_layout}: "
                f"array.transpose{perm}"
            )
    return None
