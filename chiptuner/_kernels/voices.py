"""Voice reduction kernel: a song's notes to the four chip voices in one pass over the grid.

``reduce`` sorts the lead notes by onset step, puts the notes on the grid (the lead's
doublings left out), sorts them into buckets by onset step (counting sorts) and walks
the steps once, choosing the lead, bass,
harmony and drum lines and folding them into their ranges. Instead of (T, 128) piano
rolls it keeps, per pitch, the latest release step of the notes started so far: a pitch
sounds at step t exactly when that release is after t, which is what a roll lookup
``roll[t, p]`` answered. A line starts a note only where its source starts one.
"""

import numpy as np
from numba import njit

#: Numerators below this in magnitude divide exactly through a float quotient (2**50).
_EXACT = 1 << 50


@njit(cache=True, nogil=True)
def _step(tick, ticks_per_beat, steps_per_beat):
    """The nearest grid step of a tick, halves rounding up (``timebase.ticks_to_steps``)."""
    return (2 * tick * steps_per_beat + ticks_per_beat) // (2 * ticks_per_beat)


@njit(cache=True, nogil=True)
def _step_fast(tick, ticks_per_beat, steps_per_beat, inverse):
    """``_step`` without an integer division where the numerator is below 2**50.

    ``inverse`` is ``1 / (2 * ticks_per_beat)``. The float quotient is then within one of
    the exact one, and one comparison of the remainder corrects it; an integer division
    costs about ten times as much.
    """
    divisor = 2 * ticks_per_beat
    numerator = 2 * tick * steps_per_beat + ticks_per_beat
    if numerator >= _EXACT or numerator <= -_EXACT:
        return numerator // divisor
    quotient = np.int64(np.floor(numerator * inverse))
    remainder = numerator - quotient * divisor
    if remainder < 0:
        quotient -= 1
    elif remainder >= divisor:
        quotient += 1
    return quotient


@njit(cache=True, nogil=True)
def quantize(start_tick, end_tick, ticks_per_beat, steps_per_beat, out_start_step, out_end_step):
    """Onset and release step of every note, as ``timebase.quantize_notes`` gives them.

    Parameters
    ----------
    start_tick, end_tick : np.ndarray [shape=(N,), dtype=int64]
    ticks_per_beat, steps_per_beat : int
        Positive.
    out_start_step, out_end_step : np.ndarray [shape=(N,), dtype=int64]
        The nearest step of each tick (halves round up); ``end = max(end, start + 1)``.

    Returns
    -------
    int
        The last release step (``out_end_step.max()``), 0 when N = 0; negative when
        every note ends before tick 0.
    """
    inverse = 1.0 / (2 * ticks_per_beat)
    last = 0
    for i in range(start_tick.shape[0]):
        s = _step_fast(start_tick[i], ticks_per_beat, steps_per_beat, inverse)
        e = max(_step_fast(end_tick[i], ticks_per_beat, steps_per_beat, inverse), s + 1)
        out_start_step[i] = s
        out_end_step[i] = e
        if i == 0 or e > last:
            last = e
    return last


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
        out_pitch[t] = _fold(pitch[t], low, high)


@njit(cache=True, nogil=True)
def _fold(p, low, high):
    if p < 0:
        return -1
    if p < low:
        p += 12 * ((low - p + 11) // 12)
    elif p > high:
        p -= 12 * ((p - high + 11) // 12)
    return p


@njit(cache=True, nogil=True)
def reduce(
    start_step,
    end_step,
    start_tick,
    pitch,
    is_drum,
    lead_start_tick,
    lead_end_tick,
    lead_pitch,
    ticks_per_beat,
    steps_per_beat,
    drum_map,
    drum_priority,
    voice_ranges,
    out_pitch,
    out_onset,
):
    """Reduce a song's notes to pulse1 (lead), pulse2 (harmony), triangle (bass) and noise.

    Lead notes go on the grid as ``quantize`` puts them; all notes are clipped to the T
    steps, and notes with a pitch (or mapped drum key) outside 0-127 or nothing left
    after clipping take no part. The rules, per step t:

    - lead: of the valid lead notes started at or before t, the one with the latest
      (start step, pitch, index) owns t while it sounds; silence after it ends (a later
      onset cuts a sounding note). Onset where that note starts.
    - accompaniment: the non-drum notes whose (onset tick, pitch) is no lead note's.
    - bass (``prev`` = bass pitch at t - 1, ``held`` = ``prev`` sounds at t): the lowest
      pitch starting at t begins a note if not ``held`` or not above ``prev``; else
      ``held`` goes on; else silence.
    - harmony: candidates are pitches other than the lead's and bass's at t; ``held`` =
      the previous harmony pitch, sounding and not starting again at t. Best first: the
      highest of the starts below the lead (anywhere when it rests) and ``held`` under
      the lead (a start has an onset, ``held`` none); ``held`` above the lead; the
      lowest start above the lead; silence.
    - noise: drum notes keyed by ``drum_map``; the first key of ``drum_priority`` that
      starts at t, else the previous key while it sounds, else silence.
    - lead, harmony and bass are then folded by octaves into ``voice_ranges``.

    Parameters
    ----------
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
        The notes on the grid (``quantize``).
    start_tick : np.ndarray [shape=(N,), dtype=int64]
        Onset ticks, for matching the lead's doublings.
    pitch : np.ndarray [shape=(N,), dtype=int16]
    is_drum : np.ndarray [shape=(N,), dtype=bool]
    lead_start_tick, lead_end_tick : np.ndarray [shape=(L,), dtype=int64]
    lead_pitch : np.ndarray [shape=(L,), dtype=int16]
    ticks_per_beat, steps_per_beat : int
        Positive.
    drum_map : np.ndarray [shape=(128,), dtype=int16]
        Drum key of each channel-10 key (pitches clipped to 0-127 first); -1 = no drum.
    drum_priority : np.ndarray [shape=(K,), dtype=int16]
        Drum keys, most important first.
    voice_ranges : np.ndarray [shape=(3, 2), dtype=int64]
        Inclusive (low, high) of pulse1, pulse2 and triangle, each at least 11 wide.
    out_pitch : np.ndarray [shape=(T, 4), dtype=int16]
        Pitch of pulse1, pulse2, triangle, noise per step; -1 = silent. Written in full.
    out_onset : np.ndarray [shape=(T, 4), dtype=bool]
        Written in full.

    Returns
    -------
    int
        Onsets of pulse2, triangle and noise together (0: no accompaniment).
    """
    return reduce_folded(
        start_step,
        end_step,
        start_tick,
        pitch,
        is_drum,
        lead_start_tick,
        lead_end_tick,
        lead_pitch,
        ticks_per_beat,
        steps_per_beat,
        drum_map,
        drum_priority,
        fold_table(voice_ranges),
        out_pitch,
        out_onset,
    )


@njit(cache=True, nogil=True)
def fold_table(voice_ranges):
    """``fold[v, p]``: pitch p folded into the range of voice v (``_fold``); ``fold[v, 128] = -1``.

    Parameters
    ----------
    voice_ranges : np.ndarray [shape=(V, 2), dtype=int64]

    Returns
    -------
    np.ndarray [shape=(V, 129), dtype=int16]
        Index -1 (128) maps silence to silence.
    """
    fold = np.empty((voice_ranges.shape[0], 129), dtype=np.int16)
    for v in range(voice_ranges.shape[0]):
        fold[v, 128] = -1
        for p in range(128):
            fold[v, p] = _fold(p, voice_ranges[v, 0], voice_ranges[v, 1])
    return fold


@njit(cache=True, nogil=True)
def reduce_folded(
    start_step,
    end_step,
    start_tick,
    pitch,
    is_drum,
    lead_start_tick,
    lead_end_tick,
    lead_pitch,
    ticks_per_beat,
    steps_per_beat,
    drum_map,
    drum_priority,
    fold,
    out_pitch,
    out_onset,
):
    """``reduce`` with the octave folding given as ``fold_table(voice_ranges)``."""
    n_steps = out_pitch.shape[0]
    n_notes = start_step.shape[0]
    n_lead = lead_start_tick.shape[0]
    inverse = 1.0 / (2 * ticks_per_beat)

    # lead notes by onset step (a counting sort): lead bucket c is
    # lead_order[lead_bucket_end[c - 1]:lead_bucket_end[c]] after the fill; and the
    # lead note that owns each onset step, the latest by (start step, pitch, index)
    lead_step = np.empty(n_lead, dtype=np.int64)
    lead_end = np.empty(n_lead, dtype=np.int64)
    lead_at = np.full(n_steps, -1, dtype=np.int64)
    lead_bucket_end = np.zeros(n_steps + 1, dtype=np.int64)
    for j in range(n_lead):
        s = _step_fast(lead_start_tick[j], ticks_per_beat, steps_per_beat, inverse)
        lead_step[j] = s
        c = max(s, 0)
        if c >= n_steps:
            continue
        lead_bucket_end[c + 1] += 1
        p = lead_pitch[j]
        if p < 0 or p > 127:
            continue
        e = min(max(_step_fast(lead_end_tick[j], ticks_per_beat, steps_per_beat, inverse), s + 1), n_steps)
        if c >= e:
            continue
        lead_end[j] = e
        b = lead_at[c]
        if b < 0 or s > lead_step[b] or (s == lead_step[b] and p >= lead_pitch[b]):
            lead_at[c] = j
    for t in range(n_steps):
        lead_bucket_end[t + 1] += lead_bucket_end[t]
    lead_order = np.empty(lead_bucket_end[n_steps], dtype=np.int64)
    for j in range(n_lead):
        c = max(lead_step[j], 0)
        if c < n_steps:
            lead_order[lead_bucket_end[c]] = j
            lead_bucket_end[c] += 1

    # notes on the grid as one code per note: the pitch (0-127), 128 + the drum key for
    # drums, -1 for no part (out of range, nothing left after clipping, or a doubling of a
    # lead note: its onset tick and pitch). The step loop then reads each bucket's codes and
    # releases in a row, without going back to the note arrays.
    note_step = np.empty(n_notes, dtype=np.int64)
    note_end = np.empty(n_notes, dtype=np.int64)
    code = np.empty(n_notes, dtype=np.int16)
    bucket_end = np.zeros(n_steps + 1, dtype=np.int64)
    for i in range(n_notes):
        s = max(start_step[i], 0)
        e = min(end_step[i], n_steps)
        p = pitch[i]
        drum = is_drum[i]
        if drum:
            p = drum_map[min(max(p, 0), 127)]
        elif s < e:
            tick = start_tick[i]
            for k in range(lead_bucket_end[s - 1] if s > 0 else 0, lead_bucket_end[s]):
                j = lead_order[k]
                if lead_start_tick[j] == tick and lead_pitch[j] == p:
                    p = -1
                    break
        if p < 0 or p > 127 or s >= e:
            code[i] = -1
            continue
        code[i] = p + 128 if drum else p
        note_step[i] = s
        note_end[i] = e
        bucket_end[s + 1] += 1
    # counting sort by onset step: after the fill, bucket t is [bucket_end[t-1], bucket_end[t])
    for t in range(n_steps):
        bucket_end[t + 1] += bucket_end[t]
    n_sorted = bucket_end[n_steps]
    sorted_code = np.empty(n_sorted, dtype=np.int16)
    sorted_end = np.empty(n_sorted, dtype=np.int64)
    for i in range(n_notes):
        c = code[i]
        if c >= 0:
            k = bucket_end[note_step[i]]
            sorted_code[k] = c
            sorted_end[k] = note_end[i]
            bucket_end[note_step[i]] = k + 1

    # per pitch: release step of the notes started so far, and the last step it started on
    until = np.zeros(128, dtype=np.int64)
    struck = np.full(128, -1, dtype=np.int64)
    drum_until = np.zeros(128, dtype=np.int64)
    drum_struck = np.full(128, -1, dtype=np.int64)
    lead_note = -1
    lead_release = 0
    bass = -1
    harmony = -1
    drum = -1
    begin = 0
    n_accompaniment = 0
    for t in range(n_steps):
        end = bucket_end[t]
        # lead
        lead_onset = False
        j = lead_at[t]
        if j >= 0:
            lead_note = j
            lead_release = lead_end[j]
            lead_onset = True
        lead = lead_pitch[lead_note] if t < lead_release else -1

        if begin == end:
            # No other note starts (half the steps of the bench mix): bass, harmony and drum
            # only fall silent, at their note's release, and the harmony also where the lead
            # takes its pitch (it never shares the bass's: the bass can only fall silent too).
            if bass >= 0 and until[bass] <= t:
                bass = -1
            if harmony >= 0 and (until[harmony] <= t or harmony == lead):
                harmony = -1
            if drum >= 0 and drum_until[drum] <= t:
                drum = -1
            out_pitch[t, 0] = fold[0, lead]
            out_pitch[t, 1] = fold[1, harmony]
            out_pitch[t, 2] = fold[2, bass]
            out_pitch[t, 3] = drum
            out_onset[t, 0] = lead_onset
            out_onset[t, 1] = False
            out_onset[t, 2] = False
            out_onset[t, 3] = False
            continue

        # the starts: the lowest, and the harmony's candidates, two distinct pitches on each
        # side of the lead (the best may be the bass, chosen next), in one pass
        top = 128 if lead < 0 else lead
        lowest = 128
        below = below_next = -1
        above = above_next = 128
        any_drum = False
        for k in range(begin, end):
            p = sorted_code[k]
            if p >= 128:
                p -= 128
                drum_until[p] = max(drum_until[p], sorted_end[k])
                drum_struck[p] = t
                any_drum = True
                continue
            until[p] = max(until[p], sorted_end[k])
            struck[p] = t
            if p < lowest:
                lowest = p
            if p < top:
                if p > below:
                    below_next = below
                    below = p
                elif below_next < p < below:
                    below_next = p
            elif p > top:
                if p < above:
                    above_next = above
                    above = p
                elif above < p < above_next:
                    above_next = p

        # bass
        bass_onset = False
        held = bass >= 0 and until[bass] > t
        if lowest < 128 and (not held or lowest <= bass):
            bass = lowest
            bass_onset = True
        elif not held:
            bass = -1

        # harmony: the candidates without the bass's pitch
        if below == bass:
            below = below_next
        if above == bass:
            above = above_next
        harmony_onset = False
        h = harmony
        held = h >= 0 and h != lead and h != bass and until[h] > t and struck[h] != t
        if held and (lead < 0 or h < lead) and h > below:
            pass
        elif below >= 0:
            harmony = below
            harmony_onset = True
        elif held:
            pass
        elif above < 128:
            harmony = above
            harmony_onset = True
        else:
            harmony = -1

        # noise
        drum_onset = False
        if any_drum:
            for k in range(drum_priority.shape[0]):
                key = drum_priority[k]
                if key >= 0 and key <= 127 and drum_struck[key] == t:
                    drum = key
                    drum_onset = True
                    break
        if not drum_onset and drum >= 0 and drum_until[drum] <= t:
            drum = -1

        out_pitch[t, 0] = fold[0, lead]
        out_pitch[t, 1] = fold[1, harmony]
        out_pitch[t, 2] = fold[2, bass]
        out_pitch[t, 3] = drum
        out_onset[t, 0] = lead_onset
        out_onset[t, 1] = harmony_onset
        out_onset[t, 2] = bass_onset
        out_onset[t, 3] = drum_onset
        n_accompaniment += harmony_onset + bass_onset + drum_onset
        begin = end
    return n_accompaniment


@njit(cache=True, nogil=True)
def reduce_ticks(
    start_tick,
    end_tick,
    pitch,
    is_drum,
    lead_start_tick,
    lead_end_tick,
    lead_pitch,
    ticks_per_beat,
    steps_per_beat,
    drum_map,
    drum_priority,
    fold,
    out_pitch,
    out_onset,
):
    """``quantize`` then ``reduce_folded``, in one call, for a grid length T known beforehand.

    Parameters and result as ``reduce``, with the notes' ``start_tick`` and ``end_tick``
    in place of their steps and ``fold_table(voice_ranges)`` in place of ``voice_ranges``.
    """
    n_notes = start_tick.shape[0]
    start_step = np.empty(n_notes, dtype=np.int64)
    end_step = np.empty(n_notes, dtype=np.int64)
    quantize(start_tick, end_tick, ticks_per_beat, steps_per_beat, start_step, end_step)
    return reduce_folded(
        start_step,
        end_step,
        start_tick,
        pitch,
        is_drum,
        lead_start_tick,
        lead_end_tick,
        lead_pitch,
        ticks_per_beat,
        steps_per_beat,
        drum_map,
        drum_priority,
        fold,
        out_pitch,
        out_onset,
    )
