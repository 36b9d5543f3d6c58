"""Melody kernels: skyline, note features, best path, grid line, thinning, button lanes.

Every function is pure: it reads arrays and writes into arrays the caller passes in.
Note arrays here are sorted by ``start_step`` (ties: any order unless stated).
"""

import numpy as np
from numba import njit

#: Columns of ``note_features``' output, in order.
FEATURE_NAMES = (
    "bias",
    "pitch_rel_c4_oct",
    "n_above_sounding",
    "is_top_sounding",
    "n_above_same_onset",
    "n_same_onset",
    "octave_above_same_onset",
    "octave_below_same_onset",
    "log2_duration_step",
    "below_top_oct",
    "n_onsets_during",
    "n_onsets_above_during",
    "pitch_minus_local_top_oct",
    "legato_pred_interval_oct",
    "legato_succ_interval_oct",
    "n_neighbours",
    "polyphony_at_onset",
    "pitch_minus_song_p80_oct",
)
N_FEATURES = len(FEATURE_NAMES)

#: How far (steps) a note looks back and ahead for the notes around it.
_SPAN_STEP = 64


@njit(cache=True, nogil=True)
def skyline(start_step, end_step, pitch, keep):
    """Mark the classic skyline: per onset step the highest note, unless a higher kept note sounds.

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by start_step
    pitch : int16 (N,)
    keep : bool (N,), written: True for the notes of the skyline.
    """
    n = start_step.shape[0]
    cur_end = np.int64(-1)
    cur_pitch = np.int16(-1)
    i = 0
    while i < n:
        s = start_step[i]
        top = i
        k = i + 1
        while k < n and start_step[k] == s:
            if pitch[k] > pitch[top]:
                top = k
            k += 1
        for j in range(i, k):
            keep[j] = False
        if not (s < cur_end and pitch[top] < cur_pitch):
            keep[top] = True
            cur_end = end_step[top]
            cur_pitch = pitch[top]
        i = k


@njit(cache=True, nogil=True)
def note_features(start_step, end_step, pitch, out):
    """Per-note evidence of belonging to the melody (no track, channel or velocity used).

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by start_step; end > start
    pitch : int16 (N,)
    out : float64 (N, N_FEATURES), written; columns as in ``FEATURE_NAMES``.
    """
    n = start_step.shape[0]
    if n == 0:
        return
    n_steps = np.int64(0)
    for i in range(n):
        if end_step[i] > n_steps:
            n_steps = end_step[i]
    top = np.full(n_steps, -1, np.int16)
    for i in range(n):
        for t in range(max(start_step[i], 0), end_step[i]):
            if pitch[i] > top[t]:
                top[t] = pitch[i]
    top_sum = np.zeros(n_steps + 1, np.float64)
    top_count = np.zeros(n_steps + 1, np.float64)
    for t in range(n_steps):
        sounding = top[t] >= 0
        top_sum[t + 1] = top_sum[t] + (top[t] if sounding else 0)
        top_count[t + 1] = top_count[t] + (1.0 if sounding else 0.0)
    sorted_pitch = np.sort(pitch)
    song_p80 = sorted_pitch[(n * 4) // 5]
    j0 = 0
    for i in range(n):
        s = start_step[i]
        e = end_step[i]
        p = pitch[i]
        while start_step[j0] < s - _SPAN_STEP:
            j0 += 1
        above_snd = 0
        above_on = 0
        same_on = 0
        oct_above = 0
        oct_below = 0
        start_during = 0
        above_during = 0
        top_snd = p
        pred = 99
        succ = 99
        near = 0
        poly = 0
        for j in range(j0, n):
            sj = start_step[j]
            if sj > e + 1 or sj >= s + _SPAN_STEP:
                break
            if j == i:
                continue
            pj = pitch[j]
            d = abs(pj - p)
            if sj <= s and end_step[j] > s:
                poly += 1
                if pj > p:
                    above_snd += 1
                if pj > top_snd:
                    top_snd = pj
            if sj == s:
                same_on += 1
                if pj > p:
                    above_on += 1
                if pj == p + 12:
                    oct_above = 1
                if pj == p - 12:
                    oct_below = 1
            elif s < sj < e:
                start_during += 1
                if pj > p:
                    above_during += 1
            if sj < s and abs(end_step[j] - s) <= 1 and d < pred:
                pred = d
            if sj > s and abs(sj - e) <= 1 and d < succ:
                succ = d
            if abs(sj - s) <= 8 and d <= 4:
                near += 1
        lo = max(s - 32, 0)
        hi = min(s + 32, n_steps)
        c = top_count[hi] - top_count[lo]
        local = (top_sum[hi] - top_sum[lo]) / c if c > 0 else p
        out[i, 0] = 1.0
        out[i, 1] = (p - 60) / 12.0
        out[i, 2] = min(above_snd, 4)
        out[i, 3] = 1.0 if above_snd == 0 else 0.0
        out[i, 4] = min(above_on, 4)
        out[i, 5] = min(same_on, 6)
        out[i, 6] = oct_above
        out[i, 7] = oct_below
        out[i, 8] = np.log2(e - s)
        out[i, 9] = (top_snd - p) / 12.0
        out[i, 10] = min(start_during, 8)
        out[i, 11] = min(above_during, 8)
        out[i, 12] = (p - local) / 12.0
        out[i, 13] = min(pred, 12) / 12.0
        out[i, 14] = min(succ, 12) / 12.0
        out[i, 15] = min(near, 10)
        out[i, 16] = min(poly, 8)
        out[i, 17] = (p - song_p80) / 12.0


@njit(cache=True, nogil=True)
def best_path(start_step, pitch, group, score, leap_cost, big_leap_cost, switch_cost, window_step, chosen):
    """Find the monophonic chain of notes with the highest total score (dynamic programming).

    A chain visits notes in strictly increasing ``start_step`` (one note per step at most).
    Its value is the sum of the visited notes' ``score`` minus, per move from note j to
    note i, ``leap_cost * |dp| + big_leap_cost * max(|dp| - 7, 0) + switch_cost * (group
    differs)``. A move spans at most ``window_step`` steps; further back, a chain starts
    afresh (value 0). Ties keep the earliest predecessor.

    Parameters
    ----------
    start_step : int64 (N,), sorted
    pitch : int16 (N,)
    group : int32 (N,)
    score : float64 (N,)
    leap_cost, big_leap_cost, switch_cost : float
    window_step : int
    chosen : bool (N,), written: True for the notes of the best chain.
    """
    n = start_step.shape[0]
    best = np.empty(n, np.float64)
    prev = np.full(n, -1, np.int64)
    j0 = 0
    for i in range(n):
        s = start_step[i]
        while start_step[j0] < s - window_step:
            j0 += 1
        b = 0.0
        bj = -1
        for j in range(j0, i):
            if start_step[j] >= s:
                break
            d = abs(np.int64(pitch[i]) - np.int64(pitch[j]))
            v = best[j] - leap_cost * d - big_leap_cost * max(d - 7, 0)
            if group[j] != group[i]:
                v -= switch_cost
            if v > b:
                b = v
                bj = j
        best[i] = b + score[i]
        prev[i] = bj
    for i in range(n):
        chosen[i] = False
    k = -1
    top = 0.0
    for i in range(n):
        if best[i] > top:
            top = best[i]
            k = i
    while k >= 0:
        chosen[k] = True
        k = prev[k]


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
