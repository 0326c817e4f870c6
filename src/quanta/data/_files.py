"""Read a whole data file into memory, gunzipping it when its first bytes say it is gzip."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from quanta.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"


def read_maybe_gzipped(path: str | os.PathLike[str], what: str) -> bytes:
    """Return the content of ``path``, decompressed if it is gzip; ``what`` names it in errors."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} {str(p)!r} does not exist; expected a path to an existing file")
    if not p.is_file():
        raise DataError(f"{what} {str(p)!r} is not a regular file; expected a path to a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{what} {str(p)!r} cannot be read: {exc.strerror or exc}") from exc
    if not raw:
        raise DataError(f"{what} {str(p)!r} is empty (0 bytes)")
    # NOTE: decide by magic bytes, not by the name: users rename files, and a ".gz" that was
    # already decompressed by a browser is common.
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(
            f"{what} {str(p)!r} starts like gzip (1f 8b) but is not a valid gzip stream "
            f"({exc or type(exc).__name__}); re-download it or decompress it by hand"
        ) from exc
    if not data:
        raise DataError(f"{what} {str(p)!r} decompresses to 0 bytes")
    return data
