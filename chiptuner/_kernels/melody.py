"""The melody on the step grid: notes to steps, the line rendered, thinned to what a person plays, buttons.

Every function is pure: it reads arrays and writes into arrays the caller passes in.
"""

import numpy as np
from numba import njit

from chiptuner._kernels.voices import quantize


@njit(cache=True, nogil=True)
def grid_steps(start_tick, end_tick, ticks_per_beat, steps_per_beat, start_step, end_step):
    """Nearest grid step of onsets and releases (halves round up); every note lasts >= 1 step.

    The voice reduction's grid (``voices.quantize``), so the two always agree and a song's
    steps can be computed once for both.

    Parameters
    ----------
    start_tick, end_tick : int64 (N,)
    ticks_per_beat, steps_per_beat : int > 0
    start_step, end_step : int64 (N,), written

    Returns
    -------
    int
        The last release step (``end_step.max()``), 0 without notes; under 0 when every note
        ends before tick 0.
    """
    return quantize(start_tick, end_tick, ticks_per_beat, steps_per_beat, start_step, end_step)


@njit(cache=True, nogil=True)
def render_line(start_step, end_step, pitch, line_pitch, line_onset):
    """Write monophonic notes onto the step grid; a later note overwrites an earlier one.

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by start_step
    pitch : int16 (N,)
    line_pitch : int16 (T,), written (-1 where no note sounds)
    line_onset : bool (T,), written
    """
    n_steps = line_pitch.shape[0]
    for t in range(n_steps):
        line_pitch[t] = -1
        line_onset[t] = False
    for i in range(start_step.shape[0]):
        s = max(start_step[i], 0)
        e = min(end_step[i], n_steps)
        if s >= e:
            continue
        line_onset[s] = True
        for t in range(s, e):
            line_pitch[t] = pitch[i]


@njit(cache=True, nogil=True)
def render_ticks(start_tick, end_tick, pitch, ticks_per_beat, steps_per_beat, line_pitch, line_onset):
    """``grid_steps`` then ``render_line``: monophonic notes in ticks onto the step grid.

    Parameters
    ----------
    start_tick, end_tick : int64 (N,), sorted by start_tick
    pitch : int16 (N,)
    ticks_per_beat, steps_per_beat : int > 0
    line_pitch : int16 (T,), written (-1 where no note sounds)
    line_onset : bool (T,), written
    """
    n = start_tick.shape[0]
    start_step = np.empty(n, np.int64)
    end_step = np.empty(n, np.int64)
    grid_steps(start_tick, end_tick, ticks_per_beat, steps_per_beat, start_step, end_step)
    render_line(start_step, end_step, pitch, line_pitch, line_onset)


@njit(cache=True, nogil=True)
def thin_onsets(pitch, onset, window_step, out_pitch, out_onset):
    """Keep the first onset of each aligned window and hold its pitch (causal).

    Windows are ``[k * window_step, (k + 1) * window_step)``. In each, the first step
    with a note start (an onset flag, or a sounding step after a rest) is kept; its pitch
    is held until the next kept onset, and ends where the input rests. A note whose start
    was dropped after a rest in an already used window sounds from the next window on
    (with an onset there). Output at step t
    depends on input steps <= t only.

    Parameters
    ----------
    pitch : int16 (T,), -1 = rest
    onset : bool (T,)
    window_step : int > 0
    out_pitch : int16 (T,), written
    out_onset : bool (T,), written
    """
    held = np.int16(-1)
    kept_window = np.int64(-1)
    for t in range(pitch.shape[0]):
        p = pitch[t]
        out_onset[t] = False
        if p < 0:
            held = -1
            out_pitch[t] = -1
            continue
        starts = onset[t] or t == 0 or pitch[t - 1] < 0
        window = t // window_step
        if window != kept_window and (starts or held < 0):
            held = p
            kept_window = window
            out_onset[t] = True
        out_pitch[t] = held


@njit(cache=True, nogil=True)
def button_lanes(pitch, onset, recenter_step, lane, lane_onset):
    """Map a melody to five lanes 0-4 by its contour (causal).

    The first note, and the first after a rest of at least ``recenter_step`` steps,
    takes lane 2. Each later note moves from the previous note's lane by the interval
    to the previous note's pitch: 0 semitones -> same lane, 1-4 -> one lane, 5 or more
    -> two lanes, up for up and down for down, clamped to 0..4. Sustained steps keep
    their lane; rests are -1. Lane at step t depends on steps <= t only.

    Parameters
    ----------
    pitch : int16 (T,), -1 = rest
    onset : bool (T,)
    recenter_step : int
    lane : int8 (T,), written
    lane_onset : bool (T,), written
    """
    prev_pitch = np.int64(-1)
    prev_lane = np.int64(2)
    rest_run = np.int64(0)
    cur = np.int64(-1)
    for t in range(pitch.shape[0]):
        p = np.int64(pitch[t])
        if p < 0:
            lane[t] = -1
            lane_onset[t] = False
            rest_run += 1
            cur = -1
            continue
        starts = onset[t] or cur < 0 or p != prev_pitch
        if starts:
            if prev_pitch < 0 or rest_run >= recenter_step:
                cur = 2
            else:
                d = p - prev_pitch
                size = 0 if d == 0 else (1 if abs(d) <= 4 else 2)
                cur = prev_lane + size if d > 0 else prev_lane - size
                cur = min(max(cur, 0), 4)
            prev_lane = cur
            prev_pitch = p
        rest_run = 0
        lane[t] = cur
        lane_onset[t] = starts
