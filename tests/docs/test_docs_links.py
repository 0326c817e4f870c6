"""Every relative link in README.md and docs/*.md reaches a file inside the repository.

A user's clone holds only the repository: a link that leaves it (``../shared/...``) or names a
file that moved is dead there. A link's ``#anchor`` must name a heading of the target Markdown
file (GitHub's slugs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) and ![alt](target), target up to a space (an optional "title") or ")"
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def links(text: str) -> list[str]:
    """Link targets outside code blocks and code spans."""
    return _LINK.findall(_CODE.sub("", _FENCE.sub("", text)))


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def problems(page: Path, root: Path = ROOT) -> list[str]:
    found = []
    for target in links(page.read_text(encoding="utf-8")):
        if _EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if path.startswith("/") or not resolved.is_relative_to(root):
            found.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            found.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in slugs(resolved.read_text()):
            found.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_stay_inside_the_repository(page: Path) -> None:
    assert problems(page) == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_nothing_points_to_shared(page: Path) -> None:
    # ../shared holds the project's working notes, which a user's clone does not have
    assert "../shared" not in page.read_text(encoding="utf-8")


def test_docs_exist() -> None:
    expected = {"cli.md", "python-api.md", "conventions.md", "benchmarks.md", "contributing.md"}
    assert expected <= {p.name for p in PAGES}


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, "README.md is the front page; reference belongs in docs/"


def test_checker_finds_bad_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "a.md").write_text("# A\n\n## Two words\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](../a.md) [anchor](../a.md#two-words) [web](https://example.org)\n"
        "`[code](../nowhere.md)` [out](../../x.md) [gone](missing.md) [abs](/etc/passwd)\n"
        "[bad anchor](../a.md#three)\n"
        "```\n[fenced](nowhere.md)\n```\n"
    )
    assert problems(page, tmp_path) == [
        "../../x.md: leaves the repository",
        "missing.md: no such file",
        "/etc/passwd: leaves the repository",
        "../a.md#three: no heading #three in a.md",
    ]
