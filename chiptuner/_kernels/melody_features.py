"""Per-note evidence for the melody networks: note, context and segment features, their columns named.

Every function is pure: it reads arrays and writes into arrays the caller passes in.
Note arrays here are sorted by ``start_step`` (ties: any order).
"""

import numpy as np
from numba import njit

#: Columns of ``note_features``' output. The first ``VELOCITY_MINUS_SONG_MEDIAN`` use no velocity.
BIAS = 0
PITCH_REL_C4_OCT = 1
IS_TOP_OF_ONSET = 2
N_ABOVE_SAME_ONSET = 3
N_SAME_ONSET = 4
OCTAVE_BELOW_SAME_ONSET = 5
OCTAVE_ABOVE_SAME_ONSET = 6
TOP_SOUNDING_MINUS_PITCH_OCT = 7
IS_TOP_SOUNDING = 8
LOG2_DURATION_STEP = 9
N_ONSETS_DURING = 10
HIGHER_ONSET_DURING = 11
PITCH_MINUS_LOCAL_TOP_OCT = 12
PITCH_MINUS_SONG_P80_OCT = 13
SUCC_INTERVAL_OCT = 14
PRED_INTERVAL_OCT = 15
ONSET_DENSITY_16_STEP = 16
N_ONSET_STEPS_DURING = 17
VELOCITY_MINUS_SONG_MEDIAN = 18
VELOCITY_MINUS_ONSET_MAX = 19
IS_LOUDEST_OF_ONSET = 20
VELOCITY_MINUS_LOCAL_MEAN = 21
N_BELOW_SAME_ONSET = 22
ON_BEAT = 23
ON_EIGHTH = 24
PITCH_MINUS_SONG_MEDIAN_OCT = 25
PRED_VELOCITY_STEP = 26
SUCC_VELOCITY_STEP = 27
SONG_P80_MINUS_MEDIAN_OCT = 28
ONSET_MAX_VELOCITY_MINUS_SONG_MEDIAN = 29
ABS_PITCH_MINUS_LOCAL_TOP_OCT = 30
#: Their names, in column order: ``FEATURE_NAMES[column]`` is the column constant's name in lower case.
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

#: Columns of ``context_features``' output: evidence from the first-pass melody probability
#: ``q`` of the other notes (weights ``q**2``; "line" = the likeliest note per onset step).
OWN_Q = 0
Q_MINUS_BEST_OTHER_OF_ONSET = 1
PITCH_MINUS_NEAR_LINE_OCT = 2
ABS_PITCH_MINUS_NEAR_LINE_OCT = 3
VELOCITY_MINUS_NEAR_LINE = 4
NEAR_LINE_WEIGHT = 5
INTERVAL_TO_PREVIOUS_LINE_OCT = 6
PREVIOUS_LINE_Q = 7
INTERVAL_TO_NEXT_LINE_OCT = 8
NEXT_LINE_Q = 9
Q_OF_LINE_NOTE_SOUNDING = 10
PITCH_MINUS_LINE_NOTE_SOUNDING_OCT = 11
PITCH_MINUS_SONG_LINE_Z = 12
VELOCITY_MINUS_SONG_LINE_Z = 13
ABS_VELOCITY_MINUS_SONG_LINE_Z = 14
WIDE_LINE_PITCH_MINUS_SONG_Z = 15
WIDE_LINE_VELOCITY_MINUS_SONG_Z = 16
WIDE_LINE_WEIGHT = 17
SONG_LINE_VELOCITY_SPREAD = 18
SONG_LINE_PITCH_SPREAD = 19
NEAR_LINE_VELOCITY_STD = 20
WIDE_LINE_VELOCITY_STD = 21
#: Their names, in column order (as ``FEATURE_NAMES``).
CONTEXT_NAMES = (
    "own_q",
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

#: Columns of ``segment_features``' output: where in the song a note lies and how the likely
#: line (probability ``q``) behaves around it, against the whole song.
BARS_FROM_FIRST_ONSET = 0
BARS_TO_LAST_ONSET = 1
NEAR_LINE_ONSETS_PER_STEP_MINUS_SONG = 2
WIDE_LINE_ONSETS_PER_STEP_MINUS_SONG = 3
NEAR_RIVAL_LINE_SHARE = 4
WIDE_RIVAL_LINE_SHARE = 5
NEAR_ONSETS_PER_STEP_MINUS_SONG = 6
#: Their names, in column order (as ``FEATURE_NAMES``).
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

#: Where each part of the line network's inputs (``melody_pick.line_inputs``' x) starts: the note
#: features from column 0, then the first pass's context, the second pass's context and the
#: segment features. The line network also reads the second pass's probability.
FIRST_CONTEXT_START = N_FEATURES
SECOND_CONTEXT_START = FIRST_CONTEXT_START + N_CONTEXT
SEGMENT_START = SECOND_CONTEXT_START + N_CONTEXT
N_INPUTS = SEGMENT_START + N_SEGMENT

#: Half-width (steps) of the window of the local upper line.
_LOCAL_STEP = 32
#: Longest duration (steps) that features look inside a note.
_MAX_DURATION_STEP = 64
#: How far (steps) a note's sound is followed for the upper line and later onsets.
_FILL_STEP = 16


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
    sorted ``start_step``, in any order within the run. Velocity enters only from column
    ``VELOCITY_MINUS_SONG_MEDIAN`` on (POP909's melody is often played louder and more evenly
    than the rest).

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
            out[i, BIAS] = 1.0
            out[i, PITCH_REL_C4_OCT] = (p - 60) / 12.0
            out[i, IS_TOP_OF_ONSET] = 1.0 if p == on_top[s] else 0.0
            out[i, N_ABOVE_SAME_ONSET] = min(above, 4)
            out[i, N_SAME_ONSET] = min(g1 - g0 - 1, 6)
            out[i, OCTAVE_BELOW_SAME_ONSET] = oct_below
            out[i, OCTAVE_ABOVE_SAME_ONSET] = oct_above
            out[i, TOP_SOUNDING_MINUS_PITCH_OCT] = (top[s] - p) / 12.0
            out[i, IS_TOP_SOUNDING] = 1.0 if top[s] == p else 0.0
            out[i, LOG2_DURATION_STEP] = log2_table[ec - s - 1]
            out[i, N_ONSETS_DURING] = min(cum_on[ec] - cum_on[s + 1], 8)
            out[i, HIGHER_ONSET_DURING] = higher
            out[i, PITCH_MINUS_LOCAL_TOP_OCT] = (p - local) / 12.0
            out[i, PITCH_MINUS_SONG_P80_OCT] = (p - song_p80) / 12.0
            out[i, SUCC_INTERVAL_OCT] = succ / 12.0
            out[i, PRED_INTERVAL_OCT] = pred / 12.0
            out[i, ONSET_DENSITY_16_STEP] = density
            out[i, N_ONSET_STEPS_DURING] = min(cum_step[ec] - cum_step[s + 1], 8)
            out[i, VELOCITY_MINUS_SONG_MEDIAN] = (v - vel_median) / 16.0
            out[i, VELOCITY_MINUS_ONSET_MAX] = (v - v_max) / 16.0
            out[i, IS_LOUDEST_OF_ONSET] = 1.0 if v == v_max else 0.0
            out[i, VELOCITY_MINUS_LOCAL_MEAN] = (v - v_local) / 16.0
            out[i, N_BELOW_SAME_ONSET] = min(below, 4)
            out[i, ON_BEAT] = 1.0 if s % 4 == 0 else 0.0
            out[i, ON_EIGHTH] = 1.0 if s % 2 == 0 else 0.0
            out[i, PITCH_MINUS_SONG_MEDIAN_OCT] = (p - song_median) / 12.0
            out[i, PRED_VELOCITY_STEP] = pred_vel / 16.0
            out[i, SUCC_VELOCITY_STEP] = succ_vel / 16.0
            out[i, SONG_P80_MINUS_MEDIAN_OCT] = (song_p80 - song_median) / 12.0
            out[i, ONSET_MAX_VELOCITY_MINUS_SONG_MEDIAN] = (v_max - vel_median) / 16.0
            out[i, ABS_PITCH_MINUS_LOCAL_TOP_OCT] = abs(p - local) / 12.0
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
            out[i, OWN_Q] = q[i]
            out[i, Q_MINUS_BEST_OTHER_OF_ONSET] = q[i] - max(other, 0.0)
            out[i, PITCH_MINUS_NEAR_LINE_OCT] = (p - p_near / w_near) / 12.0 if near else 0.0
            out[i, ABS_PITCH_MINUS_NEAR_LINE_OCT] = abs(p - p_near / w_near) / 12.0 if near else 0.0
            out[i, VELOCITY_MINUS_NEAR_LINE] = (v - v_near / w_near) / 16.0 if near else 0.0
            out[i, NEAR_LINE_WEIGHT] = w_near / 8.0
            out[i, INTERVAL_TO_PREVIOUS_LINE_OCT] = abs(p - np.int64(pitch[prev])) / 12.0 if prev >= 0 else 1.0
            out[i, PREVIOUS_LINE_Q] = best_q[start_step[prev]] if prev >= 0 else 0.0
            out[i, INTERVAL_TO_NEXT_LINE_OCT] = abs(p - next_p) / 12.0 if next_p >= 0 else 1.0
            out[i, NEXT_LINE_Q] = next_q
            out[i, Q_OF_LINE_NOTE_SOUNDING] = sound_q if sounding else 0.0
            out[i, PITCH_MINUS_LINE_NOTE_SOUNDING_OCT] = (p - sound_p) / 12.0 if sounding else 0.0
            out[i, PITCH_MINUS_SONG_LINE_Z] = (p - sp) / sd_p
            out[i, VELOCITY_MINUS_SONG_LINE_Z] = (v - sv) / sd_v
            out[i, ABS_VELOCITY_MINUS_SONG_LINE_Z] = abs(v - sv) / sd_v
            out[i, WIDE_LINE_PITCH_MINUS_SONG_Z] = (p_wide - sp) / sd_p
            out[i, WIDE_LINE_VELOCITY_MINUS_SONG_Z] = (v_wide - sv) / sd_v
            out[i, WIDE_LINE_WEIGHT] = w_wide / 32.0
            out[i, SONG_LINE_VELOCITY_SPREAD] = sd_v / 16.0
            out[i, SONG_LINE_PITCH_SPREAD] = sd_p / 12.0
            out[i, NEAR_LINE_VELOCITY_STD] = sd3 / 16.0
            out[i, WIDE_LINE_VELOCITY_STD] = sd4 / 16.0
        a = best[s]
        prev = a
        if q[a] > 0.5 or sound_end <= s:
            sound_q = q[a]
            sound_end = end_step[a]
            sound_p = np.int64(pitch[a])
        g0 = g1


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
        from_first = min((s - first) / 16.0, _MAX_POSITION_BAR) / 8.0
        to_last = min((last - s) / 16.0, _MAX_POSITION_BAR) / 8.0
        near_line_density = 4.0 * (near_line / (hi - lo) - song_line)
        wide_line_density = 4.0 * (wide_line / (hi2 - lo2) - song_line)
        near_rival_share = (rival[hi] - rival[lo]) / max(near_line, 1.0)
        wide_rival_share = (rival[hi2] - rival[lo2]) / max(wide_line, 1.0)
        near_onset_density = 4.0 * ((onset[hi] - onset[lo]) / (hi - lo) - song_onset)
        for i in range(g0, g1):
            out[i, BARS_FROM_FIRST_ONSET] = from_first
            out[i, BARS_TO_LAST_ONSET] = to_last
            out[i, NEAR_LINE_ONSETS_PER_STEP_MINUS_SONG] = near_line_density
            out[i, WIDE_LINE_ONSETS_PER_STEP_MINUS_SONG] = wide_line_density
            out[i, NEAR_RIVAL_LINE_SHARE] = near_rival_share
            out[i, WIDE_RIVAL_LINE_SHARE] = wide_rival_share
            out[i, NEAR_ONSETS_PER_STEP_MINUS_SONG] = near_onset_density
        g0 = g1
