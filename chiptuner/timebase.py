"""Ticks, seconds and the 16th-note step grid.

The grid comes from ticks per beat (the file's own grid); the tempo map gives seconds.
"""

from __future__ import annotations

import numpy as np

from chiptuner.errors import ParameterError
from chiptuner.types import Notes, TempoMap

__all__ = [
    "STEPS_PER_BEAT",
    "MAX_SWING",
    "swung_ticks_to_steps",
    "check_swing",
    "swung_step",
    "swung_ticks",
    "ticks_to_seconds",
    "seconds_to_ticks",
    "ticks_to_steps",
    "quantize_notes",
]

#: 16th notes: four steps per quarter-note beat.
STEPS_PER_BEAT = 4
#: The most swing: an off-beat 16th half a 16th late (1/3 is the triplet feel).
MAX_SWING = 0.5
#: The range in words, for every message that refuses a swing.
SWING_RANGE = "a number from 0 (straight) to 0.5 of a 16th (1/3 is the triplet feel)"


def check_swing(swing: float) -> float:
    """``swing`` as a float, or ``ParameterError`` naming the range."""
    if isinstance(swing, bool) or not isinstance(swing, (int, float, np.floating)):
        raise ParameterError(f"swing is {swing!r}; give {SWING_RANGE}")
    value = float(swing)
    if not 0.0 <= value <= MAX_SWING:  # NaN fails this too
        raise ParameterError(f"swing is {swing!r}; give {SWING_RANGE}")
    return value


def swung_step(step: np.ndarray | int, swing: float) -> np.ndarray | float:
    """Where step ``step`` starts, in steps, with swing: each off-beat 16th (odd step) ``swing`` of a step late.

    The one place swing is defined: the live engine's grid, its recording, the MIDI file of
    ``chiptuner arrange`` and any frame-quantised chip export all take a step's start from
    here (times ``step_sec``, ticks or frames per step). Straight (``swing`` 0) it is
    ``step`` itself. A note that ends on an off-beat ends where the next one starts.

    Parameters
    ----------
    step : int or np.ndarray [dtype=int]
        Steps from a downbeat (any even step is on a beat's 8th grid, so any even origin works).
    swing : float
        0 to ``MAX_SWING`` of a step.

    Returns
    -------
    float or np.ndarray [dtype=float64]
    """
    return step + swing * (np.asarray(step) % 2)


def swung_ticks(step: np.ndarray, ticks_per_beat: int, swing: float, *, steps_per_beat: int = STEPS_PER_BEAT):
    """``swung_step`` in whole ticks.

    The straight tick ``step * ticks_per_beat // steps_per_beat``, and on an off-beat the
    swing rounded to the nearest tick (exact integers, so straight is unchanged).

    Returns
    -------
    np.ndarray [dtype=int64]
    """
    step = np.asarray(step, dtype=np.int64)
    delay = int(round(check_swing(swing) * ticks_per_beat / steps_per_beat))
    return (step * ticks_per_beat) // steps_per_beat + delay * (step % 2)


def _check_grid(ticks_per_beat: int, steps_per_beat: int) -> None:
    if ticks_per_beat <= 0 or steps_per_beat <= 0:
        raise ParameterError(
            f"ticks_per_beat={ticks_per_beat}, steps_per_beat={steps_per_beat}; both must be positive integers"
        )


def swung_ticks_to_steps(
    ticks: np.ndarray, ticks_per_beat: int, swing: float, *, steps_per_beat: int = STEPS_PER_BEAT
) -> np.ndarray:
    """The nearest grid step of each tick of a file written with ``swing`` (``ticks_to_steps`` undone).

    Each pair of steps (an on-beat and its off-beat 16th) is stretched back from its swung
    halves, ``1 + swing`` and ``1 - swing`` of a step, to one step each, then rounded to the
    nearest step (halves up), so a note ``swung_ticks`` put on step ``k`` reads back as
    ``k``, whatever the swing, 0.5 included. Straight (``swing`` 0) it is ``ticks_to_steps``.

    Returns
    -------
    np.ndarray [shape=(N,), dtype=int64]
    """
    swing = check_swing(swing)
    if swing == 0.0:
        return ticks_to_steps(ticks, ticks_per_beat, steps_per_beat=steps_per_beat)
    _check_grid(ticks_per_beat, steps_per_beat)
    position = np.asarray(ticks, dtype=np.float64) * steps_per_beat / ticks_per_beat
    pair = 2.0 * np.floor(position / 2.0)
    into = position - pair
    straight = np.where(
        into < 1.0 + swing, pair + into / (1.0 + swing), pair + 1.0 + (into - 1.0 - swing) / (1.0 - swing)
    )
    # Ticks are whole numbers: a swung tick is off its exact place by up to half a tick.
    return np.floor(straight + 0.5 + 1e-9).astype(np.int64)


def _tempo_segments(tempo: TempoMap, ticks_per_beat: int) -> tuple[np.ndarray, np.ndarray]:
    """Seconds at each tempo change, and seconds per tick from there on."""
    if ticks_per_beat <= 0:
        raise ParameterError(f"ticks_per_beat is {ticks_per_beat}; it must be a positive integer")
    sec_per_tick = tempo.us_per_beat.astype(np.float64) / (1e6 * ticks_per_beat)
    segment_sec = np.concatenate(([0.0], np.cumsum(np.diff(tempo.tick) * sec_per_tick[:-1])))
    return segment_sec, sec_per_tick


def ticks_to_seconds(ticks: np.ndarray, tempo: TempoMap, ticks_per_beat: int) -> np.ndarray:
    """Seconds from the start of the file at each tick.

    Parameters
    ----------
    ticks : np.ndarray [shape=(N,), dtype=int64]
    tempo : TempoMap
    ticks_per_beat : int

    Returns
    -------
    np.ndarray [shape=(N,), dtype=float64]
    """
    ticks = np.asarray(ticks, dtype=np.int64)
    segment_sec, sec_per_tick = _tempo_segments(tempo, ticks_per_beat)
    index = np.searchsorted(tempo.tick, ticks, side="right") - 1
    index = np.maximum(index, 0)
    return segment_sec[index] + (ticks - tempo.tick[index]) * sec_per_tick[index]


def seconds_to_ticks(seconds: np.ndarray, tempo: TempoMap, ticks_per_beat: int) -> np.ndarray:
    """The tick (rounded to the nearest) at each time in seconds; the inverse of ``ticks_to_seconds``.

    Returns
    -------
    np.ndarray [shape=(N,), dtype=int64]
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    segment_sec, sec_per_tick = _tempo_segments(tempo, ticks_per_beat)
    index = np.maximum(np.searchsorted(segment_sec, seconds, side="right") - 1, 0)
    return tempo.tick[index] + np.rint((seconds - segment_sec[index]) / sec_per_tick[index]).astype(np.int64)


def ticks_to_steps(ticks: np.ndarray, ticks_per_beat: int, *, steps_per_beat: int = STEPS_PER_BEAT) -> np.ndarray:
    """The nearest grid step of each tick (halves round up).

    Returns
    -------
    np.ndarray [shape=(N,), dtype=int64]
    """
    _check_grid(ticks_per_beat, steps_per_beat)
    ticks = np.asarray(ticks, dtype=np.int64)
    return (2 * ticks * steps_per_beat + ticks_per_beat) // (2 * ticks_per_beat)


def quantize_notes(
    notes: Notes, ticks_per_beat: int, *, steps_per_beat: int = STEPS_PER_BEAT
) -> tuple[np.ndarray, np.ndarray]:
    """Onset and release steps of every note; every note lasts at least one step.

    Returns
    -------
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
        ``end_step > start_step`` (exclusive end).
    """
    start_step = ticks_to_steps(notes.start_tick, ticks_per_beat, steps_per_beat=steps_per_beat)
    end_step = ticks_to_steps(notes.end_tick, ticks_per_beat, steps_per_beat=steps_per_beat)
    return start_step, np.maximum(end_step, start_step + 1)
