"""The chip model's numbers and frame loop: timer periods, envelopes, notes to per-frame registers.

The chip model (``chiptuner.chip_model``) and the synth (``_kernels.synth``) both take
their periods and envelope levels from the functions here, so they cannot drift apart.

One voice at a time. A note ``n`` of the voice sounds from frame ``start_frame[n]`` to
``end_frame[n]`` (exclusive): its volume on frame ``start_frame[n] + k`` is
``envelopes[envelope_row[n], min(k, envelope_length[envelope_row[n]] - 1)]``, so the last
value of an envelope is its sustain. A one-shot voice (the noise drums) ignores the end
frame: the hit rings through its envelope until the next onset. Between notes the voice is
silent (volume 0) and keeps the last note's period and duty, so the chip is told nothing new.
"""

import math

import numpy as np
from numba import njit

#: The NTSC 2A03's CPU clock, Hz; every timer counts its cycles.
CPU_HZ = 1789773.0
#: CPU cycles per NTSC frame (341 x 262 - 0.5 PPU dots, / 3), and so the frame rate.
CPU_CYCLES_PER_FRAME = 29780.5
FRAME_RATE_HZ = CPU_HZ / CPU_CYCLES_PER_FRAME
#: Timer period ranges the chip plays, inclusive: a pulse under 8 is muted by the sweep unit,
#: over $7FF does not fit 11 bits; a triangle under 2 runs far above hearing.
PULSE_PERIOD_MIN, PULSE_PERIOD_MAX = 8, 0x7FF
TRIANGLE_PERIOD_MIN, TRIANGLE_PERIOD_MAX = 2, 0x7FF
#: Pulse envelope: the strike level, then one level down every PULSE_DECAY_FRAMES frames,
#: PULSE_DECAY_LEVELS levels in all (never under 1), then held.
PULSE_DECAY_LEVELS = 3
PULSE_DECAY_FRAMES = 3
#: Noise timer periods (CPU cycles) of the period indices 0-15, NTSC.
NOISE_PERIODS = np.array([4, 8, 16, 32, 64, 96, 128, 160, 202, 254, 380, 508, 762, 1016, 2034, 4068], np.int64)


@njit(cache=True, nogil=True)
def key_hz(pitch):
    """Equal-tempered frequency of a MIDI key (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


@njit(cache=True, nogil=True)
def timer_period(voice, pitch):
    """(timer period, key) of a MIDI key on a pitched voice, folded by octaves into the chip's range.

    ``t = round(CPU_HZ / (d f) - 1)``, d = 16 for the pulses (voices 0, 1), 32 for the
    triangle (2), from the key's equal-tempered ``f``. A key whose period is too long is
    raised an octave at a time, one whose period is too short lowered; the key returned is
    the one played.
    """
    divider = 16.0 if voice < 2 else 32.0
    low = PULSE_PERIOD_MIN if voice < 2 else TRIANGLE_PERIOD_MIN
    high = PULSE_PERIOD_MAX if voice < 2 else TRIANGLE_PERIOD_MAX
    key = pitch
    for _ in range(24):
        period = int(math.floor(CPU_HZ / (divider * key_hz(key)) - 1.0 + 0.5))
        if period > high:
            key += 12
        elif period < low:
            key -= 12
        else:
            return period, key
    return period, key


@njit(cache=True, nogil=True)
def timer_hz(voice, period):
    """The frequency a pitched voice plays at a timer period: CPU_HZ / (16 (t + 1)), or 32 for the triangle."""
    return CPU_HZ / ((16.0 if voice < 2 else 32.0) * (period + 1.0))


@njit(cache=True, nogil=True)
def timer_periods(voice, pitch, out_period, out_key):
    """``timer_period`` of each key of ``pitch`` (int64 arrays of one length)."""
    for i in range(pitch.shape[0]):
        out_period[i], out_key[i] = timer_period(voice, pitch[i])


@njit(cache=True, nogil=True)
def pulse_level(peak, frame):
    """A pulse note's 4-bit level ``frame`` frames after its onset, struck at ``peak`` (1-15)."""
    return max(peak - min(frame // PULSE_DECAY_FRAMES, PULSE_DECAY_LEVELS), 1)


@njit(cache=True, nogil=True)
def drum_level(peak, decay_sec, frame):
    """A drum hit's 4-bit level ``frame`` frames after it: ``peak`` falling 60 dB in ``decay_sec``, rounded.

    It reaches 0 and stays there (the fall is monotonic).
    """
    frames = max(decay_sec * FRAME_RATE_HZ, 1.0)
    return int(math.floor(peak * 10.0 ** (-3.0 * frame / frames) + 0.5))


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
