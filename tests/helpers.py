"""Random but valid arranger data shared by the model and training tests and ``data/make_golden.py``."""

from __future__ import annotations

import numpy as np

from chiptuner.model.arranger import FIRST_NOTE, HOLD, N_TOKENS, REST


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
