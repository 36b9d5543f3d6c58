"""The documents point at files that exist: every relative Markdown link of README, MODEL_CARD and docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "MODEL_CARD.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(document: Path) -> list[str]:
    links = LINK.findall(document.read_text())
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_exists(document):
    missing = [link for link in _relative_links(document) if not (document.parent / link.split("#")[0]).exists()]
    assert missing == [], f"{document.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_documents_link_what_they_name():
    assert "docs/targets.md" in _relative_links(ROOT / "README.md")
    assert any(link.endswith(".png") for link in _relative_links(ROOT / "docs" / "evaluation" / "report.md"))
