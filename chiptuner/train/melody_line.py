"""Fit the line network of ``chiptuner.melody`` (a stacked bidirectional GRU over a song's notes) with torch.

    python -m chiptuner.train.melody_line [--corpora DIR] [--epochs 24] [--seeds 0 1] [--out FILE] [--add]

The shipped file, in two runs (about 82 + 70 minutes on two cores, ``--threads 2``):

    python -m chiptuner.train.melody_line --threads 2
    python -m chiptuner.train.melody_line --threads 2 --hidden 160 --dropout 0.35 --epochs 20 --seeds 3 --add

Training songs: every POP909 song but the held-out 301-909 divisible by 3 (706 songs,
686 with a MELODY track), each with all three tracks merged and with MELODY+PIANO merged
(settings (b) and (a) of ``melody_corpus.SETTINGS``, which tools/measure_melody.py scores).

Every pitched note of a merged song, in the kernel's candidate order, gets the inputs
``_kernels.melody_pick.line_inputs`` computes with the note networks (82 columns and the second
pass's probability): the shipped ones on songs 301-909, which they never saw, and on their
own training songs 001-300 ones fitted on the other half of 001-300
(``out_of_fold_note_nets``, about 70 s), so the line network learns how far to trust them
on a new song. It is labelled melody when the MELODY track has a note of
that pitch on that step. The network: one ReLU layer of 128 units, two GRU layers of 128
units each way (the upper one reading both directions of the lower), a logit from the
top layer's two directions and the ReLU layer (``line_logits``); dropout 0.3 on the ReLU
layer, between the GRU layers and on the top one while training. It is trained on
windows of 768 notes (random offsets each epoch, batches of 32) with Adam, learning rate
3e-3 decayed to 0 on a cosine, binary cross-entropy. Input scaling is folded into the
first layer. 24 epochs take about 82 minutes on two cores (``--threads 2``; 160 units
about 200 s an epoch too: torch's time here is not mostly the matrix products). One
network is fitted from each of ``--seeds``; the file holds them all, those of one width
stacked (``--add`` keeps the networks already in ``--out``), and the kernel averages
their logits, each network counted once.

The size was chosen on the held-out songs (tools/measure_melody.py, all merged; two layers,
24 epochs each, this script before the out-of-fold inputs, on songs not divisible by 3):
32 units (dropout 0.1) 0.846, 48 units (0.15) 0.863, 64 units (0.2) 0.872, 96 units
(0.25) 0.884; one layer of 32 units was 0.831. With the out-of-fold inputs and songs
001-300 divisible by 3 added, 96 units read 0.888 (seed 0) and 0.885 (seed 1), and the
mean of the two networks' logits 0.893, at twice the cost; 128 units (dropout 0.3) read
0.893 and 0.891, and their mean 0.898; a third from seed 2 reads 0.887 alone, and the
mean of the three 0.899. One of 160 units (dropout 0.35, 20 epochs, seed 3) reads 0.891
alone; with the pair of 128 0.900 (0.9004, shipped), with all three of 128 0.9002 at a
third more cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from chiptuner import melody as mel
from chiptuner._kernels import melody_features as _features
from chiptuner._kernels import melody_pick as _pick
from chiptuner.train import melody_corpus
from chiptuner.train import melody_notes as note_fit
from chiptuner.types import Notes, Score

HIDDEN = 128
LAYERS = 2
DROPOUT = 0.3
WINDOW = 768
BATCH = 32
LEARNING_RATE = 3e-3
SETTINGS = ("all", "melody_piano")
#: One network fitted from each; ``_kernels.melody_nets.ensemble_line_logits`` averages their logits.
SEEDS = (0, 1)


#: The note networks' training songs (``chiptuner.train.melody_notes``).
NOTE_NET_SONGS = range(1, 301)


def is_training_song(i: int) -> bool:
    """POP909 songs the line network learns from: all but the held-out 301-909 divisible by 3."""
    return i in NOTE_NET_SONGS or i % 3 != 0


def out_of_fold_note_nets(scores: dict) -> dict[int, tuple]:
    """For each of the note networks' training songs, note networks fitted without it.

    The shipped note networks have seen songs 001-300; their probabilities there are
    sharper than on any new song (second-pass cross-entropy 0.22 on 001-300 against 0.37 on
    301-909, all merged), and a line network fitted on those inputs learns to trust them
    more than it should. So each of those songs gets its inputs from networks fitted on the
    other half of 001-300 (two folds: odd and even song numbers), as a new song would.
    """
    ids = [i for i in scores if i in NOTE_NET_SONGS]
    folds = [[i for i in ids if i % 2 == parity] for parity in (0, 1)]
    nets = {}
    for k, fold in enumerate(folds):
        t0 = time.perf_counter()
        fitted = note_fit.fit(note_fit.training_songs(scores, folds[1 - k]))
        print(f"note networks without fold {k + 1}/2 ({len(fold)} songs): {time.perf_counter() - t0:.0f} s", flush=True)
        nets.update(dict.fromkeys(fold, (fitted[0], fitted[1])))
    return nets


def note_inputs(score: Score, truth: Notes, note_nets: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``line_inputs`` of every pitched note in the kernel's candidate order, and its labels.

    ``note_nets``: the two note networks (default: the shipped ones).
    """
    net1, net2 = note_nets or mel.shipped_networks()[:2]
    notes = score.notes
    order, st, en = note_fit.candidate_order(score)
    pitch = notes.pitch[order]
    x = np.empty((len(order), _features.N_INPUTS))
    q = np.empty(len(order))
    _pick.line_inputs(st, en, pitch, notes.velocity[order], net1, net2, mel._SECOND_MIN_Q, x, q)
    y = melody_corpus.melody_labels(score, truth, st, pitch)
    return np.concatenate([x, q[:, None]], axis=1).astype(np.float32), y.astype(np.float32)


def fit(
    songs: list[tuple[np.ndarray, np.ndarray]],
    epochs: int,
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    dropout: float = DROPOUT,
    threads: int = 0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Train the network on (inputs, labels) per song; its weights in ``mel.LINE_NET_KEYS`` form.

    ``threads``: torch's threads, 0 for its default.
    """
    import torch  # noqa: PLC0415 (training extra, offline only)
    from torch import nn  # noqa: PLC0415

    if threads:
        torch.set_num_threads(threads)

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stacked = np.concatenate([x for x, _ in songs])
    mu = stacked.mean(axis=0)
    sd = stacked.std(axis=0)
    sd[sd < 1e-6] = 1.0
    scaled = [((x - mu) / sd, y) for x, y in songs]

    class LineNet(nn.Module):
        def __init__(self, n_in: int):
            super().__init__()
            self.inp = nn.Linear(n_in, hidden)
            # Between GRU layers only: torch warns about (and ignores) it for a single layer.
            between = dropout if layers > 1 else 0.0
            self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True, dropout=between)
            self.out = nn.Linear(3 * hidden, 1)

        def forward(self, x):
            # Dropout on the ReLU layer and on the last GRU layer's output (and, inside
            # nn.GRU, between its layers): inference runs without it (line_logits).
            e = nn.functional.dropout(torch.relu(self.inp(x)), dropout, self.training)
            h, _ = self.gru(e)
            h = nn.functional.dropout(h, dropout, self.training)
            return self.out(torch.cat([h, e], -1))[..., 0]

    net = LineNet(stacked.shape[1])
    opt = torch.optim.Adam(net.parameters(), LEARNING_RATE)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda ep: 0.5 * (1 + np.cos(np.pi * ep / epochs)))
    for epoch in range(epochs):
        t0 = time.perf_counter()
        windows = []
        for x, y in scaled:
            offset = int(rng.integers(0, WINDOW))
            for a in range(-offset, len(x), WINDOW):
                lo, hi = max(a, 0), min(a + WINDOW, len(x))
                if hi - lo > 32:
                    windows.append((x[lo:hi], y[lo:hi]))
        rng.shuffle(windows)
        total = 0.0
        for k in range(0, len(windows), BATCH):
            batch = windows[k : k + BATCH]
            length = max(len(x) for x, _ in batch)
            xb = np.zeros((len(batch), length, stacked.shape[1]), np.float32)
            yb = np.zeros((len(batch), length), np.float32)
            mask = np.zeros((len(batch), length), np.float32)
            for j, (x, y) in enumerate(batch):
                xb[j, : len(x)], yb[j, : len(x)], mask[j, : len(x)] = x, y, 1.0
            loss_each = nn.functional.binary_cross_entropy_with_logits(
                net(torch.from_numpy(xb)), torch.from_numpy(yb), reduction="none"
            )
            loss = (loss_each * torch.from_numpy(mask)).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        sched.step()
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / len(windows):.4f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    state = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    w_in = state["inp.weight"] / sd[None, :]

    def gru(name: str, layers: range) -> np.ndarray:
        # (layers, 2 directions, ...): torch keeps one tensor per layer and direction.
        # np.array, not np.stack: one layer has no upper layers, an empty range.
        return np.array([[state[f"gru.{name}_l{k}"], state[f"gru.{name}_l{k}_reverse"]] for k in layers])

    return {
        "w_in": w_in,
        "b_in": state["inp.bias"] - w_in @ mu,
        "w_ih_first": gru("weight_ih", range(1))[0],
        "w_ih_upper": gru("weight_ih", range(1, layers)).reshape(layers - 1, 2, 3 * hidden, 2 * hidden),
        "w_hh": gru("weight_hh", range(layers)),
        "b_ih": gru("bias_ih", range(layers)),
        "b_hh": gru("bias_hh", range(layers)),
        "w_out": state["out.weight"][0],
        "b_out": state["out.bias"][0],
    }


def save_networks(nets: list[dict[str, np.ndarray]], path: Path) -> None:
    """Write networks (``fit``'s) in float32 as ``mel.load_line_nets`` reads them: those of one width stacked."""
    arrays = {}
    for width in sorted({len(w["b_in"]) for w in nets}):
        group = [w for w in nets if len(w["b_in"]) == width]
        if len({w["w_hh"].shape for w in group}) > 1:
            raise ValueError(f"networks of {width} units with different layer counts cannot share {path}")
        for key in mel.LINE_NET_KEYS:
            arrays[f"{key}.{width}"] = np.stack([np.asarray(w[key], np.float32) for w in group])
    note_fit.write_weight_file(path, arrays)


def load_networks(path: Path) -> list[dict[str, np.ndarray]]:
    """The networks of a file ``save_networks`` wrote, one dict each (``fit``'s form)."""
    return [
        {key: weights[k] for key, weights in zip(mel.LINE_NET_KEYS, group, strict=True)}
        for group in mel.load_line_nets(path)
        for k in range(len(group[-1]))
    ]


def main(argv: list[str] | None = None) -> int:
    """Fit from the command line (usage in the module docstring); the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=melody_corpus.DEFAULT_CORPORA)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=mel.LINE_NETS_PATH)
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="GRU units each way (and ReLU units)")
    parser.add_argument("--layers", type=int, default=LAYERS, help="stacked GRU layers")
    parser.add_argument("--dropout", type=float, default=DROPOUT)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(SEEDS), help="one network per seed, logits averaged"
    )
    parser.add_argument(
        "--add", action="store_true", help="keep the networks already in --out and add the new ones to their mean"
    )
    args = parser.parse_args(argv)
    if args.add and not args.out.is_file():
        parser.error(f"--add: {args.out} does not exist; leave --add out to write a new file")
    scores = {i: score for i, score in melody_corpus.pop909_songs(args.corpora, 1, 909) if is_training_song(i)}
    if not scores:
        parser.error(f"no POP909 songs under {args.corpora}")
    fold_nets = out_of_fold_note_nets(scores)
    songs = []
    for i, score in scores.items():
        truth = melody_corpus.melody_track(score)
        nets = fold_nets.get(i)
        songs.extend(note_inputs(melody_corpus.merged_setting(score, setting), truth, nets) for setting in SETTINGS)
    print(f"{len(songs)} merged songs, {sum(len(y) for _, y in songs)} notes", flush=True)
    kept = load_networks(args.out) if args.add else []
    nets = [fit(songs, args.epochs, args.hidden, args.layers, args.dropout, args.threads, seed) for seed in args.seeds]
    nets = kept + nets
    save_networks(nets, args.out)
    print(f"wrote {args.out} ({len(nets)} networks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
