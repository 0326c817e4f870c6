"""``quanta`` command line: parses, calls the library, prints. ``main(argv) -> int``."""

from __future__ import annotations

import argparse
import enum
import sys
import traceback
from collections.abc import Sequence

from quanta.errors import QuantaError

__all__ = ["ExitStatus", "main", "build_parser"]


class ExitStatus(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1  # a bug: an unexpected exception
    USAGE = 2  # bad input, bad flags: the user can fix it
    INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting (one-line errors, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise QuantaError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    from quanta.cli import bench, demo, export_tflite, inspect, qat, quantize, train, verify

    parser = _Parser(
        prog="quanta",
        description="Make trained networks small and fast with int8, and show the trade-off.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (train, quantize, qat, bench, demo, verify, inspect, export_tflite):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # anywhere on the line, as the internal-error message suggests appending it
    show_traceback = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version exit through argparse
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help(sys.stderr)
            return ExitStatus.USAGE
        return int(args.handler(args))
    except QuantaError as exc:
        if show_traceback:
            traceback.print_exc()
        print(f"quanta: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("quanta: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if show_traceback:
            traceback.print_exc()
        print(
            f"quanta: internal error: {type(exc).__name__}: {exc} (rerun with --traceback "
            "and report it)",
            file=sys.stderr,
        )
        return ExitStatus.ERROR
