"""Fit the note scorer of ``chiptuner.melody`` on POP909 songs 001-300 (never the held-out ones).

    python bench/fit_melody.py [--corpora DIR] [--every 1]

Features come from ``_kernels.melody.note_features`` on every pitched note of the song
merged into one track, in both evaluation settings: MELODY+PIANO and MELODY+BRIDGE+PIANO.
A note is labelled melody when the MELODY track has a note of that pitch on that step.
A logistic regression (scikit-learn, offline only) gives ``_NOTE_WEIGHTS``; the leap cost
and the clean-line gate are then chosen on every third training song. Prints the values to
paste into ``chiptuner/melody.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure_melody as mm  # noqa: E402

from chiptuner import melody as mel  # noqa: E402
from chiptuner._kernels import melody as _k  # noqa: E402


def song_features(score, truth) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every pitched note, in the kernel's candidate order."""
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
    x = np.zeros((len(order), _k.N_FEATURES))
    _k.note_features(st, en, pitch, x)
    return x, np.isin(st * 128 + pitch, t_st * 128 + truth.pitch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=mm.DEFAULT_CORPORA)
    parser.add_argument("--every", type=int, default=1, help="use every k-th training song")
    parser.add_argument("--settings", default="melody_piano,all", help="merged settings to fit on")
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 (offline only)

    songs = [s for _, s in mm.pop909_songs(args.corpora, 1, 300)][:: args.every]
    xs, ys = [], []
    for score in songs:
        melody = mm.melody_track(score)
        for merged in (mm.merged_setting(score, setting) for setting in args.settings.split(",")):
            x, y = song_features(merged, melody)
            xs.append(x)
            ys.append(y)
    model = LogisticRegression(C=1.0, max_iter=5000, fit_intercept=False).fit(np.concatenate(xs), np.concatenate(ys))
    weights = model.coef_[0]
    print("_NOTE_WEIGHTS = np.array(", np.round(weights, 4).tolist(), ")")
    mel._NOTE_WEIGHTS = weights
    check = songs[::3]
    for leap in (0.0, 0.03, 0.06, 0.1, 0.15):
        mel._LEAP_COST = leap
        f1 = {
            setting: np.mean([mm.setting_f1(s, setting, mel.melody_notes) for s in check])
            for setting in ("melody_piano", "all")
        }
        print(f"leap cost {leap}: F1 {f1} (every third training song)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
