"""Melody: picked from a song, simplified to what a person plays, mapped to five buttons.

A thin wrapper over ``_kernels.melody``.

How ``melody_notes`` picks the melody
-------------------------------------
1. Drums are dropped; the other notes go onto the 16th grid (``timebase.quantize_notes``).
2. Each note gets 18 features computed from the notes alone (``_kernels.melody.FEATURE_NAMES``:
   height among the notes sounding at its onset, chord membership, octave doublings,
   duration, notes starting under it, legato links to neighbours, register against the
   local upper line and the song). No track, channel, program or velocity enters them,
   so a song with every track merged into one is handled the same way.
3. A logistic model (``_NOTE_WEIGHTS``, fitted on POP909 songs 001-300 only) turns the
   features into a log-odds score per note; ``_SCORE_BIAS`` shifts it.
4. Where tracks are known, each (track, channel) group gets a prior added to its notes:
   a name hint ("melody", "lead", "vocal", ...) and a penalty for chordal groups,
   relative to the best group, so one merged group gets no prior at all.
5. A dynamic-programming path (``_kernels.melody.best_path``) picks the monophonic chain
   of notes with the best total score, paying for leaps and for switching group.
6. Chosen notes that overlap the next chosen note are cut at its onset.
"""

from __future__ import annotations

import logging
import re
from typing import Literal, get_args

import numpy as np

from chiptuner._kernels import melody as _k
from chiptuner.errors import ParameterError
from chiptuner.timebase import STEPS_PER_BEAT, quantize_notes
from chiptuner.types import Melody, Notes, Score

__all__ = ["melody_notes", "skyline_notes", "extract_melody", "simplify", "to_buttons", "MaxOnsets", "N_LANES"]

logger = logging.getLogger(__name__)

MaxOnsets = Literal["beat", "half_beat"]

#: Number of button lanes of ``to_buttons``.
N_LANES = 5

#: Logistic weights over ``_kernels.melody.FEATURE_NAMES``, fitted on POP909 001-300
#: (every track merged; label = note of the MELODY track); see bench/measure_melody.py --fit.
_NOTE_WEIGHTS = np.array(
    [-0.4118, 0.4143, -0.1097, 0.4655, -0.6767, 0.028, 0.4708, -0.0148, 0.2124,
     -0.7504, -0.0418, -0.1322, 0.6154, -1.3097, -1.2417, 0.0651, -0.0706, -0.1753]
)
#: Added to every note's log-odds before the path search (tuned on POP909 001-300).
_SCORE_BIAS = 1.5
#: Path costs per semitone of leap, per semitone beyond a fifth, and per change of group.
_LEAP_COST = 0.05
_BIG_LEAP_COST = 0.2
_SWITCH_COST = 1.0
#: How far back (steps) the path looks for the previous melody note.
_WINDOW_STEP = 32
#: Group prior: bonus for a name hint, penalty per unit of chordal fraction.
_NAME_BONUS = 1.5
_CHORD_PENALTY = 2.0
_NAME_HINT = re.compile(r"melod|lead|vocal|voice|voix|sing|solo|soprano|tune|main", re.IGNORECASE)
#: Silence (steps) after which ``to_buttons`` puts the next note back on the middle lane.
_RECENTER_BEATS = 2


def _grid(notes: Notes, ticks_per_beat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Non-drum notes sorted by (start step, pitch descending): order, start, end, pitch."""
    start_step, end_step = quantize_notes(notes, ticks_per_beat, steps_per_beat=STEPS_PER_BEAT)
    order = np.lexsort((-notes.pitch.astype(np.int64), notes.start_tick, start_step))
    order = order[~notes.is_drum[order]]
    return order, start_step[order], end_step[order], notes.pitch[order].astype(np.int16)


def _group_prior(
    score: Score, order: np.ndarray, start_step: np.ndarray, end_step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Group id per note and the prior added to its score (0 for the best group)."""
    notes = score.notes
    key = notes.track[order].astype(np.int64) * 16 + notes.channel[order].astype(np.int64)
    uniq, group = np.unique(key, return_inverse=True)
    raw = np.zeros(len(uniq))
    for g, k in enumerate(uniq):
        members = np.flatnonzero(group == g)
        track = int(k // 16)
        name = score.track_names[track] if track < len(score.track_names) else ""
        s, e = start_step[members], end_step[members]
        chordal = float(np.mean(s[1:] < e[:-1] - 1)) if len(members) > 1 else 0.0
        raw[g] = _NAME_BONUS * bool(_NAME_HINT.search(name)) - _CHORD_PENALTY * chordal
    prior = raw - raw.max() if len(raw) else raw
    return group.astype(np.int32), prior[group]


def _note_scores(start_step: np.ndarray, end_step: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    features = np.zeros((len(pitch), _k.N_FEATURES))
    _k.note_features(start_step, end_step, pitch, features)
    return features @ _NOTE_WEIGHTS + _SCORE_BIAS


def _cut_overlaps(notes: Notes, index: np.ndarray) -> Notes:
    """Take the notes at ``index`` (sorted by onset), each ended no later than the next onset."""
    chosen = notes.take(index)
    end_tick = chosen.end_tick.copy()
    if len(end_tick) > 1:
        end_tick[:-1] = np.minimum(end_tick[:-1], chosen.start_tick[1:])
    return Notes(
        chosen.start_tick,
        end_tick,
        chosen.pitch,
        chosen.velocity,
        chosen.channel,
        chosen.program,
        chosen.track,
        chosen.is_drum,
    )


def melody_notes(score: Score) -> Notes:
    """Pick the melody line of a song: a monophonic subset of its notes.

    See the module docstring for the method. Works on files with the melody on its own
    track and on files with every part merged into one track and channel.

    Parameters
    ----------
    score : Score

    Returns
    -------
    notes : Notes
        New arrays, sorted by ``start_tick``, at most one note per 16th step, none
        overlapping the next (a note is cut at the next chosen onset). Never a drum note.
    """
    order, start_step, end_step, pitch = _grid(score.notes, score.ticks_per_beat)
    if len(order) == 0:
        return Notes.empty()
    group, prior = _group_prior(score, order, start_step, end_step)
    note_score = _note_scores(start_step, end_step, pitch) + prior
    chosen = np.zeros(len(order), dtype=np.bool_)
    _k.best_path(start_step, pitch, group, note_score, _LEAP_COST, _BIG_LEAP_COST, _SWITCH_COST, _WINDOW_STEP, chosen)
    logger.debug("melody: %d of %d pitched notes chosen", int(chosen.sum()), len(order))
    return _cut_overlaps(score.notes, order[chosen])


def skyline_notes(score: Score) -> Notes:
    """Pick the skyline baseline: per 16th step the highest starting note.

    A note is skipped while a higher chosen note still sounds. Drums are ignored;
    overlaps are cut as in ``melody_notes``.

    Returns
    -------
    notes : Notes
    """
    order, start_step, end_step, pitch = _grid(score.notes, score.ticks_per_beat)
    keep = np.zeros(len(order), dtype=np.bool_)
    _k.skyline(start_step, end_step, pitch, keep)
    return _cut_overlaps(score.notes, order[keep])


def extract_melody(score: Score, *, steps_per_beat: int = STEPS_PER_BEAT) -> Melody:
    """Extract the melody of a song onto the step grid.

    Parameters
    ----------
    score : Score
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,); T is the last
        release step of the melody notes (0 for a song without pitched notes).
    """
    if not isinstance(steps_per_beat, (int, np.integer)) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer such as 4")
    notes = melody_notes(score)
    start_step, end_step = quantize_notes(notes, score.ticks_per_beat, steps_per_beat=int(steps_per_beat))
    n_steps = int(end_step.max()) if len(end_step) else 0
    pitch = np.empty(n_steps, dtype=np.int16)
    onset = np.empty(n_steps, dtype=np.bool_)
    _k.render_line(start_step, end_step, notes.pitch.astype(np.int16), pitch, onset)
    return Melody(pitch, onset, int(steps_per_beat))


def _window_step(melody: Melody, max_onsets: str) -> int:
    if max_onsets not in get_args(MaxOnsets):
        raise ParameterError(f"max_onsets is {max_onsets!r}; use one of {get_args(MaxOnsets)}")
    spb = melody.steps_per_beat
    if max_onsets == "beat":
        return spb
    if spb % 2:
        raise ParameterError(f"max_onsets={max_onsets!r} needs an even steps_per_beat; this melody has {spb}")
    return spb // 2


def simplify(melody: Melody, *, max_onsets: MaxOnsets = "beat") -> Melody:
    """Thin a melody to what a person would play: at most one onset per beat (or half beat).

    The input is already monophonic (one pitch per step). The grid is cut into aligned
    windows of one beat (``"beat"``) or half a beat (``"half_beat"``). In each window the
    first note start is kept, so a note on the beat always wins; later starts in the
    window are dropped and the kept pitch is held through them until the next kept onset,
    or until the input rests. A note that starts after a rest in an already used window
    is picked up at the next window (with an onset there).

    Causal: the output at step t depends on input steps <= t only (the rule never waits
    for a longer or higher note later in the window), so the same rule runs live.

    Parameters
    ----------
    melody : Melody
    max_onsets : {"beat", "half_beat"}

    Returns
    -------
    Melody
        Same length and ``steps_per_beat``; every pitch comes from the input, rests stay
        rests, at most one onset per window.
    """
    window = _window_step(melody, max_onsets)
    pitch = np.empty(len(melody), dtype=np.int16)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.thin_onsets(melody.pitch, melody.onset, window, pitch, onset)
    return Melody(pitch, onset, melody.steps_per_beat)


def to_buttons(melody: Melody) -> tuple[np.ndarray, np.ndarray]:
    """Map a melody's contour to five button lanes, causally.

    Rule: the first note, and the first note after a rest of at least two beats, takes the
    middle lane 2. Every other note moves from the previous note's lane by its interval to
    the previous note: a repeated pitch keeps the lane, 1-4 semitones move one lane, 5 or
    more move two, up for up and down for down, clamped to 0..4 (at the edge a further
    step the same way stays on the edge lane). Held steps keep their lane; rests are -1.
    The lane at step t depends on steps <= t only.

    Worked example (one step per note): C4 D4 E4 E4 G4 C4 = pitches 60 62 64 64 67 60 ->
    lanes 2 3 4 4 4 2 (up 2: +1; up 2: +1; repeat: same; up 3 at the top edge: stays 4;
    down 7: -2).

    Parameters
    ----------
    melody : Melody

    Returns
    -------
    lane : np.ndarray [shape=(T,), dtype=int8]
        0..4, -1 at rests.
    onset : np.ndarray [shape=(T,), dtype=bool]
        True where a note starts (never at a rest).
    """
    lane = np.empty(len(melody), dtype=np.int8)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.button_lanes(melody.pitch, melody.onset, _RECENTER_BEATS * melody.steps_per_beat, lane, onset)
    return lane, onset
