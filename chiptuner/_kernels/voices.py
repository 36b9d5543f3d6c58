"""Voice reduction kernels: per-step choice of the lead, bass, harmony and drum lines.

Every kernel reads step-grid arrays (a (T, 128) piano roll with its onset plane, or
notes already on the grid) and writes one monophonic line, ``out_pitch`` (int16, -1 =
silent) and ``out_onset`` (bool), into arrays the caller passes in. A line starts a note
only where its source starts one: a voice never picks up a note in the middle.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _any_per_step(plane, out):
    """out[t] = any byte of row t of a C-contiguous (T, 128) uint8 plane is set (read by words)."""
    words = plane.reshape(plane.size).view(np.uint64)
    per_row = plane.shape[1] // 8
    for t in range(plane.shape[0]):
        found = False
        for w in range(t * per_row, (t + 1) * per_row):
            if words[w] != 0:
                found = True
                break
        out[t] = found


@njit(cache=True, nogil=True)
def mark_lead(start_tick, pitch, order, lead_start_tick, lead_pitch, lead_order, out_is_lead):
    """Flag the notes whose (onset tick, pitch) equals that of some lead note.

    Parameters
    ----------
    start_tick : np.ndarray [shape=(N,), dtype=int64]
    pitch : np.ndarray [shape=(N,), dtype=int16]
    order : np.ndarray [shape=(N,), dtype=int64]
        Permutation sorting the notes by (start_tick, pitch).
    lead_start_tick, lead_pitch, lead_order : the same for the L lead notes.
    out_is_lead : np.ndarray [shape=(N,), dtype=bool]
        Set to True for every matching note (unison doublings in other tracks included);
        the caller zeroes it.
    """
    n = order.shape[0]
    n_lead = lead_order.shape[0]
    j = 0
    for a in range(n_lead):
        k = lead_order[a]
        key_tick = lead_start_tick[k]
        key_pitch = lead_pitch[k]
        while j < n and (
            start_tick[order[j]] < key_tick or (start_tick[order[j]] == key_tick and pitch[order[j]] < key_pitch)
        ):
            j += 1
        i = j
        while i < n and start_tick[order[i]] == key_tick and pitch[order[i]] == key_pitch:
            out_is_lead[order[i]] = True
            i += 1


@njit(cache=True, nogil=True)
def note_line(start_step, end_step, pitch, order, owner, out_pitch, out_onset):
    """Write a monophonic line from notes on the grid: a later onset cuts the sounding note.

    Notes starting on one step: the highest pitch wins. Pitches outside 0-127 are skipped.

    Parameters
    ----------
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
        Exclusive end; clipped to the T steps of the output.
    pitch : np.ndarray [shape=(N,), dtype=int16]
    order : np.ndarray [shape=(N,), dtype=int64]
        Permutation sorting the notes by (start_step, pitch).
    owner : np.ndarray [shape=(T,), dtype=int64]
        Scratch, filled with -1 by the caller.
    out_pitch : np.ndarray [shape=(T,), dtype=int16]
        Filled with -1 by the caller.
    out_onset : np.ndarray [shape=(T,), dtype=bool]
        Zeroed by the caller.
    """
    n_steps = out_pitch.shape[0]
    for a in range(order.shape[0]):
        i = order[a]
        p = pitch[i]
        if p < 0 or p > 127:
            continue
        s = max(start_step[i], 0)
        e = min(end_step[i], n_steps)
        if s >= e:
            continue
        previous = owner[s]
        if previous >= 0:  # cut the note sounding here
            t = s
            while t < n_steps and owner[t] == previous:
                owner[t] = -1
                out_pitch[t] = -1
                t += 1
        for t in range(s, e):
            owner[t] = i
            out_pitch[t] = p
        out_onset[s] = True
    # an onset stays only where its note still owns the step (same-step losers are gone)
    for t in range(n_steps):
        if out_onset[t] and (owner[t] < 0 or max(start_step[owner[t]], 0) != t):
            out_onset[t] = False


@njit(cache=True, nogil=True)
def bass_line(roll, onset, out_pitch, out_onset):
    """Write the bass line: at each step the lowest new onset, unless the held bass is lower.

    Rule per step t (``prev`` = the bass pitch at t - 1):
    1. if some pitch starts at t and it is not above ``prev`` while ``prev`` still sounds,
       the lowest starting pitch begins a note (onset);
    2. else if ``prev`` still sounds, it is held (no onset);
    3. else silence (a note that started earlier is not picked up in its middle).

    Parameters
    ----------
    roll, onset : np.ndarray [shape=(T, 128), dtype=uint8, C-contiguous]
        Sounding and starting pitches of the candidate notes.
    out_pitch : np.ndarray [shape=(T,), dtype=int16]
    out_onset : np.ndarray [shape=(T,), dtype=bool]
        Written at every step.
    """
    starts = np.empty(roll.shape[0], dtype=np.bool_)
    _any_per_step(onset, starts)
    prev = -1
    for t in range(roll.shape[0]):
        lowest_onset = -1
        if starts[t]:
            for p in range(128):
                if onset[t, p]:
                    lowest_onset = p
                    break
        held = prev >= 0 and roll[t, prev] != 0
        if lowest_onset >= 0 and (not held or lowest_onset <= prev):
            out_pitch[t] = lowest_onset
            out_onset[t] = True
            prev = lowest_onset
        elif held:
            out_pitch[t] = prev
            out_onset[t] = False
        else:
            out_pitch[t] = -1
            out_onset[t] = False
            prev = -1


@njit(cache=True, nogil=True)
def harmony_line(roll, onset, lead_pitch, bass_pitch, out_pitch, out_onset):
    """Write the harmony line: the highest line under the lead, held notes kept.

    Candidates at step t are the pitches of ``roll`` other than the lead's and the bass's
    pitch at t. ``held`` = the previous harmony pitch, still sounding and not re-struck.
    Salience, best first:
    1. under the lead (anywhere when the lead rests): the highest of the pitches starting
       at t and ``held``; a start begins a note (onset), ``held`` continues without one;
    2. ``held`` above the lead;
    3. the lowest pitch starting at t above the lead (the one closest to it);
    4. silence.

    Parameters
    ----------
    roll, onset : np.ndarray [shape=(T, 128), dtype=uint8, C-contiguous]
    lead_pitch, bass_pitch : np.ndarray [shape=(T,), dtype=int16]
        -1 where silent.
    out_pitch : np.ndarray [shape=(T,), dtype=int16]
    out_onset : np.ndarray [shape=(T,), dtype=bool]
        Written at every step.
    """
    starts = np.empty(roll.shape[0], dtype=np.bool_)
    _any_per_step(onset, starts)
    prev = -1
    for t in range(roll.shape[0]):
        lead = lead_pitch[t]
        bass = bass_pitch[t]
        top = 128 if lead < 0 else lead
        below = -1
        above = -1
        any_onset = starts[t]
        for p in range(top - 1 if any_onset else -1, -1, -1):
            if onset[t, p] and p != bass:
                below = p
                break
        if lead >= 0 and any_onset:
            for p in range(lead + 1, 128):
                if onset[t, p] and p != bass:
                    above = p
                    break
        held = prev >= 0 and prev != lead and prev != bass and roll[t, prev] != 0 and onset[t, prev] == 0
        if held and (lead < 0 or prev < lead) and prev > below:
            out_pitch[t] = prev
            out_onset[t] = False
        elif below >= 0:
            out_pitch[t] = below
            out_onset[t] = True
            prev = below
        elif held:
            out_pitch[t] = prev
            out_onset[t] = False
        elif above >= 0:
            out_pitch[t] = above
            out_onset[t] = True
            prev = above
        else:
            out_pitch[t] = -1
            out_onset[t] = False
            prev = -1


@njit(cache=True, nogil=True)
def drum_line(roll, onset, priority_key, out_pitch, out_onset):
    """One drum per step: the first key of ``priority_key`` that starts at t.

    Without a hit at t, the previous drum is held while its key still sounds.

    Parameters
    ----------
    roll, onset : np.ndarray [shape=(T, 128), dtype=uint8, C-contiguous]
        Drum notes already mapped to their class keys.
    priority_key : np.ndarray [shape=(K,), dtype=int16]
        Class keys, most important first.
    out_pitch : np.ndarray [shape=(T,), dtype=int16]
    out_onset : np.ndarray [shape=(T,), dtype=bool]
        Written at every step.
    """
    prev = -1
    for t in range(roll.shape[0]):
        hit = -1
        for k in range(priority_key.shape[0]):
            key = priority_key[k]
            if onset[t, key]:
                hit = key
                break
        if hit >= 0:
            out_pitch[t] = hit
            out_onset[t] = True
            prev = hit
        elif prev >= 0 and roll[t, prev] != 0:
            out_pitch[t] = prev
            out_onset[t] = False
        else:
            out_pitch[t] = -1
            out_onset[t] = False
            prev = -1


@njit(cache=True, nogil=True)
def fold_octaves(pitch, low, high, out_pitch):
    """Move each pitch by whole octaves into [low, high]; -1 (silence) stays -1.

    Parameters
    ----------
    pitch : np.ndarray [shape=(T,), dtype=int16]
    low, high : int
        Inclusive range, at least 11 semitones wide.
    out_pitch : np.ndarray [shape=(T,), dtype=int16]
    """
    for t in range(pitch.shape[0]):
        p = pitch[t]
        if p < 0:
            out_pitch[t] = -1
            continue
        if p < low:
            p += 12 * ((low - p + 11) // 12)
        elif p > high:
            p -= 12 * ((p - high + 11) // 12)
        out_pitch[t] = p
