"""The orders the melody choice reads notes in: by onset, and within an onset from the highest pitch down.

Every function is pure: it reads arrays and writes into arrays the caller passes in.
"""

import numpy as np
from numba import njit


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


@njit(cache=True, nogil=True)
def pitched_onset_order(start_tick, end_step, pitch, velocity, is_drum, order):
    """``pitch_onset_order`` without the drums: the notes a merged song's melody is chosen from, in reading order.

    Parameters
    ----------
    start_tick, end_step, pitch, velocity, order : as ``pitch_onset_order``
    is_drum : bool (N,)

    Returns
    -------
    int
        The number of pitched notes, the first entries of ``order``.
    """
    pitch_onset_order(start_tick, end_step, pitch, velocity, order)
    m = 0
    for k in range(start_tick.shape[0]):
        if not is_drum[order[k]]:
            order[m] = order[k]
            m += 1
    return m


@njit(cache=True, nogil=True, inline="always")
def _plays_before(a, b, end_step, pitch, velocity):
    """Whether note ``a`` keeps its place before ``b`` in ``pitch_onset_order``."""
    if pitch[a] != pitch[b]:
        return pitch[a] > pitch[b]
    if velocity[a] != velocity[b]:
        return velocity[a] > velocity[b]
    return end_step[a] >= end_step[b]
