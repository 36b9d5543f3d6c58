"""Ticks, seconds and the 16th-note step grid.

The grid comes from ticks per beat (the file's own grid); the tempo map gives seconds.
"""

from __future__ import annotations

import numpy as np

from chiptuner.errors import ParameterError
from chiptuner.types import Notes, TempoMap

__all__ = ["STEPS_PER_BEAT", "ticks_to_seconds", "seconds_to_ticks", "ticks_to_steps", "quantize_notes"]

#: 16th notes: four steps per quarter-note beat.
STEPS_PER_BEAT = 4


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
    if ticks_per_beat <= 0 or steps_per_beat <= 0:
        raise ParameterError(
            f"ticks_per_beat={ticks_per_beat}, steps_per_beat={steps_per_beat}; both must be positive integers"
        )
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
