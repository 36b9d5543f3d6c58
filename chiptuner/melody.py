"""Melody: picked from a song, simplified to what a person plays, mapped to five buttons.

A thin wrapper over ``_kernels.melody``.

How ``melody_notes`` picks the melody (``_kernels.melody.pick_melody``, one kernel call)
-----------------------------------------------------------------------------------------
1. Drums are dropped; the other notes go onto the 16th grid.
2. Track choice: each (track, channel) group is scored by its note count, cut hard for
   notes that start on the same step or under a sounding note of the group. Where the best
   group is monophonic (at most ``_MONO_LIMIT`` of such notes) and there are two groups or
   more, its notes are the melody; in a segment of ``_SEGMENT_STEP`` steps where it is
   silent, the best other monophonic group that plays there stands in. Track names,
   programs and velocities are not used (names are often wrong in real files).
3. Otherwise (one merged track, or only chordal tracks) every pitched note is a candidate.
   When the candidates' skyline (highest onset per step) moves smoothly, at most
   ``_CLEAN_LEAP`` semitones per note on average, the input is a clean top line over an
   accompaniment (folk tune with chords, chorale) and the skyline is the melody.
4. Else each note gets 18 features from the notes alone (``_kernels.melody.FEATURE_NAMES``:
   height in its onset group and among the sounding notes, octave doublings, duration,
   onsets under it, register against the local upper line and the song, intervals to the
   neighbouring onsets), a logistic score (``_NOTE_WEIGHTS``, fitted on POP909 001-300
   with bench/fit_melody.py), and a causal greedy line takes per onset step the best note
   after a leap cost, if its score is positive.
5. Chosen notes that overlap the next chosen note are cut at its onset.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import numpy as np

from chiptuner._kernels import melody as _k
from chiptuner.errors import ParameterError
from chiptuner.timebase import STEPS_PER_BEAT, quantize_notes
from chiptuner.types import Melody, Notes, Score

__all__ = [
    "melody_notes",
    "skyline_notes",
    "extract_melody",
    "melody_from_notes",
    "simplify",
    "to_buttons",
    "MaxOnsets",
    "N_LANES",
]

logger = logging.getLogger(__name__)

MaxOnsets = Literal["beat", "half_beat"]

#: Number of button lanes of ``to_buttons``.
N_LANES = 5

#: Logistic weights over ``_kernels.melody.FEATURE_NAMES`` (the first is the bias),
#: fitted on POP909 001-300 only; see bench/fit_melody.py.
_NOTE_WEIGHTS = np.array(
    [0.3036, 0.4656, 0.3474, -0.387, 0.0452, 0.002, 0.395, -1.0399, 0.5355,
     -0.1954, 0.1904, -0.6518, 0.023, 0.6009, -1.217, -0.9758, -0.2178, -0.0329]
)  # fmt: skip
#: Greedy line: cost per semitone of leap from the last chosen note, and how far back
#: (steps) that note still counts.
_LEAP_COST = 0.0
_WINDOW_STEP = 16
#: Track choice: penalty per unit of chordal fraction, the largest chordal fraction of a
#: melody track, and the segment length (steps, 8 bars of 4/4) of the stand-in rule.
_MONO_PENALTY = 16.0
_MONO_LIMIT = 0.05
_SEGMENT_STEP = 128
#: Mean skyline leap (semitones) up to which a merged input counts as a clean top line.
_CLEAN_LEAP = 4.0
#: A choice keeping under this share of the pitched notes, where the skyline keeps three
#: times as many, is replaced by the skyline (pop songs keep 14-30%).
_FALLBACK_SHARE = 0.08
#: Silence (steps) after which ``to_buttons`` puts the next note back on the middle lane.
_RECENTER_BEATS = 2


def melody_notes(score: Score) -> Notes:
    """Pick the melody line of a song: a monophonic subset of its notes.

    See the module docstring for the method. Works on files with the melody on its own
    track (names not needed) and on files with every part merged into one track and channel.

    Parameters
    ----------
    score : Score

    Returns
    -------
    notes : Notes
        New arrays, sorted by ``start_tick``, at most one note per 16th step, none
        overlapping the next (a note is cut at the next chosen onset). Never a drum note.
        Where the choice keeps under 8% of the pitched notes and ``skyline_notes`` keeps
        three times as many, the skyline is returned instead.
    """
    notes = score.notes
    n = len(notes)
    group = np.empty(n, dtype=np.int32)
    n_groups = _k.group_ids(notes.track, notes.channel, group)
    index = np.empty(n, dtype=np.int64)
    end_tick = np.empty(n, dtype=np.int64)
    k = _k.pick_melody(
        notes.start_tick, notes.end_tick, notes.pitch, notes.is_drum, group, n_groups, score.ticks_per_beat,
        _NOTE_WEIGHTS, _LEAP_COST, _WINDOW_STEP, _MONO_PENALTY, _MONO_LIMIT, _SEGMENT_STEP, _CLEAN_LEAP,
        index, end_tick,
    )  # fmt: skip
    if k < _FALLBACK_SHARE * n:
        # Track choice and note scorer were fitted on pop songs; where they keep almost
        # nothing (3% of the NES corpus), the plain skyline is the better melody.
        n_pitched = int(n - np.count_nonzero(notes.is_drum))
        if k < _FALLBACK_SHARE * n_pitched:
            skyline = skyline_notes(score)
            if len(skyline) > 3 * k:
                return skyline
    index = index[:k]
    return Notes._adopt(  # fresh gathers (fancy indexing copies): no checks needed
        notes.start_tick[index],
        end_tick[:k],
        notes.pitch[index],
        notes.velocity[index],
        notes.channel[index],
        notes.program[index],
        notes.track[index],
        notes.is_drum[index],
    )


def skyline_notes(score: Score) -> Notes:
    """Pick the skyline baseline: per 16th step the highest starting note.

    A note is skipped while a higher chosen note still sounds. Drums are ignored;
    overlaps are cut as in ``melody_notes``.

    Returns
    -------
    notes : Notes
    """
    notes = score.notes
    start_step, end_step = quantize_notes(notes, score.ticks_per_beat, steps_per_beat=STEPS_PER_BEAT)
    order = np.lexsort((-notes.pitch.astype(np.int64), notes.start_tick, start_step))
    order = order[~notes.is_drum[order]]
    keep = np.zeros(len(order), dtype=np.bool_)
    _k.skyline(start_step[order], end_step[order], notes.pitch[order], keep)
    chosen = notes.take(order[keep])
    end_tick = chosen.end_tick.copy()
    if len(end_tick) > 1:
        end_tick[:-1] = np.minimum(end_tick[:-1], chosen.start_tick[1:])
    return Notes(
        chosen.start_tick, end_tick, chosen.pitch, chosen.velocity, chosen.channel, chosen.program,
        chosen.track, chosen.is_drum,
    )  # fmt: skip


def _check_steps_per_beat(steps_per_beat: int) -> None:
    if not isinstance(steps_per_beat, (int, np.integer)) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer such as 4")


def melody_from_notes(
    notes: Notes, ticks_per_beat: int, n_steps: int | None = None, *, steps_per_beat: int = STEPS_PER_BEAT
) -> Melody:
    """Put monophonic melody notes (as from ``melody_notes``) onto the step grid.

    Parameters
    ----------
    notes : Notes
        Sorted by ``start_tick``; a later note overwrites an earlier one where they overlap.
    ticks_per_beat : int
    n_steps : int or None
        Length T of the result; None: the last release step of the notes.
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,).
    """
    _check_steps_per_beat(steps_per_beat)
    if not isinstance(ticks_per_beat, (int, np.integer)) or ticks_per_beat <= 0:
        raise ParameterError(f"ticks_per_beat is {ticks_per_beat!r}; it must be a positive integer such as 480")
    if n_steps is None:
        n_steps = _k.line_steps(notes.start_tick, notes.end_tick, ticks_per_beat, steps_per_beat)
    elif n_steps < 0:
        raise ParameterError(f"n_steps is {n_steps!r}; it must be None or a length >= 0")
    pitch = np.empty(n_steps, dtype=np.int16)
    onset = np.empty(n_steps, dtype=np.bool_)
    _k.render_ticks(notes.start_tick, notes.end_tick, notes.pitch, ticks_per_beat, steps_per_beat, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=int(steps_per_beat))


def extract_melody(score: Score, *, steps_per_beat: int = STEPS_PER_BEAT) -> Melody:
    """Extract the melody of a song onto the step grid: ``melody_from_notes(melody_notes(score))``.

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
    _check_steps_per_beat(steps_per_beat)
    return melody_from_notes(melody_notes(score), score.ticks_per_beat, steps_per_beat=steps_per_beat)


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
    return Melody._adopt(pitch, onset, steps_per_beat=melody.steps_per_beat)


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
