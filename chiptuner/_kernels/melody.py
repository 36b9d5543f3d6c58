"""Melody kernels: grid, track choice, skyline, note, context and segment features, line, thinning, buttons.

Every function is pure: it reads arrays and writes into arrays the caller passes in.
Note arrays here are sorted by ``start_step`` (ties: any order unless stated).
"""

import numpy as np
from numba import njit

from chiptuner._kernels.activation import sigmoid, tanh
from chiptuner._kernels.voices import quantize


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


#: Columns of ``note_features``' output, in order (the first 18 use no velocity).
FEATURE_NAMES = (
    "bias",
    "pitch_rel_c4_oct",
    "is_top_of_onset",
    "n_above_same_onset",
    "n_same_onset",
    "octave_below_same_onset",
    "octave_above_same_onset",
    "top_sounding_minus_pitch_oct",
    "is_top_sounding",
    "log2_duration_step",
    "n_onsets_during",
    "higher_onset_during",
    "pitch_minus_local_top_oct",
    "pitch_minus_song_p80_oct",
    "succ_interval_oct",
    "pred_interval_oct",
    "onset_density_16_step",
    "n_onset_steps_during",
    "velocity_minus_song_median",
    "velocity_minus_onset_max",
    "is_loudest_of_onset",
    "velocity_minus_local_mean",
    "n_below_same_onset",
    "on_beat",
    "on_eighth",
    "pitch_minus_song_median_oct",
    "pred_velocity_step",
    "succ_velocity_step",
    "song_p80_minus_median_oct",
    "onset_max_velocity_minus_song_median",
    "abs_pitch_minus_local_top_oct",
)
N_FEATURES = len(FEATURE_NAMES)

#: Columns of ``context_features``' output, in order: evidence from the first-pass melody
#: probability ``q`` of the other notes (weights ``q**2``; "line" = the likeliest note per onset step).
CONTEXT_NAMES = (
    "q",
    "q_minus_best_other_of_onset",
    "pitch_minus_near_line_oct",
    "abs_pitch_minus_near_line_oct",
    "velocity_minus_near_line",
    "near_line_weight",
    "interval_to_previous_line_oct",
    "previous_line_q",
    "interval_to_next_line_oct",
    "next_line_q",
    "q_of_line_note_sounding",
    "pitch_minus_line_note_sounding_oct",
    "pitch_minus_song_line_z",
    "velocity_minus_song_line_z",
    "abs_velocity_minus_song_line_z",
    "wide_line_pitch_minus_song_z",
    "wide_line_velocity_minus_song_z",
    "wide_line_weight",
    "song_line_velocity_spread",
    "song_line_pitch_spread",
    "near_line_velocity_std",
    "wide_line_velocity_std",
)
N_CONTEXT = len(CONTEXT_NAMES)

#: Half-width (steps) of the window of the local upper line.
_LOCAL_STEP = 32
#: Longest duration (steps) that features look inside a note.
_MAX_DURATION_STEP = 64
#: How far (steps) a note's sound is followed for the upper line and later onsets.
_FILL_STEP = 16
#: Fewest candidate notes for the note scorer; fewer are too little context: skyline.
_MIN_SCORED_NOTES = 32
#: Longest grid (steps) on which the note-level scorer runs; beyond it, skyline.
_MAX_GRID_STEP = 1 << 22


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
    """
    quantize(start_tick, end_tick, ticks_per_beat, steps_per_beat, start_step, end_step)


@njit(cache=True, nogil=True)
def onset_order(start_tick, order):
    """A stable sort of the notes by onset, fast for a few sorted runs (one per track).

    Parameters
    ----------
    start_tick : int64 (N,)
    order : int64 (N,), written: indices by ascending ``start_tick``, ties in index order.
    """
    n = start_tick.shape[0]
    n_runs = 1
    for i in range(1, n):
        if start_tick[i] < start_tick[i - 1]:
            n_runs += 1
    if n == 0:
        return
    if n_runs > 32:
        order[:] = np.argsort(start_tick, kind="mergesort")
        return
    head = np.empty(n_runs, np.int64)
    stop = np.empty(n_runs, np.int64)
    r = 0
    head[0] = 0
    for i in range(1, n):
        if start_tick[i] < start_tick[i - 1]:
            stop[r] = i
            r += 1
            head[r] = i
    stop[r] = n
    for k in range(n):
        best = -1
        for r in range(n_runs):
            if head[r] < stop[r] and (best < 0 or start_tick[head[r]] < start_tick[head[best]]):
                best = r
        order[k] = head[best]
        head[best] += 1


@njit(cache=True, nogil=True)
def pitch_onset_order(start_tick, end_step, pitch, velocity, order):
    """The notes by onset, and within one onset from the highest pitch down.

    Equal pitches go loudest first, then longest. Nothing of the file's own event order
    survives: a merged file still lists one instrument's notes before another's at each
    onset, and a network reading the notes in sequence would learn that order instead of
    the music.

    Parameters
    ----------
    start_tick, end_step : int64 (N,)
    pitch : int16 (N,)
    velocity : int16 or uint8 (N,)
    order : int64 (N,), written: indices by ascending ``start_tick``, then the ties as above.
    """
    n = start_tick.shape[0]
    onset_order(start_tick, order)
    g0 = 0
    while g0 < n:
        g1 = g0 + 1
        while g1 < n and start_tick[order[g1]] == start_tick[order[g0]]:
            g1 += 1
        for i in range(g0 + 1, g1):  # insertion sort: onsets hold a few notes
            j = order[i]
            k = i
            while k > g0 and not _plays_before(order[k - 1], j, end_step, pitch, velocity):
                order[k] = order[k - 1]
                k -= 1
            order[k] = j
        g0 = g1


@njit(cache=True, nogil=True, inline="always")
def _plays_before(a, b, end_step, pitch, velocity):
    """Whether note ``a`` keeps its place before ``b`` in ``pitch_onset_order``."""
    if pitch[a] != pitch[b]:
        return pitch[a] > pitch[b]
    if velocity[a] != velocity[b]:
        return velocity[a] > velocity[b]
    return end_step[a] >= end_step[b]


@njit(cache=True, nogil=True)
def choose_tracks(start_step, end_step, pitch, group, n_groups, mono_penalty, mono_limit, segment_step, segment_group):
    """Choose the melody group (track and channel) of a multi-group song, per segment.

    Each group is scored ``n_notes * max(1 - mono_penalty * f, 0) * 2 ** ((mean_pitch - 60) / 12)``
    (a higher line is likelier the tune), ``f`` the fraction of
    its notes that start while its previous note sounds (by more than one step) or on the
    same step. The best group is the melody if its ``f <= mono_limit`` and there are two
    groups or more. A segment (``segment_step`` steps) where that group has no note
    takes the best-scored other group with a note there and ``f <= mono_limit``, if any.

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by start_step
    pitch : int16 (N,)
    group : int32 (N,), 0 .. n_groups-1
    n_groups : int
    mono_penalty, mono_limit : float
    segment_step : int > 0
    segment_group : int32 (S,), written: the group per segment, -1 where none qualifies
        (S = last start step // segment_step + 1, or 0 without notes).

    Returns
    -------
    int
        The main group, or -1 (one group only, or none monophonic enough): then every
        segment is -1.
    """
    n = start_step.shape[0]
    n_seg = segment_group.shape[0]
    for k in range(n_seg):
        segment_group[k] = -1
    if n == 0 or n_groups < 2:
        return -1
    count = np.zeros(n_groups, np.int64)
    poly = np.zeros(n_groups, np.int64)
    pitch_sum = np.zeros(n_groups, np.float64)
    last_start = np.full(n_groups, np.int64(-1))
    last_end = np.full(n_groups, np.int64(-1))
    for i in range(n):
        g = group[i]
        s = start_step[i]
        if count[g] > 0 and (s == last_start[g] or s < last_end[g] - 1):
            poly[g] += 1
        count[g] += 1
        pitch_sum[g] += pitch[i]
        last_start[g] = s
        if end_step[i] > last_end[g] or s >= last_end[g]:
            last_end[g] = end_step[i]
    value = np.zeros(n_groups, np.float64)
    best = -1
    for g in range(n_groups):
        f = poly[g] / max(count[g] - 1, 1)
        height = 2.0 ** ((pitch_sum[g] / max(count[g], 1) - 60.0) / 12.0)
        value[g] = count[g] * max(1.0 - mono_penalty * f, 0.0) * height if f <= mono_limit else -1.0
        if value[g] > 0 and (best < 0 or value[g] > value[best]):
            best = g
    if best < 0:
        return -1
    seg_count = np.zeros((n_seg, n_groups), np.int64)
    for i in range(n):
        seg_count[start_step[i] // segment_step, group[i]] += 1
    for k in range(n_seg):
        if seg_count[k, best] > 0:
            segment_group[k] = best
            continue
        pick = -1
        for g in range(n_groups):
            if seg_count[k, g] > 0 and value[g] > 0 and (pick < 0 or value[g] > value[pick]):
                pick = g
        segment_group[k] = pick if pick >= 0 else best
    return best


@njit(cache=True, nogil=True)
def _median_bin(hist, n):
    """The smallest value whose cumulative count exceeds ``n``."""
    acc = 0
    for q in range(hist.shape[0]):
        acc += hist[q]
        if acc > n:
            return q
    return 0


@njit(cache=True, nogil=True)
def note_features(start_step, end_step, pitch, velocity, out):
    """Per-note evidence of belonging to the melody, O(1) work per note (no track used).

    Notes starting on one step form an onset group; groups are contiguous runs of the
    sorted ``start_step``, in any order within the run. Velocity enters only columns 18
    on (POP909's melody is often played louder and more evenly than the rest).

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by start_step, >= 0; end > start
    pitch : int16 (N,)
    velocity : int16 or uint8 (N,)
    out : float64 (N, N_FEATURES), written; columns as in ``FEATURE_NAMES``.
    """
    n = start_step.shape[0]
    if n == 0:
        return
    n_steps = start_step[n - 1] + _MAX_DURATION_STEP + 2
    top = np.full(n_steps, np.int16(-1))
    on_top = np.full(n_steps, np.int16(-1))
    on_first = np.full(n_steps, np.int64(-1))
    cum_on = np.zeros(n_steps + 1, np.int64)
    cum_step = np.zeros(n_steps + 1, np.int64)
    cum_vel = np.zeros(n_steps + 1, np.float64)
    hist = np.zeros(128, np.int64)
    vel_hist = np.zeros(128, np.int64)
    for i in range(n):
        s = start_step[i]
        p = pitch[i]
        e = min(end_step[i], s + _FILL_STEP)
        for t in range(s, e):
            if p > top[t]:
                top[t] = p
        if p > on_top[s]:
            on_top[s] = p
        if on_first[s] < 0:
            on_first[s] = i
        cum_on[s + 1] += 1
        cum_vel[s + 1] += np.int64(velocity[i])
        hist[min(max(p, 0), 127)] += 1
        vel_hist[min(max(np.int64(velocity[i]), 0), 127)] += 1
    top_sum = np.zeros(n_steps + 1, np.float64)
    top_cnt = np.zeros(n_steps + 1, np.float64)
    for t in range(n_steps):
        cum_step[t + 1] = cum_step[t] + (1 if cum_on[t + 1] > 0 else 0)
        cum_on[t + 1] += cum_on[t]
        cum_vel[t + 1] += cum_vel[t]
        ok = top[t] >= 0
        top_sum[t + 1] = top_sum[t] + (top[t] if ok else 0.0)
        top_cnt[t + 1] = top_cnt[t] + (1.0 if ok else 0.0)
    log2_table = np.log2(np.arange(1, _MAX_DURATION_STEP + 1).astype(np.float64))
    song_p80 = _median_bin(hist, (n * 4) // 5)
    song_median = _median_bin(hist, n // 2)
    vel_median = _median_bin(vel_hist, n // 2)
    g0 = 0
    prev_g0 = -1
    while g0 < n:
        s = start_step[g0]
        g1 = g0 + 1
        v_max = np.int64(velocity[g0])
        while g1 < n and start_step[g1] == s:
            v_max = max(v_max, np.int64(velocity[g1]))
            g1 += 1
        lo = max(s - _LOCAL_STEP, 0)
        hi = min(s + _LOCAL_STEP, n_steps)
        c = top_cnt[hi] - top_cnt[lo]
        density = (cum_on[min(s + 8, n_steps)] - cum_on[max(s - 8, 0)]) / 16.0
        v_lo = max(s - 8, 0)
        v_hi = min(s + 9, n_steps)
        v_cnt = cum_on[v_hi] - cum_on[v_lo]
        v_local = (cum_vel[v_hi] - cum_vel[v_lo]) / v_cnt  # >= 1: the note itself
        for i in range(g0, g1):
            p = np.int64(pitch[i])
            v = np.int64(velocity[i])
            e = end_step[i]
            above = 0
            below = 0
            oct_below = 0.0
            oct_above = 0.0
            for j in range(g0, g1):
                pj = pitch[j]
                if pj > p:
                    above += 1
                if pj < p:
                    below += 1
                if pj == p - 12:
                    oct_below = 1.0
                if pj == p + 12:
                    oct_above = 1.0
            ec = min(e, s + _MAX_DURATION_STEP)
            higher = 0.0
            for t in range(s + 1, min(e, s + _FILL_STEP)):
                if on_top[t] > p:
                    higher = 1.0
                    break
            succ = 12
            succ_vel = 32
            if e < n_steps and on_first[e] >= 0:
                j = on_first[e]
                while j < n and start_step[j] == e:
                    d = abs(np.int64(pitch[j]) - p)
                    if d < succ:
                        succ = d
                        succ_vel = min(abs(np.int64(velocity[j]) - v), 32)
                    j += 1
            pred = 12
            pred_vel = 32
            if prev_g0 >= 0:
                j = prev_g0
                while j < g0:
                    d = abs(np.int64(pitch[j]) - p)
                    if d < pred:
                        pred = d
                        pred_vel = min(abs(np.int64(velocity[j]) - v), 32)
                    j += 1
            local = (top_sum[hi] - top_sum[lo]) / c if c > 0 else p
            out[i, 0] = 1.0
            out[i, 1] = (p - 60) / 12.0
            out[i, 2] = 1.0 if p == on_top[s] else 0.0
            out[i, 3] = min(above, 4)
            out[i, 4] = min(g1 - g0 - 1, 6)
            out[i, 5] = oct_below
            out[i, 6] = oct_above
            out[i, 7] = (top[s] - p) / 12.0
            out[i, 8] = 1.0 if top[s] == p else 0.0
            out[i, 9] = log2_table[ec - s - 1]
            out[i, 10] = min(cum_on[ec] - cum_on[s + 1], 8)
            out[i, 11] = higher
            out[i, 12] = (p - local) / 12.0
            out[i, 13] = (p - song_p80) / 12.0
            out[i, 14] = succ / 12.0
            out[i, 15] = pred / 12.0
            out[i, 16] = density
            out[i, 17] = min(cum_step[ec] - cum_step[s + 1], 8)
            out[i, 18] = (v - vel_median) / 16.0
            out[i, 19] = (v - v_max) / 16.0
            out[i, 20] = 1.0 if v == v_max else 0.0
            out[i, 21] = (v - v_local) / 16.0
            out[i, 22] = min(below, 4)
            out[i, 23] = 1.0 if s % 4 == 0 else 0.0
            out[i, 24] = 1.0 if s % 2 == 0 else 0.0
            out[i, 25] = (p - song_median) / 12.0
            out[i, 26] = pred_vel / 16.0
            out[i, 27] = succ_vel / 16.0
            out[i, 28] = (song_p80 - song_median) / 12.0
            out[i, 29] = (v_max - vel_median) / 16.0
            out[i, 30] = abs(p - local) / 12.0
        prev_g0 = g0
        g0 = g1


#: Half-widths (steps) of the near and wide windows of ``context_features``.
_NEAR_STEP = 16
_WIDE_STEP = 64


@njit(cache=True, nogil=True)
def context_features(start_step, end_step, pitch, velocity, q, out):
    """Second-pass evidence: how a note fits the likely melody around it.

    ``q`` is a first-pass melody probability per note. Weights are ``q**2``; the "line"
    is the note of highest ``q`` per onset step; "near" is +-16 steps (the note's own
    onset step left out), "wide" is +-64 steps; song statistics are ``q**2``-weighted
    means and spreads (standard deviation + 1) of pitch and velocity.

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by start_step, >= 0; end > start
    pitch : int16 (N,)
    velocity : int16 or uint8 (N,)
    q : float64 (N,), in [0, 1]
    out : float64 (N, N_CONTEXT), written; columns as in ``CONTEXT_NAMES``.
    """
    n = start_step.shape[0]
    if n == 0:
        return
    n_steps = start_step[n - 1] + 2
    cw = np.zeros(n_steps + 1)
    cp = np.zeros(n_steps + 1)
    cv = np.zeros(n_steps + 1)
    best_q = np.zeros(n_steps)
    best = np.full(n_steps, np.int64(-1))
    sw = 0.0
    sp = 0.0
    sv = 0.0
    for i in range(n):
        s = start_step[i]
        w = q[i] * q[i]
        cw[s + 1] += w
        cp[s + 1] += w * np.int64(pitch[i])
        cv[s + 1] += w * np.int64(velocity[i])
        if best[s] < 0 or q[i] > best_q[s]:
            best_q[s] = q[i]
            best[s] = i
    for t in range(n_steps):
        sw += cw[t + 1]
        sp += cp[t + 1]
        sv += cv[t + 1]
    sp /= max(sw, 1e-9)
    sv /= max(sw, 1e-9)
    spp = 0.0
    svv = 0.0
    for i in range(n):
        w = q[i] * q[i]
        spp += w * (np.int64(pitch[i]) - sp) ** 2
        svv += w * (np.int64(velocity[i]) - sv) ** 2
    sd_p = np.sqrt(spp / max(sw, 1e-9)) + 1.0
    sd_v = np.sqrt(svv / max(sw, 1e-9)) + 1.0
    lv = np.zeros(n_steps + 1)
    lv2 = np.zeros(n_steps + 1)
    lc = np.zeros(n_steps + 1)
    for t in range(n_steps):
        a = best[t]
        lv[t + 1] = lv[t]
        lv2[t + 1] = lv2[t]
        lc[t + 1] = lc[t]
        if a >= 0:
            va = np.float64(velocity[a])
            lv[t + 1] += va
            lv2[t + 1] += va * va
            lc[t + 1] += 1.0
        cw[t + 1] += cw[t]
        cp[t + 1] += cp[t]
        cv[t + 1] += cv[t]
    g0 = 0
    prev = -1
    sound_q = 0.0
    sound_end = np.int64(-1)
    sound_p = np.int64(0)
    while g0 < n:
        s = start_step[g0]
        g1 = g0 + 1
        while g1 < n and start_step[g1] == s:
            g1 += 1
        b1 = -1.0
        b2 = -1.0
        for i in range(g0, g1):
            if q[i] > b1:
                b2 = b1
                b1 = q[i]
            elif q[i] > b2:
                b2 = q[i]
        lo = max(s - _NEAR_STEP, 0)
        hi = min(s + _NEAR_STEP + 1, n_steps)
        w_near = cw[hi] - cw[lo] - (cw[s + 1] - cw[s])
        p_near = cp[hi] - cp[lo] - (cp[s + 1] - cp[s])
        v_near = cv[hi] - cv[lo] - (cv[s + 1] - cv[s])
        near = w_near > 1e-6
        lo2 = max(s - _WIDE_STEP, 0)
        hi2 = min(s + _WIDE_STEP + 1, n_steps)
        w_wide = cw[hi2] - cw[lo2]
        p_wide = (cp[hi2] - cp[lo2]) / w_wide if w_wide > 1e-6 else sp
        v_wide = (cv[hi2] - cv[lo2]) / w_wide if w_wide > 1e-6 else sv
        c3 = max(lc[hi] - lc[lo], 1.0)
        m3 = (lv[hi] - lv[lo]) / c3
        sd3 = np.sqrt(max((lv2[hi] - lv2[lo]) / c3 - m3 * m3, 0.0))
        c4 = max(lc[hi2] - lc[lo2], 1.0)
        m4 = (lv[hi2] - lv[lo2]) / c4
        sd4 = np.sqrt(max((lv2[hi2] - lv2[lo2]) / c4 - m4 * m4, 0.0))
        next_q = 0.0
        next_p = np.int64(-1)
        if g1 < n:
            next_q = best_q[start_step[g1]]
            next_p = np.int64(pitch[best[start_step[g1]]])
        sounding = sound_end > s
        for i in range(g0, g1):
            p = np.int64(pitch[i])
            v = np.int64(velocity[i])
            other = b2 if q[i] == b1 else b1
            out[i, 0] = q[i]
            out[i, 1] = q[i] - max(other, 0.0)
            out[i, 2] = (p - p_near / w_near) / 12.0 if near else 0.0
            out[i, 3] = abs(p - p_near / w_near) / 12.0 if near else 0.0
            out[i, 4] = (v - v_near / w_near) / 16.0 if near else 0.0
            out[i, 5] = w_near / 8.0
            out[i, 6] = abs(p - np.int64(pitch[prev])) / 12.0 if prev >= 0 else 1.0
            out[i, 7] = best_q[start_step[prev]] if prev >= 0 else 0.0
            out[i, 8] = abs(p - next_p) / 12.0 if next_p >= 0 else 1.0
            out[i, 9] = next_q
            out[i, 10] = sound_q if sounding else 0.0
            out[i, 11] = (p - sound_p) / 12.0 if sounding else 0.0
            out[i, 12] = (p - sp) / sd_p
            out[i, 13] = (v - sv) / sd_v
            out[i, 14] = abs(v - sv) / sd_v
            out[i, 15] = (p_wide - sp) / sd_p
            out[i, 16] = (v_wide - sv) / sd_v
            out[i, 17] = w_wide / 32.0
            out[i, 18] = sd_v / 16.0
            out[i, 19] = sd_p / 12.0
            out[i, 20] = sd3 / 16.0
            out[i, 21] = sd4 / 16.0
        a = best[s]
        prev = a
        if q[a] > 0.5 or sound_end <= s:
            sound_q = q[a]
            sound_end = end_step[a]
            sound_p = np.int64(pitch[a])
        g0 = g1


#: Columns of ``segment_features``' output, in order: where in the song a note lies and
#: how the likely line (probability ``q``) behaves around it, against the whole song.
SEGMENT_NAMES = (
    "bars_from_first_onset",
    "bars_to_last_onset",
    "near_line_onsets_per_step_minus_song",
    "wide_line_onsets_per_step_minus_song",
    "near_rival_line_share",
    "wide_rival_line_share",
    "near_onsets_per_step_minus_song",
)
N_SEGMENT = len(SEGMENT_NAMES)
#: Columns of ``line_inputs``' x (the line network also reads the second pass's probability):
#: note features, first- and second-pass context, segment features.
N_INPUTS = N_FEATURES + 2 * N_CONTEXT + N_SEGMENT
#: Positions are counted in bars of 16 steps up to this many (intros and outros are shorter).
_MAX_POSITION_BAR = 32


@njit(cache=True, nogil=True)
def segment_features(start_step, q, out):
    """Evidence of whether the tune is sung here: song position and the likely line's density.

    POP909's vocal line rests in intros, outros and interludes while an instrument carries
    the tune; there the likely line (notes with ``q > 0.5``) is often sparser or denser
    than in the sung parts, two likely lines run at once (a counter-melody over the
    voice), and the place is near the song's ends. "near" is +-16 steps, "wide" +-64.
    A step's "line onset" is a step with a note of ``q > 0.5``; a "rival" step has two.

    Parameters
    ----------
    start_step : int64 (N,), sorted, >= 0
    q : float64 (N,), in [0, 1]
    out : float64 (N, N_SEGMENT), written; columns as in ``SEGMENT_NAMES``.
    """
    n = start_step.shape[0]
    if n == 0:
        return
    first = start_step[0]
    last = start_step[n - 1]
    n_steps = last + 2
    line = np.zeros(n_steps + 1)
    rival = np.zeros(n_steps + 1)
    onset = np.zeros(n_steps + 1)
    likely = np.zeros(n_steps, np.int64)
    for i in range(n):
        s = start_step[i]
        if q[i] > 0.5:
            likely[s] += 1
        if onset[s + 1] == 0.0:
            onset[s + 1] = 1.0
    for t in range(n_steps):
        line[t + 1] = line[t] + (1.0 if likely[t] > 0 else 0.0)
        rival[t + 1] = rival[t] + (1.0 if likely[t] > 1 else 0.0)
        onset[t + 1] += onset[t]
    span = np.float64(last - first + 1)
    song_line = (line[n_steps] - line[first]) / span
    song_onset = (onset[n_steps] - onset[first]) / span
    g0 = 0
    while g0 < n:
        s = start_step[g0]
        g1 = g0 + 1
        while g1 < n and start_step[g1] == s:
            g1 += 1
        lo = max(s - _NEAR_STEP, first)
        hi = min(s + _NEAR_STEP + 1, n_steps)
        lo2 = max(s - _WIDE_STEP, first)
        hi2 = min(s + _WIDE_STEP + 1, n_steps)
        near_line = line[hi] - line[lo]
        wide_line = line[hi2] - line[lo2]
        f0 = min((s - first) / 16.0, _MAX_POSITION_BAR) / 8.0
        f1 = min((last - s) / 16.0, _MAX_POSITION_BAR) / 8.0
        f2 = 4.0 * (near_line / (hi - lo) - song_line)
        f3 = 4.0 * (wide_line / (hi2 - lo2) - song_line)
        f4 = (rival[hi] - rival[lo]) / max(near_line, 1.0)
        f5 = (rival[hi2] - rival[lo2]) / max(wide_line, 1.0)
        f6 = 4.0 * ((onset[hi] - onset[lo]) / (hi - lo) - song_onset)
        for i in range(g0, g1):
            out[i, 0] = f0
            out[i, 1] = f1
            out[i, 2] = f2
            out[i, 3] = f3
            out[i, 4] = f4
            out[i, 5] = f5
            out[i, 6] = f6
        g0 = g1


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def mlp_logit(x, i, w_hidden, b_hidden, w_out, b_out):
    """Row ``i`` of ``mlp_logits``."""
    n_hidden, n_in = w_hidden.shape
    v = b_out
    for k in range(n_hidden):
        acc = b_hidden[k]
        for f in range(n_in):
            acc += x[i, f] * w_hidden[k, f]
        v += max(acc, 0.0) * w_out[k]
    return v


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def mlp_logits_at(x, rows, w_hidden, b_hidden, w_out, b_out, out):
    """``out[r] = mlp_logit(x, r, ...)`` for each ``r`` in ``rows``, four rows at a time.

    Each weight is loaded once for four notes and the four sums run side by side: 1.8x
    faster than row by row on POP909's networks. Same NaN-safe fastmath flags as
    ``mlp_logit``; results equal to 1e-12.

    Parameters
    ----------
    x : float64 (N, >= F)
    rows : int64 (R,), indices into x
    w_hidden : float64 (H, F), one row per hidden unit
    b_hidden, w_out : float64 (H,)
    b_out : float
    out : float64 (N,), written at ``rows`` only
    """
    n_hidden, n_in = w_hidden.shape
    n = rows.shape[0]
    j = 0
    while j + 4 <= n:
        r0 = rows[j]
        r1 = rows[j + 1]
        r2 = rows[j + 2]
        r3 = rows[j + 3]
        v0 = v1 = v2 = v3 = b_out
        for k in range(n_hidden):
            a0 = a1 = a2 = a3 = b_hidden[k]
            for f in range(n_in):
                w = w_hidden[k, f]
                a0 += x[r0, f] * w
                a1 += x[r1, f] * w
                a2 += x[r2, f] * w
                a3 += x[r3, f] * w
            v0 += max(a0, 0.0) * w_out[k]
            v1 += max(a1, 0.0) * w_out[k]
            v2 += max(a2, 0.0) * w_out[k]
            v3 += max(a3, 0.0) * w_out[k]
        out[r0] = v0
        out[r1] = v1
        out[r2] = v2
        out[r3] = v3
        j += 4
    while j < n:
        out[rows[j]] = mlp_logit(x, rows[j], w_hidden, b_hidden, w_out, b_out)
        j += 1


@njit(cache=True, nogil=True)
def mlp_logits(x, w_hidden, b_hidden, w_out, b_out, out):
    """A one-hidden-layer ReLU network's logit per row: ``relu(x @ w_hidden.T + b_hidden) @ w_out + b_out``.

    Only the first F columns of ``x`` are read. ``mlp_logits_at`` over every row: the
    NaN-safe fastmath flags (reassociate, fuse multiply-add) let the dot products
    vectorise, results equal to 1e-12.

    Parameters
    ----------
    x : float64 (N, >= F)
    w_hidden : float64 (H, F), one row per hidden unit
    b_hidden, w_out : float64 (H,)
    b_out : float
    out : float64 (N,), written
    """
    mlp_logits_at(x, np.arange(x.shape[0]), w_hidden, b_hidden, w_out, b_out, out)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _affine(w, b, x, out):
    """``out = w @ x + b`` for one vector ``x``, four rows of ``w`` at a time.

    Each ``x[k]`` is loaded once for four sums running side by side (as in
    ``mlp_logits_at``). The sums are in ``b``'s type.
    """
    n_rows, n_in = w.shape
    r = 0
    while r + 4 <= n_rows:
        a0 = b[r]
        a1 = b[r + 1]
        a2 = b[r + 2]
        a3 = b[r + 3]
        for k in range(n_in):
            xk = x[k]
            a0 += w[r, k] * xk
            a1 += w[r + 1, k] * xk
            a2 += w[r + 2, k] * xk
            a3 += w[r + 3, k] * xk
        out[r] = a0
        out[r + 1] = a1
        out[r + 2] = a2
        out[r + 3] = a3
        r += 4
    while r < n_rows:
        acc = b[r]
        for k in range(n_in):
            acc += w[r, k] * x[k]
        out[r] = acc
        r += 1


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _affine_rows(w, b, xs, out):
    """``out[t] = w @ xs[t] + b`` for every row ``t`` of ``xs``, four rows of ``xs`` by four of ``w`` at a time.

    Sixteen sums run side by side, so each load of ``w`` serves four notes and each
    load of ``xs`` four rows of ``w``: 1.5-2x faster than ``_affine`` note by note on
    the line networks' gate inputs (384 x 128 and 384 x 256 in float32), about as fast as
    a one-thread BLAS GEMM, with no BLAS thread pool in the conversion workers.
    """
    m = xs.shape[0]
    n_rows, n_in = w.shape
    zero = b.dtype.type(0)
    t = 0
    while t + 4 <= m:
        r = 0
        while r + 4 <= n_rows:
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
            a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
            for k in range(n_in):
                x0 = xs[t, k]
                x1 = xs[t + 1, k]
                x2 = xs[t + 2, k]
                x3 = xs[t + 3, k]
                w0 = w[r, k]
                w1 = w[r + 1, k]
                w2 = w[r + 2, k]
                w3 = w[r + 3, k]
                a00 += w0 * x0
                a01 += w1 * x0
                a02 += w2 * x0
                a03 += w3 * x0
                a10 += w0 * x1
                a11 += w1 * x1
                a12 += w2 * x1
                a13 += w3 * x1
                a20 += w0 * x2
                a21 += w1 * x2
                a22 += w2 * x2
                a23 += w3 * x2
                a30 += w0 * x3
                a31 += w1 * x3
                a32 += w2 * x3
                a33 += w3 * x3
            out[t, r] = a00 + b[r]
            out[t, r + 1] = a01 + b[r + 1]
            out[t, r + 2] = a02 + b[r + 2]
            out[t, r + 3] = a03 + b[r + 3]
            out[t + 1, r] = a10 + b[r]
            out[t + 1, r + 1] = a11 + b[r + 1]
            out[t + 1, r + 2] = a12 + b[r + 2]
            out[t + 1, r + 3] = a13 + b[r + 3]
            out[t + 2, r] = a20 + b[r]
            out[t + 2, r + 1] = a21 + b[r + 1]
            out[t + 2, r + 2] = a22 + b[r + 2]
            out[t + 2, r + 3] = a23 + b[r + 3]
            out[t + 3, r] = a30 + b[r]
            out[t + 3, r + 1] = a31 + b[r + 1]
            out[t + 3, r + 2] = a32 + b[r + 2]
            out[t + 3, r + 3] = a33 + b[r + 3]
            r += 4
        for i in range(4):
            for rr in range(r, n_rows):
                acc = b[rr]
                for k in range(n_in):
                    acc += w[rr, k] * xs[t + i, k]
                out[t + i, rr] = acc
        t += 4
    while t < m:
        _affine(w, b, xs[t], out[t])
        t += 1


# error_model="numpy": the gate loop vectorises (see ``activation``), 6.7x faster.
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _gru_pass(gate_in, w_hh, b_hh, reverse, h_out):
    """One direction of one GRU layer: ``h_out[t]`` = the hidden state after step t (torch's cell, gates r, z, n).

    ``activation``'s sigmoid and tanh (float32-accurate, vectorisable).
    """
    m = gate_in.shape[0]
    n_hidden = w_hh.shape[1]
    h = np.zeros(n_hidden, w_hh.dtype)
    gate_h = np.empty(3 * n_hidden, w_hh.dtype)
    for s in range(m):
        t = m - 1 - s if reverse else s
        _affine(w_hh, b_hh, h, gate_h)
        for k in range(n_hidden):
            reset = sigmoid(gate_in[t, k] + gate_h[k])
            update = sigmoid(gate_in[t, n_hidden + k] + gate_h[n_hidden + k])
            new = tanh(gate_in[t, 2 * n_hidden + k] + reset * gate_h[2 * n_hidden + k])
            h[k] = (1.0 - update) * new + update * h[k]
        for k in range(n_hidden):
            h_out[t, k] = h[k]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def line_logits(x, q, w_in, b_in, w_ih_first, w_ih_upper, w_hh, b_ih, b_hh, w_out, b_out, out):
    """Melody logits of a song's notes from a stacked bidirectional GRU over them in onset order.

    Each note's inputs (``x``'s columns and the second pass's probability ``q``) go
    through one ReLU layer ``e = relu(w_in @ [x, q] + b_in)``; L layers of a GRU run
    over the ``e``, each forwards and backwards, a layer above the first reading both
    directions of the one below (``torch.nn.GRU(bidirectional=True, num_layers=L)``,
    weights in its layout); ``out = w_out @ [h_forward, h_backward, e] + b_out`` from the
    top layer. The recurrence carries what a per-note network cannot see: whether the
    voice sings in this part of the song, and which of two lines has been the tune so
    far and will be next.

    The weights are all float32 or all float64: the inputs are cast to their type, and
    the matrix products and stored states are kept in it (float32 halves the memory
    traffic and doubles the lanes per vector instruction); the gate activations are
    computed in float64 (``activation``, float32-accurate anyway).

    Parameters
    ----------
    x : float64 (N, F), the notes in onset order
    q : float64 (N,)
    w_in : (H, F + 1), the last column for ``q``; b_in : (H,)
    w_ih_first : (2, 3H, H), the first layer's, forward then backward
    w_ih_upper : (L - 1, 2, 3H, 2H), the layers above it (reading [forward, backward])
    w_hh : (L, 2, 3H, H); b_ih, b_hh : (L, 2, 3H)
    w_out : (3H,); b_out : float
    out : float64 (N,), written
    """
    m = x.shape[0]
    n_hidden = w_in.shape[0]
    n_feat = w_in.shape[1] - 1
    n_layers = w_hh.shape[0]
    xq = np.empty((m, n_feat + 1), w_hh.dtype)
    for t in range(m):
        for f in range(n_feat):
            xq[t, f] = x[t, f]
        xq[t, n_feat] = q[t]
    e = np.empty((m, n_hidden), w_hh.dtype)
    _affine_rows(w_in, b_in, xq, e)
    for t in range(m):
        v = b_out
        for k in range(n_hidden):
            e[t, k] = max(e[t, k], 0.0)
            v += w_out[2 * n_hidden + k] * e[t, k]
        out[t] = v
    gate_in = np.empty((m, 3 * n_hidden), w_hh.dtype)
    below = np.empty((m, 2 * n_hidden), w_hh.dtype)
    h = np.empty((m, 2 * n_hidden), w_hh.dtype)
    for layer in range(n_layers):
        for d in range(2):
            if layer == 0:
                _affine_rows(w_ih_first[d], b_ih[0, d], e, gate_in)
            else:
                _affine_rows(w_ih_upper[layer - 1, d], b_ih[layer, d], below, gate_in)
            _gru_pass(gate_in, w_hh[layer, d], b_hh[layer, d], d == 1, h[:, d * n_hidden : (d + 1) * n_hidden])
        below[:, :] = h
    for t in range(m):
        v = 0.0
        for k in range(2 * n_hidden):
            v += w_out[k] * h[t, k]
        out[t] += v


@njit(cache=True, nogil=True)
def ensemble_line_logits(x, q, line_nets, out):
    """The mean of ``line_logits`` over every network of ``line_nets``, each counted once.

    ``line_nets`` : a tuple of groups, one per width, each a tuple of ``line_logits``'
    weights with one more leading axis, the network (``b_out``: float64 (K,)); ``out`` :
    float64 (N,), written. Networks fitted from different seeds err on different notes,
    and groups let networks of different widths share one mean: on the held-out POP909
    songs, all merged, the shipped two of 128 units read F1 0.893 and 0.891 alone and
    0.898 together, and with one of 160 (0.891 alone) 0.900.
    """
    n_total = 0
    one = np.empty(out.shape[0], np.float64)
    out[:] = 0.0
    for group in line_nets:
        w_in, b_in, w_ih_first, w_ih_upper, w_hh, b_ih, b_hh, w_out, b_out = group
        for k in range(w_in.shape[0]):
            line_logits(
                x, q, w_in[k], b_in[k], w_ih_first[k], w_ih_upper[k], w_hh[k], b_ih[k], b_hh[k], w_out[k], b_out[k], one
            )
            out += one
        n_total += w_in.shape[0]
    out /= n_total


@njit(cache=True, nogil=True)
def line_inputs(
    start_step,
    end_step,
    pitch,
    velocity,
    net1,
    net2,
    second_min_q,
    x,
    q,
):
    """The inputs of ``line_logits``: the two note networks' passes over a song's notes.

    A first network (``mlp_logits`` on ``note_features``) gives each note a melody
    probability; ``context_features`` say how the note fits that probable line; a second
    network scores the notes whose first probability is at least ``second_min_q`` (the
    rest, 60% of a pop song's notes, get 0) on both. The context again, now from the
    second pass's sharper line, and ``segment_features`` complete ``x``.

    Parameters
    ----------
    start_step, end_step : int64 (N,), sorted by onset; pitch, velocity : int16 (N,)
    net1, net2 : the two networks, tuples (w_hidden, b_hidden, w_out, b_out) of ``mlp_logits``,
        N_FEATURES and N_FEATURES + N_CONTEXT inputs
    second_min_q : float
    x : float64 (N, N_INPUTS), written; q : float64 (N,), written: the second pass's probabilities
    """
    m = start_step.shape[0]
    w1_hidden, b1_hidden, w1_out, b1_out = net1
    w2_hidden, b2_hidden, w2_out, b2_out = net2
    note_features(start_step, end_step, pitch, velocity, x)
    mlp_logits(x, w1_hidden, b1_hidden, w1_out, b1_out, q)  # reads the first N_FEATURES columns
    for i in range(m):
        q[i] = 1.0 / (1.0 + np.exp(-q[i]))
    context_features(start_step, end_step, pitch, velocity, q, x[:, N_FEATURES:])
    rows = np.empty(m, np.int64)
    n_rows = 0
    for i in range(m):
        if q[i] >= second_min_q:
            rows[n_rows] = i
            n_rows += 1
        q[i] = 0.0
    mlp_logits_at(x, rows[:n_rows], w2_hidden, b2_hidden, w2_out, b2_out, q)
    for j in range(n_rows):
        q[rows[j]] = 1.0 / (1.0 + np.exp(-q[rows[j]]))
    context_features(
        start_step, end_step, pitch, velocity, q, x[:, N_FEATURES + N_CONTEXT : N_FEATURES + 2 * N_CONTEXT]
    )
    segment_features(start_step, q, x[:, N_FEATURES + 2 * N_CONTEXT :])


@njit(cache=True, nogil=True)
def greedy_line(start_step, pitch, score, leap_cost, window_step, chosen):
    """Per onset step, the note of best ``score - leap_cost * |leap|`` if that is positive (causal).

    The leap is measured to the last chosen note if it started at most ``window_step``
    steps earlier, else it costs nothing. Ties keep the first note of the run.

    Parameters
    ----------
    start_step : int64 (N,), sorted
    pitch : int16 (N,)
    score : float64 (N,)
    leap_cost : float
    window_step : int
    chosen : bool (N,), written
    """
    n = start_step.shape[0]
    last_pitch = np.int64(-1)
    last_step = np.int64(-1)
    g0 = 0
    while g0 < n:
        s = start_step[g0]
        g1 = g0 + 1
        while g1 < n and start_step[g1] == s:
            g1 += 1
        near = last_pitch >= 0 and s - last_step <= window_step
        best = -1
        best_v = 0.0
        for i in range(g0, g1):
            chosen[i] = False
            v = score[i]
            if near:
                v -= leap_cost * abs(np.int64(pitch[i]) - last_pitch)
            if v > best_v:
                best_v = v
                best = i
        if best >= 0:
            chosen[best] = True
            last_pitch = pitch[best]
            last_step = s
        g0 = g1


@njit(cache=True, nogil=True)
def _skyline_leap_mean(start_step, end_step, pitch, keep):
    skyline(start_step, end_step, pitch, keep)
    prev = np.int64(-1)
    total = 0.0
    count = 0
    for i in range(start_step.shape[0]):
        if keep[i]:
            if prev >= 0:
                total += abs(np.int64(pitch[i]) - prev)
                count += 1
            prev = pitch[i]
    return total / count if count > 0 else 0.0


@njit(cache=True, nogil=True)
def _track_candidates(
    start_tick, start_step, end_step, pitch, is_drum, group, n_groups, mono_penalty, mono_limit, segment_step, cand
):
    """``choose_tracks`` on the notes in their given order, without sorting them first.

    Valid where each group's pitched notes are already in onset order (one sorted run per
    track, as files store them): a group's running figures then see its notes in the
    order a stable sort by onset gives them, and the candidates are the same.

    Parameters
    ----------
    start_tick, start_step, end_step, pitch, is_drum, group : the notes, as ``pick_melody``
    n_groups : int >= 2
    mono_penalty, mono_limit, segment_step : as ``choose_tracks``
    cand : int64 (N,), written: the candidates' indices, in index order

    Returns
    -------
    int
        The number of candidates, or -1 where this shortcut does not apply (a group out of
        onset order, a step under 0 or from ``_MAX_GRID_STEP`` on, no pitched note, or no
        group monophonic enough).
    """
    n = start_tick.shape[0]
    count = np.zeros(n_groups, np.int64)
    poly = np.zeros(n_groups, np.int64)
    pitch_sum = np.zeros(n_groups, np.float64)
    last_tick = np.zeros(n_groups, np.int64)
    last_start = np.full(n_groups, np.int64(-1))
    last_end = np.full(n_groups, np.int64(-1))
    # Segment of each note, found by walking each group's boundaries forward (its onsets
    # only grow) instead of dividing: 0 for drums.
    seg_of = np.zeros(n, np.int32)
    seg = np.zeros(n_groups, np.int32)
    bound = np.full(n_groups, np.int64(segment_step))
    for i in range(n):
        if is_drum[i]:
            continue
        g = group[i]
        s = start_step[i]
        if s < 0 or s >= _MAX_GRID_STEP or (count[g] > 0 and start_tick[i] < last_tick[g]):
            return -1
        last_tick[g] = start_tick[i]
        if count[g] > 0 and (s == last_start[g] or s < last_end[g] - 1):
            poly[g] += 1
        count[g] += 1
        pitch_sum[g] += pitch[i]
        last_start[g] = s
        if end_step[i] > last_end[g] or s >= last_end[g]:
            last_end[g] = end_step[i]
        while s >= bound[g]:
            seg[g] += 1
            bound[g] += segment_step
        seg_of[i] = seg[g]
    value = np.zeros(n_groups, np.float64)
    best = -1
    n_seg = 0
    for g in range(n_groups):
        f = poly[g] / max(count[g] - 1, 1)
        height = 2.0 ** ((pitch_sum[g] / max(count[g], 1) - 60.0) / 12.0)
        value[g] = count[g] * max(1.0 - mono_penalty * f, 0.0) * height if f <= mono_limit else -1.0
        if value[g] > 0 and (best < 0 or value[g] > value[best]):
            best = g
        if count[g] > 0 and seg[g] + 1 > n_seg:
            n_seg = seg[g] + 1
    if best < 0:
        return -1
    seg_count = np.zeros((n_seg, n_groups), np.int64)
    for i in range(n):
        if not is_drum[i]:
            seg_count[seg_of[i], group[i]] += 1
    segment_group = np.empty(n_seg, np.int32)
    for k in range(n_seg):
        if seg_count[k, best] > 0:
            segment_group[k] = best
            continue
        pick = -1
        for g in range(n_groups):
            if seg_count[k, g] > 0 and value[g] > 0 and (pick < 0 or value[g] > value[pick]):
                pick = g
        segment_group[k] = pick if pick >= 0 else best
    c = 0
    for i in range(n):
        if not is_drum[i] and group[i] == segment_group[seg_of[i]]:
            cand[c] = i
            c += 1
    return c


@njit(cache=True, nogil=True)
def pick_melody(
    start_tick,
    end_tick,
    start_step,
    end_step,
    pitch,
    velocity,
    channel,
    program,
    track,
    is_drum,
    net1,
    net2,
    line_nets,
    leap_cost,
    window_step,
    mono_penalty,
    mono_limit,
    segment_step,
    clean_leap,
    flat_velocity,
    second_min_q,
    out_start_tick,
    out_end_tick,
    out_pitch,
    out_velocity,
    out_channel,
    out_program,
    out_track,
    out_is_drum,
):
    """The whole melody choice: track choice, note scores, line, overlaps cut.

    1. Drums are dropped; notes are grouped by (track, channel) (``group_ids``).
    2. ``choose_tracks``: where one group is monophonic enough, its notes (per segment)
       are the candidates and their skyline is the melody.
    3. Otherwise every pitched note is a candidate. If the candidates' velocities are
       flat (standard deviation at most ``flat_velocity``) and their skyline moves by at
       most ``clean_leap`` semitones per note on average (a clean top line), or there are
       under 32 candidates, the skyline is the melody; else two note networks
       (``line_inputs``: ``note_features``, then ``context_features``, how a note fits
       the probable melody around it) and ``segment_features`` (song position, the
       likely line's density and rivals around it) feed a bidirectional GRU over the
       notes (``ensemble_line_logits``: the mean logit of several networks), and
       ``greedy_line`` picks the line from its logits.
    4. Each chosen note ends no later than the next chosen onset (tick).

    Parameters
    ----------
    start_tick, end_tick : int64 (N,), in any order (a stable sort by onset is made)
    start_step, end_step : int64 (N,), the notes on the 16th grid (``grid_steps``)
    pitch : int16 (N,)
    velocity : int16 (N,)
    channel : int8 (N,), program : int16 (N,), track : int32 (N,): copied to the output
    is_drum : bool (N,)
    net1, net2 : the note networks of ``line_inputs``, tuples (w_hidden, b_hidden, w_out, b_out)
    line_nets : the line networks of ``ensemble_line_logits``: a tuple of groups, each a tuple
        (w_in, b_in, w_ih_first, w_ih_upper, w_hh, b_ih, b_hh, w_out, b_out) of
        ``line_logits``' weights (one leading axis: the networks of one width),
        N_INPUTS + 1 inputs
    leap_cost, mono_penalty, mono_limit, clean_leap, flat_velocity : float
    second_min_q : float, the first-pass probability under which a note is not scored again
    window_step, segment_step : int > 0
    out_start_tick, out_end_tick, out_pitch, out_velocity, out_channel, out_program,
    out_track, out_is_drum : (N,) of the input dtypes, written: the chosen notes by
        ascending onset, their releases cut at the next chosen onset

    Returns
    -------
    int
        The number of chosen notes (the first entries of the outputs).
    """
    n = start_tick.shape[0]
    group = np.empty(n, np.int32)
    n_groups = group_ids(track, channel, group)
    idx = np.empty(n, np.int64)
    m = -1
    if n_groups >= 2:
        # Separate tracks (most files): the track choice needs no sort, and only the few
        # candidates (one sorted run per group) are put in onset order.
        m = _track_candidates(
            start_tick, start_step, end_step, pitch, is_drum, group, n_groups, mono_penalty, mono_limit,
            segment_step, idx,
        )  # fmt: skip
    if m >= 0:
        n_runs = 1
        for i in range(1, m):
            if start_tick[idx[i]] < start_tick[idx[i - 1]]:
                n_runs += 1
        if n_runs > 1:
            tick = np.empty(m, np.int64)
            for i in range(m):
                tick[i] = start_tick[idx[i]]
            order = np.empty(m, np.int64)
            onset_order(tick, order)
            unsorted = idx[:m].copy()
            for i in range(m):
                idx[i] = unsorted[order[i]]
        idx = idx[:m]
        st = np.empty(m, np.int64)
        en = np.empty(m, np.int64)
        cp = np.empty(m, np.int16)
        for i in range(m):
            j = idx[i]
            st[i] = start_step[j]
            en[i] = end_step[j]
            cp[i] = pitch[j]
        chosen = np.zeros(m, np.bool_)
        skyline(st, en, cp, chosen)
    else:
        chosen, idx = _merged_line(
            start_tick, start_step, end_step, pitch, velocity, is_drum, group, n_groups, net1, net2, line_nets,
            leap_cost, window_step, mono_penalty, mono_limit, segment_step, clean_leap, flat_velocity, second_min_q,
        )  # fmt: skip
    c = 0
    for i in range(idx.shape[0]):
        if chosen[i]:
            j = idx[i]
            out_start_tick[c] = start_tick[j]
            out_end_tick[c] = end_tick[j]
            out_pitch[c] = pitch[j]
            out_velocity[c] = velocity[j]
            out_channel[c] = channel[j]
            out_program[c] = program[j]
            out_track[c] = track[j]
            out_is_drum[c] = is_drum[j]
            if c > 0 and out_end_tick[c - 1] > start_tick[j]:
                out_end_tick[c - 1] = start_tick[j]
            c += 1
    return c


@njit(cache=True, nogil=True)
def _merged_line(
    start_tick,
    start_step,
    end_step,
    pitch,
    velocity,
    is_drum,
    group,
    n_groups,
    net1,
    net2,
    line_nets,
    leap_cost,
    window_step,
    mono_penalty,
    mono_limit,
    segment_step,
    clean_leap,
    flat_velocity,
    second_min_q,
):
    """Steps 2-3 of ``pick_melody`` on the notes sorted by onset: the general path.

    Returns the chosen flags and the candidates' indices (``pitch_onset_order``), equally long.
    """
    n = start_tick.shape[0]
    order = np.empty(n, np.int64)
    pitch_onset_order(start_tick, end_step, pitch, velocity, order)
    m = 0
    for i in range(n):
        if not is_drum[i]:
            m += 1
    idx = np.empty(m, np.int64)
    k = 0
    for i in range(n):
        if not is_drum[order[i]]:
            idx[k] = order[i]
            k += 1
    if m == 0:
        return np.zeros(0, np.bool_), idx
    st = start_step[idx]
    en = end_step[idx]
    grp = group[idx]
    n_seg = st[m - 1] // segment_step + 1
    seg_group = np.empty(n_seg, np.int32)
    main = choose_tracks(st, en, pitch[idx], grp, n_groups, mono_penalty, mono_limit, segment_step, seg_group)
    if main >= 0:
        c = 0
        for i in range(m):
            if grp[i] == seg_group[st[i] // segment_step]:
                idx[c] = idx[i]
                st[c] = st[i]
                en[c] = en[i]
                c += 1
        m = c
        idx = idx[:m]
        st = st[:m]
        en = en[:m]
    cp = pitch[idx]
    chosen = np.zeros(m, np.bool_)
    leap = _skyline_leap_mean(st, en, cp, chosen)
    cv = velocity[idx]
    v_mean = 0.0
    for i in range(m):
        v_mean += np.float64(cv[i])
    v_mean /= m
    v_var = 0.0
    for i in range(m):
        v_var += (np.float64(cv[i]) - v_mean) ** 2
    flat = v_var <= flat_velocity * flat_velocity * m
    if main < 0 and not (flat and leap <= clean_leap) and m >= _MIN_SCORED_NOTES and st[m - 1] < _MAX_GRID_STEP:
        x = np.empty((m, N_INPUTS), np.float64)
        q = np.empty(m, np.float64)
        line_inputs(st, en, cp, cv, net1, net2, second_min_q, x, q)
        score = np.empty(m, np.float64)
        ensemble_line_logits(x, q, line_nets, score)
        greedy_line(st, cp, score, leap_cost, window_step, chosen)
    return chosen, idx


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


@njit(cache=True, nogil=True)
def group_ids(track, channel, group):
    """Dense ids of the (track, channel) pairs, numbered in order of first appearance.

    Parameters
    ----------
    track : int32 (N,), >= 0
    channel : int8 (N,), 0-15
    group : int32 (N,), written

    Returns
    -------
    int
        The number of distinct pairs.
    """
    n = track.shape[0]
    top = 0
    for i in range(n):
        if track[i] > top:
            top = track[i]
    dense = np.full((top + 1) * 16, np.int32(-1))
    count = 0
    for i in range(n):
        key = track[i] * 16 + (channel[i] & 15)
        if dense[key] < 0:
            dense[key] = count
            count += 1
        group[i] = dense[key]
    return count


@njit(cache=True, nogil=True)
def line_steps(start_tick, end_tick, ticks_per_beat, steps_per_beat):
    """The last release step of the notes on the grid (0 without notes)."""
    den = 2 * np.int64(ticks_per_beat)
    num = 2 * np.int64(steps_per_beat)
    last = np.int64(0)
    for i in range(start_tick.shape[0]):
        s = (start_tick[i] * num + ticks_per_beat) // den
        e = (end_tick[i] * num + ticks_per_beat) // den
        e = e if e > s else s + 1
        if e > last:
            last = e
    return last


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
