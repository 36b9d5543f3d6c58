"""Shared bench helpers: the budgets in targets.toml and the corpus files benches read."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

TARGETS = Path(__file__).with_name("targets.toml")
CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


def budget(table: str) -> dict:
    """The budgets of one ``[table]`` of bench/targets.toml."""
    with TARGETS.open("rb") as f:
        return tomllib.load(f)[table]


@pytest.fixture(scope="session")
def corpora() -> Path:
    """``../shared/corpora``; the bench is skipped where it is absent."""
    if not CORPORA.is_dir():
        pytest.skip(f"needs the MIDI corpora at {CORPORA} (a checkout beside ../shared)")
    return CORPORA
