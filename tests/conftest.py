"""Shared fixtures: the corpora beside the project, skipped with a reason where absent."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora() -> Path:
    """``../shared/corpora`` from the project root; the test is skipped where it is absent."""
    if not CORPORA.is_dir():
        pytest.skip(f"needs the MIDI corpora at {CORPORA} (a checkout beside ../shared); a plain clone has none")
    return CORPORA
