"""Melody-extraction accuracy: note-level F1 against ground-truth melodies.

    python bench/measure_melody.py [--corpora DIR] [--songs 301-909] [--fit]

POP909: every track merged into one (track 0, channel 0, program 0, no names) and as is,
compared with the MELODY track. Nottingham: the full file (merged) against its
``melody/`` twin. Bach chorales: merged against the soprano (channel 0). A match is the
same pitch with onsets within one 16th (one-to-one). ``--fit`` refits the note weights on
POP909 001-300 (never on the held-out songs) and prints them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import chiptuner
from chiptuner import melody as mel
from chiptuner._kernels import melody as _k
from chiptuner.types import Notes, Score

DEFAULT_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def merge_tracks(score: Score) -> Score:
    """The same notes with track identity removed: track 0, channel 0, program 0, no names."""
    n = score.notes
    zero = np.zeros(len(n), dtype=np.int64)
    notes = Notes(n.start_tick, n.end_tick, n.pitch, n.velocity, zero, zero, zero, n.is_drum)
    return Score(notes, score.tempo, score.time_signatures, score.ticks_per_beat)


def note_f1(ref: Notes, est: Notes, tolerance_tick: int) -> tuple[float, float, float]:
    """(F1, precision, recall): same pitch, onsets within ``tolerance_tick``, one-to-one."""
    tp = 0
    for p in np.unique(ref.pitch):
        a = np.sort(ref.start_tick[ref.pitch == p])
        b = np.sort(est.start_tick[est.pitch == p])
        i = j = 0
        while i < len(a) and j < len(b):
            if abs(int(a[i]) - int(b[j])) <= tolerance_tick:
                tp, i, j = tp + 1, i + 1, j + 1
            elif a[i] < b[j]:
                i += 1
            else:
                j += 1
    precision = tp / max(len(est), 1)
    recall = tp / max(len(ref), 1)
    return 2 * precision * recall / max(precision + recall, 1e-12), precision, recall


def pop909_songs(corpora: Path, first: int, last: int):
    for i in range(first, last + 1):
        path = corpora / "pop909" / "POP909" / f"{i:03d}" / f"{i:03d}.mid"
        if path.is_file():
            score = chiptuner.read_midi(path)
            if "MELODY" in score.track_names:
                yield i, score


def melody_track(score: Score) -> Notes:
    return score.notes.take(score.notes.track == score.track_names.index("MELODY"))


def pop909_f1(corpora: Path, first: int, last: int) -> dict[str, float]:
    rows = []
    for _, score in pop909_songs(corpora, first, last):
        ref, tol = melody_track(score), score.ticks_per_beat // 4
        merged = merge_tracks(score)
        rows.append(
            (
                note_f1(ref, mel.skyline_notes(merged), tol)[0],
                note_f1(ref, mel.melody_notes(merged), tol)[0],
                note_f1(ref, mel.melody_notes(score), tol)[0],
            )
        )
    mean = np.mean(rows, axis=0)
    return {"songs": len(rows), "skyline": mean[0], "merged": mean[1], "as_is": mean[2]}


def pair_f1(files, truth) -> dict[str, float]:
    rows = []
    for path in files:
        score = chiptuner.read_midi(path)
        ref, tol = truth(path, score), score.ticks_per_beat // 4
        merged = merge_tracks(score)
        rows.append((note_f1(ref, mel.skyline_notes(merged), tol)[0], note_f1(ref, mel.melody_notes(merged), tol)[0]))
    mean = np.mean(rows, axis=0)
    return {"songs": len(rows), "skyline": mean[0], "merged": mean[1]}


def fit(corpora: Path) -> None:
    """Refit ``_NOTE_WEIGHTS`` and ``_SCORE_BIAS`` on POP909 001-300 and print them."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 (lazy: slow import)

    xs, ys = [], []
    songs = list(pop909_songs(corpora, 1, 300))
    for _, score in songs:
        merged = merge_tracks(score)
        order, start, end, pitch = mel._grid(merged.notes, merged.ticks_per_beat)
        x = np.zeros((len(order), _k.N_FEATURES))
        _k.note_features(start, end, pitch, x)
        is_mel = score.notes.track[order] == score.track_names.index("MELODY")
        truth = set(zip(start[is_mel].tolist(), pitch[is_mel].tolist(), strict=True))
        xs.append(x)
        ys.append(np.array([(s, p) in truth for s, p in zip(start.tolist(), pitch.tolist(), strict=True)]))
    model = LogisticRegression(C=1.0, max_iter=5000, fit_intercept=False).fit(np.concatenate(xs), np.concatenate(ys))
    mel._NOTE_WEIGHTS = model.coef_[0]
    print("_NOTE_WEIGHTS =", np.round(model.coef_[0], 4).tolist())
    for bias in (0.0, 0.5, 1.0, 1.5, 2.0):
        mel._SCORE_BIAS = bias
        f1 = np.mean(
            [note_f1(melody_track(s), mel.melody_notes(merge_tracks(s)), s.ticks_per_beat // 4)[0] for _, s in songs[::3]]
        )
        print(f"bias {bias}: F1 {f1:.4f} (every third song of 001-300)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--songs", default="301-909", help="POP909 song range, e.g. 301-909 (held out)")
    parser.add_argument("--other", type=int, default=200, help="Nottingham tunes and Bach chorales to check")
    parser.add_argument("--fit", action="store_true", help="refit the note weights on POP909 001-300")
    args = parser.parse_args(argv)
    if args.fit:
        fit(args.corpora)
        return 0
    first, last = (int(x) for x in args.songs.split("-"))
    pop = pop909_f1(args.corpora, first, last)
    nott = sorted((args.corpora / "nottingham" / "MIDI").glob("*.mid"))[:: max(1, 1034 // args.other)][: args.other]
    bach = sorted((args.corpora / "bach_chorales").glob("*.mid"))[: args.other]
    nott_f1 = pair_f1(nott, lambda p, s: chiptuner.read_midi(p.parent / "melody" / p.name).notes)
    bach_f1 = pair_f1(bach, lambda p, s: s.notes.take(s.notes.channel == 0))
    print("| corpus | songs | skyline F1 | ours F1 (merged) | ours F1 (tracks as is) |")
    print("|---|---|---|---|---|")
    print(
        f"| POP909 {first:03d}-{last:03d} (held out) | {pop['songs']} | {pop['skyline']:.3f} "
        f"| {pop['merged']:.3f} | {pop['as_is']:.3f} |"
    )
    print(f"| Nottingham (vs melody/) | {nott_f1['songs']} | {nott_f1['skyline']:.3f} | {nott_f1['merged']:.3f} | - |")
    print(f"| Bach chorales (soprano) | {bach_f1['songs']} | {bach_f1['skyline']:.3f} | {bach_f1['merged']:.3f} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
