"""``layout_mismatch``: a 4-D array that is the model's input in the other layout is named so."""

from __future__ import annotations

import pytest

from quanta.data.layout import layout_mismatch


@pytest.mark.parametrize(
    ("shape", "expected", "message"),
    [
        # NCHW digits for an NHWC model (an imported .tflite)
        ((20, 1, 28, 28), (1, 28, 28, 1), "takes NHWC (1, 28, 28, 1); the calibration array is "
         "(N, 1, 28, 28), NCHW? transpose it to NHWC: array.transpose(0, 2, 3, 1)"),
        # NHWC images for an NCHW model with a free batch
        ((8, 32, 32, 3), (None, 3, 32, 32), "takes NCHW (N, 3, 32, 32); the calibration array is "
         "(N, 32, 32, 3), NHWC? transpose it to NCHW: array.transpose(0, 3, 1, 2)"),
    ],
)  # fmt: skip
def test_the_other_layout_is_named(
    shape: tuple[int, ...], expected: tuple[int | None, ...], message: str
) -> None:
    got = layout_mismatch("calibration", "x", shape, expected)
    assert got is not None and message in got


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((20, 3, 9, 8), (1, 8, 8, 3)),  # a wrong size, not a layout
        ((20, 28, 28), (1, 28, 28, 1)),  # a wrong rank
        ((20, 5), (None, 5)),  # not images
    ],
)
def test_no_hint_for_other_mismatches(
    shape: tuple[int, ...], expected: tuple[int | None, ...]
) -> None:
    assert layout_mismatch("calibration", "x", shape, expected) is None
