"""Write the golden files that check the numba step against torch without torch in the test run.

    python data/make_golden.py

A small random ``ArrangerNet`` (hidden 16) is exported to ``tests/data/golden_model.npz``;
a random but valid input and token sequence, in keys and in buttons mode, and torch's
log-probabilities of those tokens under teacher forcing go to ``tests/data/golden_io.npz``.
``tests/test_model.py`` loads both and requires the numba kernels to agree (relative error
under 1e-5).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from chiptuner.model.arranger import bar_voice_flags, condition_rows
from chiptuner.train.arranger import ArrangerNet, _held_tokens, export, masked_log_prob, pair_rows, step_rows

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))  # the tests' random tokens, shared with tests/test_model.py and tests/test_train.py
from tests.helpers import random_tokens  # noqa: E402


def main() -> None:
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    net = ArrangerNet(hidden=16, embed=8).double()
    with torch.no_grad():  # larger weights than the default init, so every nonlinearity is exercised
        net.pair.normal_()  # the pair tables start at zero
        net.pair_interval.normal_()
        for parameter in net.parameters():
            parameter.mul_(3.0)
    net = net.float().double()  # weights exactly as the float32 export holds them; torch computes in float64
    n_steps = 96
    pitch = np.where(rng.random(n_steps) < 0.2, -1, rng.integers(30, 100, n_steps))
    pitch_onset = rng.random(n_steps) < 0.4
    lane = np.where(pitch >= 0, rng.integers(0, 5, n_steps), -1)
    position = (np.arange(n_steps) % 16) + (np.arange(n_steps) >= 80) * 20  # a few positions past MAX_POSITION
    tokens = random_tokens(rng, n_steps)
    previous = np.vstack((np.zeros((1, 4), dtype=np.int64), tokens[:-1]))
    out = {"pitch": pitch, "pitch_onset": pitch_onset, "lane": lane, "position": position, "tokens": tokens}
    # The settings teacher_forced_log_prob gives by default: style chip, energy mid, the real bars' voices.
    settings = condition_rows(0, 1, bar_voice_flags(tokens, position))
    pairs = torch.from_numpy(pair_rows(tokens[:, :3], _held_tokens(tokens)[:, :3]))[None]
    for name, buttons in (("keys", False), ("buttons", True)):
        rows = step_rows(pitch, pitch_onset, lane, pitch_onset, position, previous, np.full(n_steps, buttons))
        rows = np.concatenate((rows, settings), axis=-1)
        with torch.no_grad():
            logits, _ = net(torch.from_numpy(rows)[None], pairs)
            log_prob = masked_log_prob(logits, torch.from_numpy(previous)[None], torch.from_numpy(tokens)[None])
        out[f"log_prob_{name}"] = log_prob[0].numpy()
        out[f"logits_{name}"] = logits[0].numpy()
    OUT.mkdir(parents=True, exist_ok=True)
    export(net.float(), metadata={"purpose": "golden parity test"}).save(OUT / "golden_model.npz")
    np.savez(OUT / "golden_io.npz", **out)
    print(f"wrote {OUT / 'golden_model.npz'} and {OUT / 'golden_io.npz'}")


if __name__ == "__main__":
    main()
