"""The README stays a short front door, and the docs point only at files that exist: a moved
module or a renamed page breaks a test here instead of a reader's link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
ROOTS = ("claimx_flow/", "operators/", "dataflows/", "kafka_pipeline/", "tests/", "k8s/")
ROOTS += ("waxctl/", "monitoring/")
ROOTS += ("docs/",)


def test_readme_is_at_most_200_lines() -> None:
    """Reference and run logs belong in docs/; the README only says what, how and where."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files(page: Path) -> None:
    """A link to a moved or deleted page fails here, not in front of a reader."""
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text(encoding="utf-8"))]
    local = [t for t in targets if t and not t.startswith(("http://", "https://", "mailto:"))]
    missing = [t for t in local if not (page.parent / t).exists()]
    assert not missing, f"{page.name}: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_repo_paths_exist(page: Path) -> None:
    """A module path the docs name must survive the next reorganisation, or the docs change."""
    spans = CODE.findall(page.read_text(encoding="utf-8"))
    paths = [s.split("::")[0] for s in spans if s.startswith(ROOTS)]
    missing = [p for p in paths if "<" not in p and "*" not in p and not (REPO / p).exists()]
    assert not missing, f"{page.name}: {missing}"
