"""The documents point at files that exist.

Every relative Markdown link, and every repository file name in backticks, in README,
MODEL_CARD and docs/.
"""

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


#: The repository's own folders: a name in backticks that starts with one of them is a file or
#: folder of this repository (a glob where it has one), and must be there.
REPO_FOLDERS = ("chiptuner/", "tests/", "tools/", "bench/", "docs/", ".ci/", "data/")
#: Names the documents give of what commands make, not of files in the repository.
MADE_BY_COMMANDS = ("data/converted",)
CODE = re.compile(r"`([^`\s]+)`")


def _named_files(document: Path) -> list[str]:
    names = []
    for name in CODE.findall(document.read_text()):
        name = name.rstrip(".,:;)")
        if name.startswith(REPO_FOLDERS) and not name.startswith(MADE_BY_COMMANDS):
            names.append(name.split("#")[0].split("::")[0])
    return names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_file_a_document_names_exists(document):
    missing = [name for name in _named_files(document) if not any(ROOT.glob(name.rstrip("/")))]
    assert missing == [], f"{document.relative_to(ROOT)} names files that are not in the repository: {missing}"


def test_the_file_names_are_found():
    # A pattern that found nothing would pass every document.
    assert "chiptuner/model/calibration.py" in _named_files(ROOT / "MODEL_CARD.md")
