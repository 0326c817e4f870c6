"""docs/cli.md documents exactly the flags each ``quanta`` command has.

The parsers are built in-process (``quanta.cli.main.build_parser``), so this takes well under a
second. In docs/cli.md each command has a section ``## quanta <command>`` (``## quanta`` for the
options of ``quanta`` itself) with a table whose first column names the flags; a flag mentioned
only in prose (a ``torchrun`` flag, another command's flag) does not count.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from quanta.cli.main import build_parser

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

_LONG_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")
# a table cell boundary: a pipe not escaped as \| (which GitHub renders inside code spans)
_CELL = re.compile(r"(?<!\\)\|")


def parser_flags() -> dict[str, set[str]]:
    """Command ('' for ``quanta`` itself) -> the long flags its ``--help`` prints.

    ``--help`` is argparse's own on every parser, so the docs say it once, not per command.
    """
    top = build_parser()
    parsers = {"": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update(action.choices)
    return {
        name: {
            flag
            for action in parser._actions
            if not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS
            for flag in action.option_strings
            if flag.startswith("--")
        }
        for name, parser in parsers.items()
    }


def documented_flags(text: str) -> dict[str, set[str]]:
    """Section ``## quanta <command>`` -> the long flags in the first cell of its table rows."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            match = re.fullmatch(r"## quanta(?: ([a-z0-9-]+))?", line.strip())
            current = None
            if match:
                current = sections.setdefault(match.group(1) or "", set())
            continue
        if current is not None and line.startswith("|"):
            cells = _CELL.split(line)
            if len(cells) > 2 and not set(cells[1].strip()) <= set("-: "):
                current.update(_LONG_FLAG.findall(cells[1]))
    return sections


def test_every_command_has_a_section() -> None:
    sections = documented_flags(CLI_MD.read_text(encoding="utf-8"))
    commands = set(parser_flags())
    missing = sorted(commands - set(sections))
    assert missing == [], "commands without a '## quanta <command>' section"
    assert sorted(set(sections) - commands) == [], "sections for commands that do not exist"


@pytest.mark.parametrize("command", sorted(parser_flags()))
def test_flags_documented_and_real(command: str) -> None:
    sections = documented_flags(CLI_MD.read_text(encoding="utf-8"))
    printed = parser_flags()[command]
    documented = sections.get(command, set())
    name = f"quanta {command}".strip()
    assert sorted(printed - documented) == [], f"flags of '{name}' missing from docs/cli.md"
    assert sorted(documented - printed) == [], f"docs/cli.md documents flags '{name}' lacks"


def test_parser_reads_tables_only() -> None:
    text = "\n".join(
        [
            "## quanta qat",
            "`torchrun --nproc-per-node 2` in prose is not a qat flag.",
            "| flag | default | what |",
            "|---|---|---|",
            "| `--epochs N` | 1 | epochs |",
            "| `--data mnist\\|DIR` | | the `--other` here is not in the first cell |",
            "## Something else",
            "| `--not-a-command-flag` | | |",
        ]
    )
    assert documented_flags(text) == {"qat": {"--epochs", "--data"}}
