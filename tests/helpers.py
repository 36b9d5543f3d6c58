"""Data shared by the tests: random but valid arranger tokens (also for ``data/make_golden.py``), a small song."""

from __future__ import annotations

import numpy as np

from chiptuner.model.arranger import FIRST_NOTE, HOLD, N_TOKENS, REST
from chiptuner.types import Notes, Score, TempoMap, TimeSignatures


def random_tokens(rng: np.random.Generator, n_steps: int) -> np.ndarray:
    """Valid token sequences of the four voices (never a hold after a rest), with many holds.

    Per voice and step: a rest with probability 0.25, else a hold with 0.35 where the voice
    sounds, else a note drawn uniformly from the voice's vocabulary. The draws come from
    ``rng`` in that order (voice by voice), which the golden files depend on.
    """
    tokens = np.zeros((n_steps, 4), dtype=np.int64)
    for v in range(4):
        for t in range(n_steps):
            choice = rng.random()
            if choice < 0.25:
                tokens[t, v] = REST
            elif choice < 0.6 and t and tokens[t - 1, v] != REST:
                tokens[t, v] = HOLD
            else:
                tokens[t, v] = rng.integers(FIRST_NOTE, N_TOKENS[v])
    return tokens


def scale_song(shift: int, bars: int = 8) -> Score:
    """A melody over a bass and a hi-hat, in a key moved by ``shift``."""
    beat = 96
    n = bars * 4
    melody_start = np.arange(n, dtype=np.int64) * beat
    bass_start = np.arange(n // 2, dtype=np.int64) * 2 * beat
    start = np.concatenate((melody_start, bass_start, melody_start))
    length = np.concatenate((np.full(n, beat), np.full(n // 2, 2 * beat), np.full(n, beat // 4)))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    pitch = np.concatenate(
        (67 + shift + scale[np.arange(n) % 8], 43 + shift + scale[[0, 4] * (n // 4)], np.full(n, 42))
    )
    channel = np.concatenate((np.zeros(n), np.ones(n // 2), np.full(n, 9))).astype(np.int8)
    notes = Notes(
        start,
        start + length,
        pitch,
        np.full(len(start), 100),
        channel,
        np.zeros(len(start)),
        channel.astype(np.int32),
        channel == 9,
    )
    tempo = TempoMap(np.zeros(1, np.int64), np.full(1, 500_000, np.int64))
    return Score(
        notes,
        tempo,
        TimeSignatures(np.zeros(1, np.int64), np.full(1, 4), np.full(1, 4)),
        beat,
        ("melody", "bass", "drums"),
    )
