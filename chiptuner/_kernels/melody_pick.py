"""The melody choice: track choice or note scores, the line, overlaps cut (``pick_melody``, one call).

Every function is pure: it reads arrays and writes into arrays the caller passes in.
Note arrays here are sorted by ``start_step`` (ties: any order unless stated).
"""

import numpy as np
from numba import njit

from chiptuner._kernels.melody_features import (
    FIRST_CONTEXT_START,
    N_INPUTS,
    SECOND_CONTEXT_START,
    SEGMENT_START,
    context_features,
    note_features,
    segment_features,
)
from chiptuner._kernels.melody_nets import ensemble_line_logits, mlp_logits, mlp_logits_at
from chiptuner._kernels.melody_order import onset_order, pitched_onset_order
from chiptuner._kernels.melody_tracks import choose_tracks, group_ids

#: Fewest candidate notes for the note scorer; fewer are too little context: skyline.
_MIN_SCORED_NOTES = 32
#: Longest grid (steps) on which the note-level scorer runs; beyond it, skyline.
_MAX_GRID_STEP = 1 << 22


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
        N_FEATURES and SECOND_CONTEXT_START inputs (the note features, then the first context too)
    second_min_q : float
    x : float64 (N, N_INPUTS), written: note features, first and second context, segment features
        (from ``melody_features``' columns 0, FIRST_CONTEXT_START, SECOND_CONTEXT_START, SEGMENT_START)
    q : float64 (N,), written: the second pass's probabilities
    """
    m = start_step.shape[0]
    w1_hidden, b1_hidden, w1_out, b1_out = net1
    w2_hidden, b2_hidden, w2_out, b2_out = net2
    note_features(start_step, end_step, pitch, velocity, x)
    mlp_logits(x, w1_hidden, b1_hidden, w1_out, b1_out, q)  # net1 reads the note features only
    for i in range(m):
        q[i] = 1.0 / (1.0 + np.exp(-q[i]))
    context_features(start_step, end_step, pitch, velocity, q, x[:, FIRST_CONTEXT_START:SECOND_CONTEXT_START])
    rows = np.empty(m, np.int64)
    n_rows = 0
    for i in range(m):
        if q[i] >= second_min_q:
            rows[n_rows] = i
            n_rows += 1
        q[i] = 0.0
    mlp_logits_at(x, rows[:n_rows], w2_hidden, b2_hidden, w2_out, b2_out, q)  # and the first context
    for j in range(n_rows):
        q[rows[j]] = 1.0 / (1.0 + np.exp(-q[rows[j]]))
    context_features(start_step, end_step, pitch, velocity, q, x[:, SECOND_CONTEXT_START:SEGMENT_START])
    segment_features(start_step, q, x[:, SEGMENT_START:])


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
    """``skyline`` (marked in ``keep``), and its mean leap from note to note in semitones (0 for one note)."""
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
def _pitched_by_track(start_tick, start_step, is_drum, group, n_groups, pitched):
    """The pitched notes in index order, where that order is each group's onset order.

    ``choose_tracks`` reads each group's notes in onset order, and files store one sorted
    run of notes per track: there the track choice needs no sort of every note. A group
    out of onset order, or a step off the grid (under 0, or from ``_MAX_GRID_STEP`` on),
    leaves the choice to ``_merged_line``, which sorts every note first.

    Parameters
    ----------
    start_tick, start_step, is_drum, group : the notes, as ``pick_melody``
    n_groups : int
    pitched : int64 (N,), written: the pitched notes' indices, in index order

    Returns
    -------
    int
        The number of pitched notes (the first entries of ``pitched``), or -1 where this
        order does not apply.
    """
    n = start_tick.shape[0]
    seen = np.zeros(n_groups, np.bool_)
    last_tick = np.zeros(n_groups, np.int64)
    m = 0
    for i in range(n):
        if is_drum[i]:
            continue
        g = group[i]
        s = start_step[i]
        if s < 0 or s >= _MAX_GRID_STEP or (seen[g] and start_tick[i] < last_tick[g]):
            return -1
        seen[g] = True
        last_tick[g] = start_tick[i]
        pitched[m] = i
        m += 1
    return m


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
        pitched = np.empty(n, np.int64)
        n_pitched = _pitched_by_track(start_tick, start_step, is_drum, group, n_groups, pitched)
        if n_pitched >= 0:
            m = choose_tracks(
                pitched[:n_pitched], start_step, end_step, pitch, group, n_groups, mono_penalty, mono_limit,
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
        chosen = np.zeros(m, np.bool_)
        skyline(start_step[idx], end_step[idx], pitch[idx], chosen)
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

    Returns the chosen flags and the candidates' indices, equally long: every pitched note in
    ``pitched_onset_order``, or where ``choose_tracks`` finds the melody's tracks their notes, in
    that order.
    """
    order = np.empty(start_tick.shape[0], np.int64)
    m = pitched_onset_order(start_tick, end_step, pitch, velocity, is_drum, order)
    idx = order[:m]
    if m == 0:
        return np.zeros(0, np.bool_), idx
    track_notes = np.empty(m, np.int64)
    n_track_notes = choose_tracks(
        idx, start_step, end_step, pitch, group, n_groups, mono_penalty, mono_limit, segment_step, track_notes
    )
    if n_track_notes >= 0:
        m = n_track_notes
        idx = track_notes[:m]
    st = start_step[idx]
    en = end_step[idx]
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
    clean_top_line = flat and leap <= clean_leap
    if n_track_notes < 0 and not clean_top_line and m >= _MIN_SCORED_NOTES and st[m - 1] < _MAX_GRID_STEP:
        x = np.empty((m, N_INPUTS), np.float64)
        q = np.empty(m, np.float64)
        line_inputs(st, en, cp, cv, net1, net2, second_min_q, x, q)
        score = np.empty(m, np.float64)
        ensemble_line_logits(x, q, line_nets, score)
        greedy_line(st, cp, score, leap_cost, window_step, chosen)
    return chosen, idx
