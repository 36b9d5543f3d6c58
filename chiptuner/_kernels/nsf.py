"""The NSF driver's byte stream: register writes grouped into run-length frames.

Stream grammar (``chiptuner/asm/nsf_driver.s`` reads it): ``rr vv`` writes ``vv`` to
``$4000 + rr`` (``rr`` under ``$80``); a byte ``$80 + k`` (k 0-126) ends the frame and has
the driver skip the next k frames; ``$FF`` ends the song.
"""

from numba import njit

END_FRAME = 0x80
MAX_SKIP = 126
END_SONG = 0xFF


@njit(cache=True, nogil=True)
def encode_stream(frame, register, value, n_frames, out):
    """Write the stream of the writes into ``out``; returns its length.

    Parameters
    ----------
    frame, register, value : np.ndarray [shape=(W,), dtype=int64]
        Writes by frame (non-decreasing, the first on frame 0), in the order to replay.
    n_frames : int
        Frames of the song: the stream ends after frame ``n_frames - 1``.
    out : np.ndarray [shape=(>= 3 W + n_frames // 127 + 2,), dtype=uint8]
    """
    n = frame.shape[0]
    pos = 0
    i = 0
    current = 0
    while current < n_frames:
        while i < n and frame[i] == current:
            out[pos] = register[i]
            out[pos + 1] = value[i]
            pos += 2
            i += 1
        following = frame[i] if i < n else n_frames
        span = following - current  # frames this record covers: this one and the skipped ones
        while span > MAX_SKIP + 1:
            out[pos] = END_FRAME + MAX_SKIP
            pos += 1
            span -= MAX_SKIP + 1
        out[pos] = END_FRAME + span - 1
        pos += 1
        current = following
    out[pos] = END_SONG
    return pos + 1
