"""Track choice: which (track, channel) group carries the melody, segment by segment.

Every function is pure: it reads arrays and writes into arrays the caller passes in.
"""

import numpy as np
from numba import njit


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
def choose_tracks(notes, start_step, end_step, pitch, group, n_groups, mono_penalty, mono_limit, segment_step, chosen):
    """Choose the melody group (track and channel) of a multi-group song, per segment: its notes.

    Each group is scored ``n_notes * max(1 - mono_penalty * f, 0) * 2 ** ((mean_pitch - 60) / 12)``
    (a higher line is likelier the tune), ``f`` the fraction of
    its notes that start while its previous note sounds (by more than one step) or on the
    same step. The best group is the melody if its ``f <= mono_limit`` and there are two
    groups or more. A segment (``segment_step`` steps) where that group has no note
    takes the best-scored other group with a note there and ``f <= mono_limit``, if any.

    Parameters
    ----------
    notes : int64 (M,), the indices of the notes to choose from, each group's in onset order
        (the groups may interleave in any way: all notes by onset, or one track after another)
    start_step, end_step : int64 (N,)
    pitch : int16 (N,)
    group : int32 (N,), 0 .. n_groups-1
    n_groups : int
    mono_penalty, mono_limit : float
    segment_step : int > 0
    chosen : int64 (M,), written: the notes of each segment's group (indices from ``notes``,
        in its order)

    Returns
    -------
    int
        The number of chosen notes (the first entries of ``chosen``), or -1 where no group
        is the melody (one group only, no note, or none monophonic enough).
    """
    m = notes.shape[0]
    if m == 0 or n_groups < 2:
        return -1
    count = np.zeros(n_groups, np.int64)
    poly = np.zeros(n_groups, np.int64)
    pitch_sum = np.zeros(n_groups, np.float64)
    last_start = np.full(n_groups, np.int64(-1))
    last_end = np.full(n_groups, np.int64(-1))
    top_step = start_step[notes[0]]
    for j in range(m):
        i = notes[j]
        g = group[i]
        s = start_step[i]
        if count[g] > 0 and (s == last_start[g] or s < last_end[g] - 1):
            poly[g] += 1
        count[g] += 1
        pitch_sum[g] += pitch[i]
        last_start[g] = s
        if end_step[i] > last_end[g] or s >= last_end[g]:
            last_end[g] = end_step[i]
        if s > top_step:
            top_step = s
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
    n_seg = top_step // segment_step + 1
    segment = np.empty(m, np.int64)
    seg_count = np.zeros((n_seg, n_groups), np.int64)
    for j in range(m):
        segment[j] = start_step[notes[j]] // segment_step
        seg_count[segment[j], group[notes[j]]] += 1
    segment_group = np.empty(n_seg, np.int64)
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
    for j in range(m):
        if group[notes[j]] == segment_group[segment[j]]:
            chosen[c] = notes[j]
            c += 1
    return c
