"""Fit the two note networks of ``chiptuner.melody`` on POP909 songs 001-300 (never the held-out ones).

    python bench/fit_melody.py [--corpora DIR] [--validate] [--write]

Every pitched note of a song merged into one track, in both evaluation settings
(MELODY+PIANO and MELODY+BRIDGE+PIANO), in the kernel's candidate order, gets
``_kernels.melody.note_features``; a note is labelled melody when the MELODY track has a
note of that pitch on that step. Network 1 (one hidden layer of 16 ReLU units,
scikit-learn, offline only) learns the label from those features. Its probabilities give
``context_features``; network 2 learns the label from both. Network 1's probabilities
for network 2's training songs come from the other half of the songs (two folds), as they
would on a new song. Input scaling is folded into the first layer, so inference is plain
arrays in ``_kernels.melody.mlp_logits``.

``--validate`` fits on the songs not divisible by 3 and prints the F1 of
``melody_notes`` on the others (choose features and settings with this, never with
301-909). ``--write`` fits on all of 001-300 and rewrites the fitted block of
``chiptuner/melody.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure_melody as mm  # noqa: E402

from chiptuner import melody as mel  # noqa: E402
from chiptuner._kernels import melody as _k  # noqa: E402

MERGED = ("melody_piano", "all")
HIDDEN = 16
MELODY_PY = Path(mel.__file__)


def song_arrays(score, truth) -> dict[str, np.ndarray]:
    """Grid, features and labels of every pitched note, in the kernel's candidate order."""
    notes = score.notes
    t_st = np.empty(len(truth), np.int64)
    t_en = np.empty(len(truth), np.int64)
    _k.grid_steps(truth.start_tick, truth.end_tick, score.ticks_per_beat, 4, t_st, t_en)
    keep = np.flatnonzero(~notes.is_drum)
    order = keep[np.argsort(notes.start_tick[keep], kind="stable")]
    st = np.empty(len(order), np.int64)
    en = np.empty(len(order), np.int64)
    _k.grid_steps(notes.start_tick[order], notes.end_tick[order], score.ticks_per_beat, 4, st, en)
    pitch = notes.pitch[order]
    velocity = notes.velocity[order]
    x = np.zeros((len(order), _k.N_FEATURES + _k.N_CONTEXT))
    _k.note_features(st, en, pitch, velocity, x)
    y = np.isin(st * 128 + pitch, t_st * 128 + truth.pitch)
    return {"st": st, "en": en, "pitch": pitch, "velocity": velocity, "x": x, "y": y}


def fit_net(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """One hidden layer of ``HIDDEN`` ReLU units on standardised inputs; returns plain arrays."""
    from sklearn.neural_network import MLPClassifier  # noqa: PLC0415 (offline only)

    rng = np.random.default_rng(seed)
    sub = rng.random(len(y)) < 0.5  # half the notes: plenty, and keeps the fit modest
    mu = x[sub].mean(axis=0)
    sd = x[sub].std(axis=0)
    sd[sd < 1e-9] = 1.0
    net = MLPClassifier((HIDDEN,), alpha=1e-4, batch_size=512, max_iter=30, early_stopping=True, random_state=seed).fit(
        (x[sub] - mu) / sd, y[sub]
    )
    w_hidden = np.ascontiguousarray((net.coefs_[0] / sd[:, None]).T)  # (H, F): rows per hidden unit
    b_hidden = net.intercepts_[0] - (mu / sd) @ net.coefs_[0]
    return w_hidden, b_hidden, net.coefs_[1][:, 0].copy(), float(net.intercepts_[1][0])


def logits(x: np.ndarray, net) -> np.ndarray:
    out = np.empty(len(x))
    _k.mlp_logits(np.ascontiguousarray(x), *net, out)
    return out


def add_context(song: dict, net1) -> None:
    q = 1.0 / (1.0 + np.exp(-logits(song["x"][:, : _k.N_FEATURES], net1)))
    _k.context_features(song["st"], song["en"], song["pitch"], song["velocity"], q, song["x"][:, _k.N_FEATURES :])


def fit(songs: list[dict]) -> tuple:
    """Network 1 on all songs; network 2 on features plus out-of-fold context."""
    nf = _k.N_FEATURES
    half = np.arange(len(songs)) // len(MERGED) % 2  # both settings of a song in one fold
    both = (
        [s for s, h in zip(songs, half, strict=True) if h == 0],
        [s for s, h in zip(songs, half, strict=True) if h == 1],
    )
    for a, b in ((0, 1), (1, 0)):
        net = fit_net(np.concatenate([s["x"][:, :nf] for s in both[a]]), np.concatenate([s["y"] for s in both[a]]))
        for s in both[b]:
            add_context(s, net)
    net2 = fit_net(np.concatenate([s["x"] for s in songs]), np.concatenate([s["y"] for s in songs]), seed=1)
    net1 = fit_net(np.concatenate([s["x"][:, :nf] for s in songs]), np.concatenate([s["y"] for s in songs]))
    return net1, net2


def _literal(a: np.ndarray, indent: str = "        ") -> str:
    """A list literal, 8 numbers per line, 5 significant digits (under 1e-9: 0)."""
    cells = [f"{v:.5g}" if abs(v) >= 1e-9 else "0" for v in np.ravel(a)]
    rows = [", ".join(cells[k : k + 8]) for k in range(0, len(cells), 8)]
    return "[\n" + "".join(f"{indent}{row},\n" for row in rows) + indent[:-4] + "]"


def fitted_block(net1, net2) -> str:
    lines = ["# fitted by bench/fit_melody.py --write on POP909 001-300; do not edit by hand"]
    for k, net in ((1, net1), (2, net2)):
        w_hidden, b_hidden, w_out, b_out = net
        lines += [
            f"_NET{k} = (",
            f"    np.array({_literal(w_hidden)}).reshape({w_hidden.shape[0]}, {w_hidden.shape[1]}),",
            f"    np.array({_literal(b_hidden)}),",
            f"    np.array({_literal(w_out)}),",
            f"    {b_out:.5g},",
            ")  # fmt: skip",
        ]
    lines.append("# end of fitted block")
    return "\n".join(lines)


def install(net1, net2) -> None:
    """Use these networks in ``chiptuner.melody`` for the rest of this process."""
    mel._NET1 = tuple(np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) else float(a) for a in net1)
    mel._NET2 = tuple(np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) else float(a) for a in net2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=mm.DEFAULT_CORPORA)
    parser.add_argument("--validate", action="store_true", help="fit on 001-300 not divisible by 3, test on the rest")
    parser.add_argument("--write", action="store_true", help="fit on all of 001-300 and rewrite chiptuner/melody.py")
    args = parser.parse_args(argv)
    scores = dict(mm.pop909_songs(args.corpora, 1, 300))
    train_ids = [i for i in scores if i % 3] if args.validate else list(scores)
    songs = [
        song_arrays(mm.merged_setting(scores[i], setting), mm.melody_track(scores[i]))
        for i in train_ids
        for setting in MERGED
    ]
    net1, net2 = fit(songs)
    block = fitted_block(net1, net2)
    if args.validate:
        install(net1, net2)
        check = [scores[i] for i in scores if i % 3 == 0]
        for setting in (*MERGED, "tracks"):
            f1 = np.mean([mm.setting_f1(s, setting, mel.melody_notes) for s in check])
            print(f"validation (001-300, every third song, {len(check)}) {setting}: F1 {f1:.3f}")
    if args.write:
        text = MELODY_PY.read_text()
        pattern = re.compile(r"# fitted by bench/fit_melody\.py.*?# end of fitted block", re.S)
        if not pattern.search(text):
            raise SystemExit(f"no fitted block in {MELODY_PY}")
        MELODY_PY.write_text(pattern.sub(lambda _: block, text))
        print(f"wrote the fitted block of {MELODY_PY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
