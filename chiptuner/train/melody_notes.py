"""Fit the two note networks of ``chiptuner.melody`` on POP909 songs 001-300 (never the held-out ones).

    python -m chiptuner.train.melody_notes [--corpora DIR] [--validate] [--write] [--out FILE]

Every pitched note of a song merged into one track, in both evaluation settings
(MELODY+PIANO and MELODY+BRIDGE+PIANO), in the kernel's candidate order, gets
``_kernels.melody_features.note_features``; a note is labelled melody when the MELODY track has a
note of that pitch on that step. Each song is used as it is and once more with its
tracks' velocities pulled together (``flatten_velocity``). Network 1 (one hidden layer of
16 ReLU units, scikit-learn, offline only) learns the label from those features. Its
probabilities give ``context_features``; network 2 learns the label from both. The
probabilities network 2's training songs get from network 1 come from networks fitted on
the other half of the songs (two folds), as they would on a new song. Input scaling is
folded into the first layer, so inference is plain arrays in
``_kernels.melody_nets.mlp_logits``. The line network on top of them is fitted by
``chiptuner.train.melody_line`` (refit it after refitting these).

``--validate`` fits on the songs not divisible by 3 and prints the F1 of
``melody_notes`` on the others, as they are and with flattened velocities (choose
features and settings with this, never with 301-909). ``--write`` fits on all of 001-300
and writes the networks to ``--out`` (default: the shipped ``chiptuner/models/melody_notes.npz``).
Refits of the same data with the songs dealt into other folds move the validation F1 of
the all-merged setting by up to 1.5 points: differences smaller than that are not evidence.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

from chiptuner import melody as mel
from chiptuner._kernels import melody as _grid
from chiptuner._kernels import melody_features as _features
from chiptuner._kernels import melody_nets as _nets
from chiptuner._kernels import melody_order as _order
from chiptuner.timebase import STEPS_PER_BEAT
from chiptuner.train import melody_corpus
from chiptuner.types import Notes, Score

MERGED = ("melody_piano", "all")
#: Velocity-flattened copies of each training song (``flatten_velocity``), and the ranges of
#: their spread and track-offset factors.
AUGMENT = 1
SPREAD = (0.25, 0.7)
OFFSET = (0.2, 0.7)
HIDDEN = 16
MAX_ITER = 30
#: Share of the notes each network is fitted on (half: plenty, and keeps the fit modest).
SUBSAMPLE = 0.5
#: Networks in a row: note features; then plus first-pass context.
PASSES = 2


def candidate_order(score: Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pitched notes in the kernel's candidate order (``pitched_onset_order``), their 16th steps."""
    notes = score.notes
    st = np.empty(len(notes), np.int64)
    en = np.empty(len(notes), np.int64)
    _grid.grid_steps(notes.start_tick, notes.end_tick, score.ticks_per_beat, STEPS_PER_BEAT, st, en)
    order = np.empty(len(notes), np.int64)
    n_pitched = _order.pitched_onset_order(notes.start_tick, en, notes.pitch, notes.velocity, notes.is_drum, order)
    order = order[:n_pitched]
    return order, st[order], en[order]


def labelled_notes(score: Score, truth: Notes) -> dict[str, np.ndarray]:
    """Grid, features and labels of every pitched note, in the kernel's candidate order.

    ``x`` has room for the first context too (``add_context`` fills it); ``y`` is
    ``melody_corpus.melody_labels`` against ``truth``.
    """
    notes = score.notes
    order, st, en = candidate_order(score)
    pitch = notes.pitch[order]
    velocity = notes.velocity[order]
    x = np.zeros((len(order), _features.SECOND_CONTEXT_START))
    _features.note_features(st, en, pitch, velocity, x)
    y = melody_corpus.melody_labels(score, truth, st, pitch)
    return {"st": st, "en": en, "pitch": pitch, "velocity": velocity, "x": x, "y": y}


def flatten_velocity(score: Score, spread: float, offset: float) -> Score:
    """The song with each track's velocities pulled toward the song's median.

    A track's spread around its median is scaled by ``spread`` and its median's distance
    from the song's by ``offset``. POP909's later songs (401-909, unlabelled statistics
    only) play every track at nearly one level (melody velocity spread 4 against 10 in
    001-300; melody minus accompaniment 5-10 against 9-19): fitted without these copies,
    the networks lean on a velocity gap that is not there.
    """
    n = score.notes
    v = n.velocity.astype(np.float64)
    median = np.median(v)
    out = v.copy()
    for t in np.unique(n.track):
        m = n.track == t
        tm = np.median(v[m])
        out[m] = median + offset * (tm - median) + spread * (v[m] - tm)
    velocity = np.clip(np.round(out), 1, 127).astype(n.velocity.dtype)
    notes = Notes(n.start_tick, n.end_tick, n.pitch, velocity, n.channel, n.program, n.track, n.is_drum)
    return Score(notes, score.tempo, score.time_signatures, score.ticks_per_beat, score.track_names)


def versions(score: Score, rng: np.random.Generator) -> list[Score]:
    """The song and its ``AUGMENT`` velocity-flattened copies."""
    return [score] + [flatten_velocity(score, rng.uniform(*SPREAD), rng.uniform(*OFFSET)) for _ in range(AUGMENT)]


def fit_net(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """One hidden layer of ``HIDDEN`` ReLU units on standardised inputs; returns plain arrays."""
    from sklearn.neural_network import MLPClassifier  # noqa: PLC0415 (offline only)

    rng = np.random.default_rng(seed)
    sub = rng.random(len(y)) < SUBSAMPLE
    mu = x[sub].mean(axis=0)
    sd = x[sub].std(axis=0)
    sd[sd < 1e-9] = 1.0
    net = MLPClassifier(
        (HIDDEN,), alpha=1e-4, batch_size=512, max_iter=MAX_ITER, early_stopping=True, random_state=seed
    ).fit((x[sub] - mu) / sd, y[sub])
    w_hidden = np.ascontiguousarray((net.coefs_[0] / sd[:, None]).T)  # (H, F): rows per hidden unit
    b_hidden = net.intercepts_[0] - (mu / sd) @ net.coefs_[0]
    return w_hidden, b_hidden, net.coefs_[1][:, 0].copy(), float(net.intercepts_[1][0])


def logits(x: np.ndarray, net) -> np.ndarray:
    """A note network's logit per row of ``x`` (the kernel's ``mlp_logits``)."""
    out = np.empty(len(x))
    _nets.mlp_logits(np.ascontiguousarray(x), *net, out)
    return out


def add_context(song: dict, net) -> None:
    """The first pass's probabilities and the context columns they give the second (as ``line_inputs``)."""
    q = 1.0 / (1.0 + np.exp(-logits(song["x"][:, : _features.N_FEATURES], net)))
    context = song["x"][:, _features.FIRST_CONTEXT_START : _features.SECOND_CONTEXT_START]
    _features.context_features(song["st"], song["en"], song["pitch"], song["velocity"], q, context)


def n_inputs(k: int) -> int:
    """Input columns of pass ``k``'s network: note features, then plus first-pass context."""
    return (_features.N_FEATURES, _features.SECOND_CONTEXT_START)[k]


def fit(songs: list[dict]) -> list[tuple]:
    """The ``PASSES`` networks, each on the features plus the context of the pass before.

    The context a network learns from comes from earlier networks fitted on the other
    half of the songs (two folds), as it would on a new song.
    """
    # Every version and setting of a song in one fold; songs alternate between the folds.
    first = {}
    half = [first.setdefault(s["song"], len(first)) % 2 for s in songs]
    both = (
        [s for s, h in zip(songs, half, strict=True) if h == 0],
        [s for s, h in zip(songs, half, strict=True) if h == 1],
    )

    def stack(part, cols):
        return np.concatenate([s["x"][:, :cols] for s in part]), np.concatenate([s["y"] for s in part])

    nets = []
    for k in range(PASSES):
        nets.append(fit_net(*stack(songs, n_inputs(k)), seed=k))
        if k == PASSES - 1:
            break
        fold_nets = [fit_net(*stack(part, n_inputs(k)), seed=k) for part in both]
        for a, b in ((0, 1), (1, 0)):
            for s in both[b]:
                add_context(s, fold_nets[a])
    return nets


def save_note_nets(nets: list[tuple], path: Path) -> None:
    """Write the two note networks (``fit``'s) as ``mel.load_note_nets`` reads them: float64, ``{key}.{pass}``."""
    arrays = {
        f"{key}.{k}": np.asarray(value, dtype=np.float64)
        for k, net in enumerate(nets, 1)
        for key, value in zip(mel.NOTE_NET_KEYS, net, strict=True)
    }
    write_weight_file(path, arrays)


def write_weight_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to the .npz at ``path`` (its name as given), beside it first and then moved over it.

    An interrupted write leaves the old file as it was.
    """
    unfinished = path.with_name(path.name + ".partial")
    with unfinished.open("wb") as f:
        np.savez(f, **arrays)
    os.replace(unfinished, path)


def training_songs(scores: dict, train_ids: list[int]) -> list[dict]:
    """``labelled_notes`` of every training example: each song as is and velocity-flattened, in both merged settings."""
    rng = np.random.default_rng(0)
    songs = []
    for i in train_ids:
        for version in versions(scores[i], rng):
            for setting in MERGED:
                merged = melody_corpus.merged_setting(version, setting)
                song = labelled_notes(merged, melody_corpus.melody_track(version))
                song["song"] = i
                songs.append(song)
    return songs


def main(argv: list[str] | None = None) -> int:
    """Fit from the command line (usage in the module docstring); the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=melody_corpus.DEFAULT_CORPORA)
    parser.add_argument("--validate", action="store_true", help="fit on 001-300 not divisible by 3, test on the rest")
    parser.add_argument("--write", action="store_true", help="fit on all of 001-300 and write --out")
    parser.add_argument("--out", type=Path, default=mel.NOTE_NETS_PATH, help="the weight file --write writes")
    args = parser.parse_args(argv)
    scores = dict(melody_corpus.pop909_songs(args.corpora, 1, 300))
    if not scores:
        parser.error(f"no POP909 songs 001-300 under {args.corpora}")
    train_ids = [i for i in scores if i % 3] if args.validate else list(scores)
    nets = fit(training_songs(scores, train_ids))
    if args.validate:
        picker = partial(mel.melody_notes, networks=mel.shipped_networks()._replace(first=nets[0], second=nets[1]))
        check = [scores[i] for i in scores if i % 3 == 0]
        flat = [flatten_velocity(s, 0.45, 0.5) for s in check]
        for label, group in (("", check), (", velocities flattened", flat)):
            for setting in (*MERGED, "tracks"):
                f1 = np.mean([melody_corpus.setting_f1(s, setting, picker) for s in group])
                print(f"validation (001-300, every third song, {len(check)}{label}) {setting}: F1 {f1:.3f}")
    if args.write:
        save_note_nets(nets, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
