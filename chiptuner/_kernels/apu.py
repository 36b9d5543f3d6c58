"""The chip model's frame loop: notes on the frame grid to per-frame timer periods and volumes.

One voice at a time. A note ``n`` of the voice sounds from frame ``start_frame[n]`` to
``end_frame[n]`` (exclusive): its volume on frame ``start_frame[n] + k`` is
``envelopes[envelope_row[n], min(k, envelope_length[envelope_row[n]] - 1)]``, so the last
value of an envelope is its sustain. A one-shot voice (the noise drums) ignores the end
frame: the hit rings through its envelope until the next onset. Between notes the voice is
silent (volume 0) and keeps the last note's period and duty, so the chip is told nothing new.
"""

from numba import njit


@njit(cache=True, nogil=True)
def voice_frames(
    start_frame,
    end_frame,
    period,
    duty,
    envelope_row,
    envelopes,
    envelope_length,
    one_shot,
    cut_repeats,
    out_period,
    out_duty,
    out_volume,
):
    """Fill one voice's columns of the per-frame arrays.

    Parameters
    ----------
    start_frame, end_frame : np.ndarray [shape=(N,), dtype=int64]
        Notes of one voice by onset, ``start_frame < end_frame``; a note that runs past the
        next onset is cut there.
    period, duty, envelope_row : np.ndarray [shape=(N,), dtype=int64]
        The chip's timer period (noise: period index 0-15), duty index (noise: 1 for the
        short mode), and row of ``envelopes`` of each note.
    envelopes : np.ndarray [shape=(R, L), dtype=int64]
        Volume (0-15) per frame from the onset.
    envelope_length : np.ndarray [shape=(R,), dtype=int64]
        Frames used of each row, 1-L.
    one_shot : bool
        Ring through the envelope to the next onset, whatever the end frame.
    cut_repeats : bool
        Silence the last frame of a note followed at once by one of the same period (the
        triangle, which has no volume to restart, would otherwise run the two together).
    out_period, out_duty, out_volume : np.ndarray [shape=(F,), dtype=int64]
        Written in place; frames before the first note take its period and duty.
    """
    n_frames = out_volume.shape[0]
    n_notes = start_frame.shape[0]
    out_volume[:] = 0
    if n_notes == 0:
        out_period[:] = 0
        out_duty[:] = 0
        return
    for f in range(min(start_frame[0], n_frames)):
        out_period[f] = period[0]
        out_duty[f] = duty[0]
    for n in range(n_notes):
        begin = start_frame[n]
        stop = n_frames if n + 1 == n_notes else min(start_frame[n + 1], n_frames)
        end = stop if one_shot else min(end_frame[n], stop)
        row = envelope_row[n]
        length = envelope_length[row]
        if (
            cut_repeats
            and n + 1 < n_notes
            and end == start_frame[n + 1]
            and period[n + 1] == period[n]
            and end - begin >= 2
        ):
            end -= 1
        for f in range(begin, stop):
            out_period[f] = period[n]
            out_duty[f] = duty[n]
            if f < end:
                out_volume[f] = envelopes[row, min(f - begin, length - 1)]
