"""The melody corpora as the melody fits and their measurements read them: songs, settings, ground truth, F1.

POP909 songs are compared with their MELODY track, in three settings, always without
track names, channels or programs (``SETTINGS``): MELODY+PIANO merged into one track,
all three merged, and the three tracks kept apart. A chosen note matches a true one when
it has the same pitch and an onset within one 16th (one-to-one, ``note_f1``); a note is
labelled melody when the true melody has a note of its pitch on its 16th step
(``melody_labels``).

Used by ``chiptuner.train.melody_notes``, ``chiptuner.train.melody_line`` and
tools/measure_melody.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from chiptuner._kernels import melody as _grid
from chiptuner.midi_io import read_midi
from chiptuner.timebase import STEPS_PER_BEAT
from chiptuner.types import Notes, Score

#: The corpora beside a checkout, seen from its root (where ``python -m chiptuner.train...`` runs).
DEFAULT_CORPORA = Path("..") / "shared" / "corpora"

#: POP909 evaluation settings: (a) MELODY+PIANO merged (the skyline anchor of docs/targets.md),
#: (b) all three tracks merged, (c) three tracks apart without names.
SETTINGS = ("melody_piano", "all", "tracks")


def merge_tracks(score: Score) -> Score:
    """The same notes with track identity removed: track 0, channel 0, program 0, no names.

    The notes stay in the file's order (one track's after another's at each onset); the
    melody kernel reads each onset's notes from the highest pitch down, so that order
    tells it nothing (tests/test_melody.py holds it to that).
    """
    n = score.notes
    zero = np.zeros(len(n), dtype=np.int64)
    notes = Notes(n.start_tick, n.end_tick, n.pitch, n.velocity, zero, zero, zero, n.is_drum)
    return Score(notes, score.tempo, score.time_signatures, score.ticks_per_beat)


def strip_names(score: Score) -> Score:
    """Tracks kept apart, but names, channels and programs removed (channel 0, program 0)."""
    n = score.notes
    zero = np.zeros(len(n), dtype=np.int64)
    notes = Notes(n.start_tick, n.end_tick, n.pitch, n.velocity, zero, zero, n.track, n.is_drum)
    return Score(notes, score.tempo, score.time_signatures, score.ticks_per_beat)


def merged_setting(score: Score, setting: str) -> Score:
    """A POP909 song in one evaluation setting, always without names, channels or programs."""
    if setting == "tracks":
        return strip_names(score)
    if setting == "melody_piano":
        bridge = score.track_names.index("BRIDGE")
        kept = score.notes.take(score.notes.track != bridge)
        score = Score(kept, score.tempo, score.time_signatures, score.ticks_per_beat, score.track_names)
    return merge_tracks(score)


def pop909_songs(corpora: Path, first: int, last: int) -> Iterator[tuple[int, Score]]:
    """(number, song) of the POP909 songs ``first``-``last`` that have a MELODY track."""
    for i in range(first, last + 1):
        path = corpora / "pop909" / "POP909" / f"{i:03d}" / f"{i:03d}.mid"
        if path.is_file():
            score = read_midi(path)
            if "MELODY" in score.track_names:
                yield i, score


def melody_track(score: Score) -> Notes:
    """The notes of a POP909 song's MELODY track: its true melody."""
    return score.notes.take(score.notes.track == score.track_names.index("MELODY"))


def melody_labels(score: Score, truth: Notes, start_step: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Which notes (their 16th steps and pitches) the true melody plays: bool (N,).

    ``truth`` is put on the same 16th grid as the notes (``_kernels.melody.grid_steps``).
    """
    truth_start = np.empty(len(truth), np.int64)
    truth_end = np.empty(len(truth), np.int64)
    _grid.grid_steps(truth.start_tick, truth.end_tick, score.ticks_per_beat, STEPS_PER_BEAT, truth_start, truth_end)
    return np.isin(start_step * 128 + pitch, truth_start * 128 + truth.pitch)


def note_f1(truth: Notes, chosen: Notes, tolerance_tick: int) -> tuple[float, float, float]:
    """(F1, precision, recall): same pitch, onsets within ``tolerance_tick``, one-to-one."""
    tp = 0
    for p in np.unique(truth.pitch):
        a = np.sort(truth.start_tick[truth.pitch == p])
        b = np.sort(chosen.start_tick[chosen.pitch == p])
        i = j = 0
        while i < len(a) and j < len(b):
            if abs(int(a[i]) - int(b[j])) <= tolerance_tick:
                tp, i, j = tp + 1, i + 1, j + 1
            elif a[i] < b[j]:
                i += 1
            else:
                j += 1
    precision = tp / max(len(chosen), 1)
    recall = tp / max(len(truth), 1)
    return 2 * precision * recall / max(precision + recall, 1e-12), precision, recall


def setting_scores(score: Score, setting: str, picker: Callable[[Score], Notes]) -> tuple[float, float, float]:
    """(F1, precision, recall) of ``picker`` on ``score`` in ``setting`` against the MELODY track."""
    return note_f1(melody_track(score), picker(merged_setting(score, setting)), score.ticks_per_beat // 4)


def setting_f1(score: Score, setting: str, picker: Callable[[Score], Notes]) -> float:
    """F1 of ``picker`` on ``score`` in ``setting`` against the MELODY track."""
    return setting_scores(score, setting, picker)[0]
