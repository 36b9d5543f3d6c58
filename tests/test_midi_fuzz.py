"""Fuzzing the reader: random and mutated bytes only ever give a Score or a MidiFileError.

A crash here would take the whole test process down (numba does not check bounds), so
passing at all is part of the assertion; each read is also timed against a hang.
"""

from __future__ import annotations

import struct
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chiptuner import MidiFileError, read_midi
from chiptuner.types import Score

SEED_FILE = (
    b"MThd" + struct.pack(">IHHH", 6, 1, 2, 96)
    + b"MTrk" + struct.pack(">I", 19)
    + bytes.fromhex("00FF510307A120 00FF580404021808 00FF2F00")
    + b"MTrk" + struct.pack(">I", 36)
    + bytes.fromhex("00FF030141 00C005 00903C40 60803C00 00903E40 10F00243F7 503E00 00B00740 00E00040 00FF2F00")
)  # fmt: skip


def _read_within_budget(data: bytes) -> None:
    started = time.perf_counter()
    try:
        score = read_midi(data)
    except MidiFileError as error:
        assert str(error)
    else:
        assert isinstance(score, Score)
        n = score.notes
        assert np.all(n.end_tick >= n.start_tick)
        assert np.all((n.pitch >= 0) & (n.pitch <= 127))
        assert np.all((n.velocity >= 1) & (n.velocity <= 127))
        assert np.all((n.channel >= 0) & (n.channel <= 15))
        assert len(score.tempo) >= 1 and score.tempo.tick[0] == 0
    assert time.perf_counter() - started < 2.0


def test_seed_file_is_valid():
    assert len(read_midi(SEED_FILE).notes) == 2


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data):
    _read_within_budget(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_behind_a_valid_header(tail):
    _read_within_budget(SEED_FILE[:14] + tail)
    _read_within_budget(SEED_FILE[:22] + tail)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(SEED_FILE) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(SEED_FILE)),
)
def test_mutated_valid_file(flips, cut):
    data = bytearray(SEED_FILE)
    for position, value in flips:
        data[position] = value
    _read_within_budget(bytes(data[:cut]))
    _read_within_budget(bytes(data))


def test_mutated_corpus_files(corpora):
    rng = np.random.default_rng(2024)
    files = (
        sorted((corpora / "midi_edge_cases").rglob("*.mid"))
        + sorted((corpora / "nottingham" / "MIDI").glob("*.mid"))[:40]
    )
    for path in files:
        original = np.frombuffer(path.read_bytes(), dtype=np.uint8)
        for _ in range(25):
            data = original.copy()
            positions = rng.integers(0, len(data), size=rng.integers(1, 12))
            data[positions] = rng.integers(0, 256, size=len(positions))
            cut = int(rng.integers(0, len(data) + 1))
            _read_within_budget(data.tobytes())
            _read_within_budget(data[:cut].tobytes())
