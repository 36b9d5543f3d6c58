"""Piano-roll rasterisation: notes on the step grid to a time-major (T, 128) roll."""

from numba import njit


@njit(cache=True, nogil=True)
def rasterize(start_step, end_step, pitch, roll, onset):
    """Clear ``roll`` and ``onset``, then mark each note: sounding steps and its first step.

    Parameters
    ----------
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
        Exclusive end; notes are clipped to the roll's T steps.
    pitch : np.ndarray [shape=(N,), dtype=int16]
        Notes outside 0-127 are skipped.
    roll, onset : np.ndarray [shape=(T, 128), dtype=uint8]
        Outputs; their previous content is overwritten (buffers may be reused).
    """
    roll[:, :] = 0
    onset[:, :] = 0
    n_steps = roll.shape[0]
    for i in range(start_step.shape[0]):
        p = pitch[i]
        if p < 0 or p > 127:
            continue
        s = max(start_step[i], 0)
        e = min(end_step[i], n_steps)
        if s >= e:
            continue
        onset[s, p] = 1
        for t in range(s, e):
            roll[t, p] = 1
