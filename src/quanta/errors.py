"""The one exception family users see.

Every failure that a user can cause (a bad file, a bad flag value, data of the wrong shape) raises a
``QuantaError`` subclass whose message names the bad value and the expected form. The CLI prints
that message as one line and exits with ``exit_code``; anything else is a bug and exits 1.
"""

from __future__ import annotations

__all__ = ["QuantaError", "InputError", "ModelError", "DataError"]


class QuantaError(Exception):
    """Base class of every user-facing quanta error."""

    exit_code: int = 2


class InputError(QuantaError):
    """A command-line value or an output/input path is not usable."""


class ModelError(QuantaError):
    """An ONNX model or a checkpoint cannot be read or is not of the expected form."""


class DataError(QuantaError):
    """A data file (IDX, CSV, npz) is missing, malformed, or does not fit the model."""
