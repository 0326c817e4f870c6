"""Atomic writes: a temporary file in the destination's directory, then a rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from quanta.errors import InputError

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "check_output_path"]


def check_output_path(
    path: str | os.PathLike[str], *inputs: str | os.PathLike[str], force: bool = False
) -> Path:
    """Check that ``path`` can be written, is not one of ``inputs`` and (unless ``force``) does
    not exist yet; return it as a Path. Nothing is written here."""
    out = Path(path)
    for other in inputs:
        if Path(other).exists() and out.exists() and out.resolve() == Path(other).resolve():
            raise InputError(
                f"output path {str(out)!r} is also an input; choose another output file"
            )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {str(parent)!r} does not exist; create it first")
    if out.is_dir():
        raise InputError(f"output path {str(out)!r} is a directory; expected a file path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output directory {str(parent)!r} is not writable; choose another")
    if out.exists() and not force:
        raise InputError(f"output file {str(out)!r} exists; pass --force to replace it")
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent or ".")
    os.close(fd)
    # NOTE: mkstemp makes the file 0600; give the result the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
