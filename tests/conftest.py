"""Shared fixtures: the corpora beside the project and a small disk (skipped where absent), a small corpus."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import scale_song

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora() -> Path:
    """``../shared/corpora`` from the project root; the test is skipped where it is absent."""
    if not CORPORA.is_dir():
        pytest.skip(f"needs the MIDI corpora at {CORPORA} (a checkout beside ../shared); a plain clone has none")
    return CORPORA


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for the test, a disk that really fills up; unmounted after it.

    Skipped with the reason where mounting is refused (not root, no mount command, a container
    without the capability).
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "chiptuner-test", str(mount)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no mount command to make a small disk with")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip() or f'mount exit code {result.returncode}'}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=60)  # busy: detach it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the corpora (directly or through a fixture) ``corpus``.

    So ``-m "not corpus"`` leaves them all out, whether or not they carry the marker by hand
    (the kernel coverage run, ``.ci/kernel-coverage``, relies on it).
    """
    for item in items:
        if "corpora" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.corpus)


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    """40 short songs (8-12 bars of melody, bass and hi-hat, ``scale_song``) in a folder."""
    from chiptuner.midi_io import write_midi  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("songs")
    for i in range(40):
        write_midi(scale_song(i % 12 - 5, bars=8 + i % 5), folder / f"song{i:02d}.mid")
    return folder


@pytest.fixture(scope="module")
def converted(midi_folder, tmp_path_factory):
    """``midi_folder``, converted (training shards)."""
    from chiptuner.corpus.convert import convert_corpus  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("converted")
    convert_corpus([midi_folder], folder, workers=1)
    return folder
