"""Slow, obviously right references for the kernels.

Every kernel test compares the kernel against the function of the same job here, on
seeded random inputs and on edge cases. Nothing here is fast; everything here is plain.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from chiptuner._kernels import synth as synth_kernel
from chiptuner.types import DEFAULT_US_PER_BEAT, Notes


def notes_from_mido(mid) -> Notes:
    """Pair note-ons and note-offs of a ``mido.MidiFile`` with chiptuner's documented policy.

    Per track and per (channel, pitch): a note-on while the key sounds ends the sounding
    note there (retrigger); a note-off (or note-on with velocity 0) ends the sounding
    note, or is ignored if none sounds; a key still sounding at the end of the track ends
    at the track's last event. The program of a note is the last program change on its
    channel, in any track, at a tick <= its onset (ties in file order). Notes are sorted
    by onset, stably.
    """
    program_changes = []  # (tick, track, index, channel, program)
    for track_index, track in enumerate(mid.tracks):
        tick = 0
        for event_index, msg in enumerate(track):
            tick += msg.time
            if msg.type == "program_change":
                program_changes.append((tick, track_index, event_index, msg.channel, msg.program))
    program_changes.sort()

    def program_at(channel: int, tick: int) -> int:
        program = 0
        for change_tick, _, _, change_channel, change_program in program_changes:
            if change_tick > tick:
                break
            if change_channel == channel:
                program = change_program
        return program

    rows = []  # (start, end, pitch, velocity, channel, track)
    for track_index, track in enumerate(mid.tracks):
        tick = 0
        sounding: dict[tuple[int, int], tuple[int, int]] = {}
        for msg in track:
            tick += msg.time
            if msg.type not in ("note_on", "note_off"):
                continue
            key = (msg.channel, msg.note)
            if key in sounding:
                start, velocity = sounding.pop(key)
                rows.append((start, tick, msg.note, velocity, msg.channel, track_index))
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[key] = (tick, msg.velocity)
        for (channel, pitch), (start, velocity) in sounding.items():
            rows.append((start, tick, pitch, velocity, channel, track_index))

    rows.sort(key=lambda row: (row[5], row[0]))  # file order within a track is by onset
    rows.sort(key=lambda row: row[0])
    n = len(rows)
    start = np.array([r[0] for r in rows], dtype=np.int64).reshape(n)
    end = np.array([r[1] for r in rows], dtype=np.int64).reshape(n)
    pitch = np.array([r[2] for r in rows], dtype=np.int16).reshape(n)
    velocity = np.array([r[3] for r in rows], dtype=np.int16).reshape(n)
    channel = np.array([r[4] for r in rows], dtype=np.int8).reshape(n)
    track = np.array([r[5] for r in rows], dtype=np.int32).reshape(n)
    programs = [program_at(int(c), int(s)) for c, s in zip(channel, start, strict=True)]
    program = np.array(programs, dtype=np.int16).reshape(n)
    return Notes(start, end, pitch, velocity, channel, program, track, channel == 9)


def tempo_from_mido(mid) -> tuple[np.ndarray, np.ndarray]:
    """(tick, us_per_beat) of every set_tempo, sorted by tick, last one wins on a tick, starting at 0."""
    changes = []
    for track_index, track in enumerate(mid.tracks):
        tick = 0
        for event_index, msg in enumerate(track):
            tick += msg.time
            if msg.type == "set_tempo":
                changes.append((tick, track_index, event_index, msg.tempo))
    changes.sort()
    by_tick: dict[int, int] = {0: DEFAULT_US_PER_BEAT}
    for tick, _, _, tempo in changes:
        by_tick[tick] = tempo
    ticks = sorted(by_tick)
    return np.array(ticks, dtype=np.int64), np.array([by_tick[t] for t in ticks], dtype=np.int64)


# --- voices: the per-step voice choice of chiptuner._kernels.voices -------------------------


def mark_lead(start_tick, pitch, lead_start_tick, lead_pitch) -> np.ndarray:
    """True for each note whose (onset tick, pitch) is that of some lead note."""
    keys = {(int(s), int(p)) for s, p in zip(lead_start_tick, lead_pitch, strict=True)}
    return np.array([(int(s), int(p)) in keys for s, p in zip(start_tick, pitch, strict=True)], dtype=bool)


def note_line(start_step, end_step, pitch, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Monophonic line: at step t the note with the latest (start, pitch, index) that started
    at or before t owns it if it still sounds; else silence (earlier notes were cut)."""
    notes = []
    for i, (s, e, p) in enumerate(zip(start_step, end_step, pitch, strict=True)):
        s0, e0 = max(int(s), 0), min(int(e), n_steps)
        if 0 <= p <= 127 and s0 < e0:
            notes.append(((int(s), int(p), i), s0, e0, int(p)))
    out_pitch = np.full(n_steps, -1, dtype=np.int16)
    out_onset = np.zeros(n_steps, dtype=bool)
    for t in range(n_steps):
        started = [n for n in notes if n[1] <= t]
        if not started:
            continue
        _, s0, e0, p = max(started)
        if t < e0:
            out_pitch[t] = p
            out_onset[t] = s0 == t
    return out_pitch, out_onset


def bass_line(roll, onset) -> tuple[np.ndarray, np.ndarray]:
    """Lowest starting pitch unless the held bass is lower; held bass; else silence."""
    n_steps = len(roll)
    out_pitch = np.full(n_steps, -1, dtype=np.int16)
    out_onset = np.zeros(n_steps, dtype=bool)
    prev = -1
    for t in range(n_steps):
        starting = [p for p in range(128) if onset[t][p]]
        held = prev >= 0 and bool(roll[t][prev])
        if starting and (not held or min(starting) <= prev):
            prev = min(starting)
            out_pitch[t], out_onset[t] = prev, True
        elif held:
            out_pitch[t] = prev
        else:
            prev = -1
    return out_pitch, out_onset


def harmony_line(roll, onset, lead_pitch, bass_pitch) -> tuple[np.ndarray, np.ndarray]:
    """Best of: the highest of (starts, held previous harmony pitch) under the lead (anywhere if
    the lead rests); the held pitch above the lead; the lowest start above the lead; silence.
    Lead and bass pitch are never chosen."""
    n_steps = len(roll)
    out_pitch = np.full(n_steps, -1, dtype=np.int16)
    out_onset = np.zeros(n_steps, dtype=bool)
    prev = -1
    for t in range(n_steps):
        lead, bass = int(lead_pitch[t]), int(bass_pitch[t])
        starting = [p for p in range(128) if onset[t][p] and p != bass and p != lead]
        below = [p for p in starting if lead < 0 or p < lead]
        above = [p for p in starting if lead >= 0 and p > lead]
        held = prev >= 0 and prev not in (lead, bass) and bool(roll[t][prev]) and not onset[t][prev]
        held_under = held and (lead < 0 or prev < lead)
        if below or held_under:
            best = max(below + ([prev] if held_under else []))
            out_onset[t] = not (held_under and best == prev)
            out_pitch[t] = prev = best
        elif held:
            out_pitch[t] = prev
        elif above:
            prev = min(above)
            out_pitch[t], out_onset[t] = prev, True
        else:
            prev = -1
    return out_pitch, out_onset


def drum_line(roll, onset, priority_key) -> tuple[np.ndarray, np.ndarray]:
    """First key of the priority list hit at t; else the previous drum while it sounds."""
    n_steps = len(roll)
    out_pitch = np.full(n_steps, -1, dtype=np.int16)
    out_onset = np.zeros(n_steps, dtype=bool)
    prev = -1
    for t in range(n_steps):
        hits = [int(k) for k in priority_key if onset[t][k]]
        if hits:
            prev = hits[0]
            out_pitch[t], out_onset[t] = prev, True
        elif prev >= 0 and roll[t][prev]:
            out_pitch[t] = prev
        else:
            prev = -1
    return out_pitch, out_onset


def fold_octaves(pitch, low: int, high: int) -> np.ndarray:
    """Each pitch moved by octaves, one at a time, into [low, high]; -1 stays."""
    out = []
    for p in pitch:
        p = int(p)
        while p >= 0 and p < low:
            p += 12
        while p > high:
            p -= 12
        out.append(p)
    return np.array(out, dtype=np.int16).reshape(len(out))


def quantize(start_tick, end_tick, ticks_per_beat: int, steps_per_beat: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest step of each tick (halves up) in Python integers; a note lasts >= 1 step."""

    def step(tick):
        return (2 * int(tick) * steps_per_beat + ticks_per_beat) // (2 * ticks_per_beat)

    start = [step(t) for t in start_tick]
    end = [max(step(t), s + 1) for t, s in zip(end_tick, start, strict=True)]
    return np.array(start, dtype=np.int64).reshape(len(start)), np.array(end, dtype=np.int64).reshape(len(end))


def reduce_voices(
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
    n_steps,
) -> tuple[np.ndarray, np.ndarray]:
    """The four voices by the rules one at a time: lead line, full piano rolls of the
    accompaniment (non-drum, not doubling a lead note) and of the mapped drums, then the
    bass, harmony and drum lines on those rolls and the octave folding."""
    pitch = np.asarray(pitch)
    is_drum = np.asarray(is_drum, dtype=bool)
    lead_start, lead_end = quantize(lead_start_tick, lead_end_tick, ticks_per_beat, steps_per_beat)
    lead_line, lead_onset = note_line(lead_start, lead_end, lead_pitch, n_steps)
    accompaniment = ~(is_drum | mark_lead(start_tick, pitch, lead_start_tick, lead_pitch))
    roll, onset = piano_roll_reference(
        start_step[accompaniment], end_step[accompaniment], pitch[accompaniment], n_steps
    )
    bass, bass_onset = bass_line(roll, onset)
    harmony, harmony_onset = harmony_line(roll, onset, lead_line, bass)
    keys = np.array([drum_map[min(max(int(p), 0), 127)] for p in pitch[is_drum]], dtype=np.int64)
    keys = keys.reshape(len(keys))
    keep = keys >= 0
    drum_roll, drum_onset = piano_roll_reference(
        start_step[is_drum][keep], end_step[is_drum][keep], keys[keep], n_steps
    )
    drums, drums_onset = drum_line(drum_roll, drum_onset, drum_priority)
    out_pitch = np.stack(
        [fold_octaves(line, *map(int, voice_ranges[v])) for v, line in enumerate((lead_line, harmony, bass))] + [drums],
        axis=1,
    ).reshape(n_steps, 4)
    out_onset = np.stack([lead_onset, harmony_onset, bass_onset, drums_onset], axis=1).reshape(n_steps, 4)
    return out_pitch, out_onset


# --- rhythm: tempo and beat phase from onsets -------------------------------------------------


def onset_impulses_reference(onset_sec: np.ndarray, weight: np.ndarray, bin_sec: float) -> tuple[list, list]:
    """(bins, summed weights) of the usable onsets, bins counted from the earliest, ascending."""
    usable = [(float(t), float(w)) for t, w in zip(onset_sec, weight, strict=True) if np.isfinite(t) and w > 0]
    if not usable:
        return [], []
    first = min(t for t, _ in usable)
    total: dict[int, float] = {}
    for t, w in usable:
        b = int(np.floor((t - first) / bin_sec + 0.5))
        total[b] = total.get(b, 0.0) + w
    bins = sorted(total)
    return bins, [total[b] for b in bins]


def dense_autocorrelation_reference(bins: list, weights: list, n_lag: int) -> np.ndarray:
    """acf[k] = sum_t env[t] * env[t + k] of the dense binned envelope."""
    acf = np.zeros(n_lag)
    if not bins:
        return acf
    env = np.zeros(bins[-1] + 1)
    for b, w in zip(bins, weights, strict=True):
        env[b] += w
    for k in range(n_lag):
        for t in range(len(env) - k):
            acf[k] += env[t] * env[t + k]
    return acf


def smooth_lags_reference(acf: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Normalised Gaussian average over lags >= 1 within 3 sigma (lag 0 never contributes)."""
    half = int(np.ceil(3 * sigma_bins))
    out = np.zeros(len(acf))
    for k in range(len(acf)):
        if half <= 0:
            out[k] = acf[k]
            continue
        num = den = 0.0
        for j in range(max(k - half, 1), min(k + half, len(acf) - 1) + 1):
            g = np.exp(-0.5 * ((j - k) / sigma_bins) ** 2)
            num += g * acf[j]
            den += g
        out[k] = num / den if den > 0 else 0.0
    return out


def tempo_salience_reference(acf_smooth, min_lag, max_lag, harmonic_weight, prior_lag, prior_sigma_oct):
    """Harmonic sum over lags k * 2**(h - H//2) (linear interpolation, 0 outside) times the prior."""
    n = len(acf_smooth)
    out = np.zeros(n)
    for k in range(max(min_lag, 1), min(max_lag, n - 1) + 1):
        total = 0.0
        for h, w in enumerate(harmonic_weight):
            x = k * 2.0 ** (h - len(harmonic_weight) // 2)
            if 0 <= x <= n - 1:
                total += w * np.interp(x, np.arange(n), acf_smooth)
        if prior_lag > 0:
            total *= np.exp(-0.5 * (np.log2(k / prior_lag) / prior_sigma_oct) ** 2)
        out[k] = total
    return out


def phase_histogram_reference(onset_sec, weight, period_sec, n_phase):
    """Onset weight on n_phase circular bins of the beat (nearest bin, wrapping)."""
    hist = np.zeros(n_phase)
    for t, w in zip(onset_sec, weight, strict=True):
        if np.isfinite(t) and w > 0:
            frac = t / period_sec - np.floor(t / period_sec)
            hist[int(np.floor(frac * n_phase + 0.5)) % n_phase] += w
    return hist


def bar_accent_reference(onset_sec, weight, period_sec, first_beat_sec, tolerance_sec, beats_per_bar):
    """Onset weight within tolerance of beat k (k >= 0), summed by k mod beats_per_bar."""
    accent = np.zeros(beats_per_bar)
    for t, w in zip(onset_sec, weight, strict=True):
        if not (np.isfinite(t) and w > 0):
            continue
        x = (t - first_beat_sec) / period_sec
        k = np.floor(x + 0.5)
        if k >= 0 and abs(x - k) * period_sec <= tolerance_sec:
            accent[int(k) % beats_per_bar] += w
    return accent


# --- melody (chiptuner._kernels.melody_*) -----------------------------------------------


def melody_skyline(start_step, end_step, pitch) -> np.ndarray:
    """Per onset step the highest note (first of equals), unless a higher kept note still sounds."""
    keep = np.zeros(len(pitch), dtype=bool)
    cur_end, cur_pitch = -1, -1
    for s in sorted(set(int(x) for x in start_step)):
        at = [i for i in range(len(pitch)) if start_step[i] == s]
        top = at[0]
        for i in at:
            if pitch[i] > pitch[top]:
                top = i
        if s < cur_end and pitch[top] < cur_pitch:
            continue
        keep[top] = True
        cur_end, cur_pitch = int(end_step[top]), int(pitch[top])
    return keep


def melody_grid_steps(start_tick, end_tick, ticks_per_beat, steps_per_beat) -> tuple[np.ndarray, np.ndarray]:
    """Nearest step by exact fractions (halves up), every note at least one step long."""

    def step(tick):
        return int(np.floor(Fraction(int(tick) * steps_per_beat, ticks_per_beat) + Fraction(1, 2)))

    start = [step(t) for t in start_tick]
    end = [max(step(t), s + 1) for t, s in zip(end_tick, start, strict=True)]
    return np.array(start, dtype=np.int64), np.array(end, dtype=np.int64)


def melody_onset_order(start_tick) -> np.ndarray:
    """Python's stable sort by onset."""
    return np.array(sorted(range(len(start_tick)), key=lambda i: int(start_tick[i])), dtype=np.int64)


def melody_pitch_onset_order(start_tick, end_step, pitch, velocity) -> np.ndarray:
    """Python's sort by onset, then pitch, velocity and release from the highest down."""
    key = lambda i: (int(start_tick[i]), -int(pitch[i]), -int(velocity[i]), -int(end_step[i]))  # noqa: E731
    return np.array(sorted(range(len(start_tick)), key=key), dtype=np.int64)


def melody_choose_tracks(start_step, end_step, pitch, group, n_groups, mono_penalty, mono_limit, segment_step):
    """Group scores note by note, then the main group and the stand-in per segment."""
    n = len(start_step)
    n_seg = int(start_step[-1]) // segment_step + 1 if n else 0
    if n == 0 or n_groups < 2:
        return -1, np.full(n_seg, -1, dtype=np.int32)
    value = []
    for g in range(n_groups):
        members = [i for i in range(n) if group[i] == g]
        poly, last_start, last_end = 0, None, -1
        for k, i in enumerate(members):
            s = int(start_step[i])
            if k > 0 and (s == last_start or s < last_end - 1):
                poly += 1
            last_start, last_end = s, max(last_end, int(end_step[i])) if s < last_end else int(end_step[i])
        f = poly / max(len(members) - 1, 1)
        height = 2.0 ** ((np.mean([float(pitch[i]) for i in members]) - 60) / 12) if members else 0.0
        value.append(len(members) * max(1 - mono_penalty * f, 0.0) * height if f <= mono_limit else -1.0)
    best = -1
    for g in range(n_groups):
        if value[g] > 0 and (best < 0 or value[g] > value[best]):
            best = g
    if best < 0:
        return -1, np.full(n_seg, -1, dtype=np.int32)
    seg = np.full(n_seg, best, dtype=np.int32)
    for k in range(n_seg):
        present = {int(group[i]) for i in range(n) if int(start_step[i]) // segment_step == k}
        if best in present:
            continue
        options = [g for g in range(n_groups) if g in present and value[g] > 0]
        if options:
            seg[k] = max(options, key=lambda g: (value[g], -g))
    return best, seg


def melody_note_features(start_step, end_step, pitch) -> np.ndarray:
    """The columns of ``_kernels.melody_features.FEATURE_NAMES``, note by note over all notes."""
    n = len(pitch)
    out = np.zeros((n, 18))
    if n == 0:
        return out
    fill, max_dur, span = 16, 64, 32
    n_steps = int(start_step[-1]) + max_dur + 2
    top = [-1] * n_steps
    for i in range(n):
        for t in range(int(start_step[i]), min(int(end_step[i]), int(start_step[i]) + fill)):
            top[t] = max(top[t], int(pitch[i]))
    song_p80 = sorted(int(p) for p in pitch)[(n * 4) // 5]
    onset_steps = sorted({int(x) for x in start_step})
    for i in range(n):
        s, e, p = int(start_step[i]), int(end_step[i]), int(pitch[i])
        ec = min(e, s + max_dur)
        same = [int(pitch[j]) for j in range(n) if start_step[j] == s]
        later = [int(pitch[j]) for j in range(n) if s < start_step[j] < min(e, s + fill)]
        during = [j for j in range(n) if s < start_step[j] < ec]
        succ = [abs(int(pitch[j]) - p) for j in range(n) if start_step[j] == e]
        before = [t for t in onset_steps if t < s]
        pred = [abs(int(pitch[j]) - p) for j in range(n) if before and start_step[j] == before[-1]]
        window = [top[t] for t in range(max(s - span, 0), min(s + span, n_steps)) if top[t] >= 0]
        local = sum(window) / len(window) if window else p
        near = sum(1 for j in range(n) if max(s - 8, 0) <= start_step[j] < min(s + 8, n_steps))
        out[i] = [
            1.0,
            (p - 60) / 12,
            float(p == max(same)),
            min(sum(1 for q in same if q > p), 4),
            min(len(same) - 1, 6),
            float(p - 12 in same),
            float(p + 12 in same),
            (top[s] - p) / 12,
            float(top[s] == p),
            np.log2(ec - s),
            min(len(during), 8),
            float(any(q > p for q in later)),
            (p - local) / 12,
            (p - song_p80) / 12,
            min(succ + [12]) / 12,
            min(pred + [12]) / 12,
            near / 16,
            min(len({int(start_step[j]) for j in during}), 8),
        ]
    return out


def melody_greedy_line(start_step, pitch, score, leap_cost, window_step) -> np.ndarray:
    """Per onset step, the first best note after the leap cost, if positive."""
    chosen = np.zeros(len(pitch), dtype=bool)
    last = None
    for s in sorted({int(x) for x in start_step}):
        at = [i for i in range(len(pitch)) if start_step[i] == s]
        values = []
        for i in at:
            v = float(score[i])
            if last is not None and s - last[0] <= window_step:
                v -= leap_cost * abs(int(pitch[i]) - last[1])
            values.append(v)
        k = int(np.argmax(values))
        if values[k] > 0:
            chosen[at[k]] = True
            last = (s, int(pitch[at[k]]))
    return chosen


def melody_thin_onsets(pitch, onset, window_step) -> tuple[np.ndarray, np.ndarray]:
    """First note start per aligned window kept and held; a rest ends the held note."""
    out_pitch, out_onset = [], []
    held, used = -1, set()
    for t, p in enumerate(int(x) for x in pitch):
        if p < 0:
            held = -1
            out_pitch.append(-1)
            out_onset.append(False)
            continue
        starts = bool(onset[t]) or t == 0 or pitch[t - 1] < 0
        new = t // window_step not in used and (starts or held < 0)
        if new:
            held = p
            used.add(t // window_step)
        out_pitch.append(held)
        out_onset.append(new)
    return np.array(out_pitch, dtype=np.int16), np.array(out_onset, dtype=bool)


def melody_button_lanes(pitch, onset, recenter_step) -> tuple[np.ndarray, np.ndarray]:
    """Contour to lanes 0-4 as documented in ``chiptuner.melody.to_buttons``."""
    lanes, starts_out = [], []
    prev_pitch, prev_lane, rest_run, sounding = None, 2, 0, False
    for t, p in enumerate(int(x) for x in pitch):
        if p < 0:
            lanes.append(-1)
            starts_out.append(False)
            rest_run += 1
            sounding = False
            continue
        starts = bool(onset[t]) or not sounding or p != prev_pitch
        if starts:
            if prev_pitch is None or rest_run >= recenter_step:
                lane = 2
            else:
                d = p - prev_pitch
                size = 0 if d == 0 else 1 if abs(d) <= 4 else 2
                lane = min(max(prev_lane + (size if d > 0 else -size), 0), 4)
            prev_lane, prev_pitch = lane, p
        rest_run, sounding = 0, True
        lanes.append(prev_lane)
        starts_out.append(starts)
    return np.array(lanes, dtype=np.int8), np.array(starts_out, dtype=bool)


def piano_roll_reference(start_step, end_step, pitch, n_steps):
    """(roll, onset) by plain loops: 1 on every sounding (step, pitch), onset on each note's first step."""
    roll = np.zeros((n_steps, 128), dtype=np.uint8)
    onset = np.zeros((n_steps, 128), dtype=np.uint8)
    for s, e, p in zip(start_step.tolist(), end_step.tolist(), pitch.tolist(), strict=True):
        if not 0 <= p <= 127:
            continue
        steps = [t for t in range(s, e) if 0 <= t < n_steps]
        for t in steps:
            roll[t, p] = 1
        if steps and steps[0] == s:
            onset[s, p] = 1
        elif steps:
            onset[steps[0], p] = 1
    return roll, onset


def arranger_pair_offsets(n_tokens) -> np.ndarray:
    """First ``pair_table`` row of pulse1, pulse2 and the triangle, then the row count.

    Each pitched voice's block: one row per token (rest, an unused hold row, each new
    note), then one per note it can hold.
    """
    sizes = [n + (n - 2) for n in n_tokens[:3]]
    return np.array([0, *np.cumsum(sizes).tolist()], dtype=np.int64)


def arranger_logits_reference(model, rows_per_step, condition_rows=None, tokens=None, *, sampling_order=(0, 2, 1, 3)):
    """Logits of every step by plain float64 algebra on the folded weights (GRU in torch's gate order).

    ``rows_per_step`` is a list of row-index lists, one per step; the state starts at zero.
    ``condition_rows`` (T, n) are each step's setting rows (style, energy, voices on): the
    step sums them with its own rows. With ``tokens`` (T, 4), each voice's logits are the
    ones it is drawn (or scored) from: the voices drawn before it in ``sampling_order``
    add the ``pair_table`` row of the token they play on that step (a hold is heard as the
    note held, a hold after silence as a rest). Without ``tokens``, the logits before any
    voice is drawn.
    """
    from chiptuner.model.arranger import N_TOKENS, TOKEN_OFFSET  # noqa: PLC0415 (the layout, not the kernels)

    in_table = model.in_table.astype(np.float64)
    w_hh = model.w_hh_t.astype(np.float64).T
    w_out = model.w_out_t.astype(np.float64).T
    b_ih, b_hh, b_out = (x.astype(np.float64) for x in (model.b_ih, model.b_hh, model.b_out))
    pair_table = model.pair_table.astype(np.float64) if tokens is not None else None
    pair_offset = arranger_pair_offsets(N_TOKENS)
    hidden = model.hidden
    h = np.zeros(hidden)
    held_note = [None, None, None]  # the new-note token each pitched voice holds
    out = []
    for t, rows in enumerate(rows_per_step):
        every_row = list(rows) + ([] if condition_rows is None else list(condition_rows[t]))
        x = in_table[every_row].sum(axis=0)
        gi, direct = x[: 3 * hidden] + b_ih, x[3 * hidden :]
        gh = w_hh @ h + b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[:hidden] + gh[:hidden])))
        z = 1.0 / (1.0 + np.exp(-(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])))
        n = np.tanh(gi[2 * hidden :] + r * gh[2 * hidden :])
        h = (1.0 - z) * n + z * h
        logits = w_out @ h + b_out + direct
        if tokens is not None:
            drawn = []
            for v in sampling_order:
                for u in drawn:
                    token = int(tokens[t][u])
                    if token == 1:  # hold: the row of the note held, as a rest after silence
                        row = 0 if held_note[u] is None else N_TOKENS[u] + held_note[u] - 2
                    else:
                        row = token
                    start, end = TOKEN_OFFSET[v], TOKEN_OFFSET[v + 1]
                    logits[start:end] += pair_table[pair_offset[u] + row, start:end]
                if v < 3:
                    drawn.append(v)
            for u in range(3):
                token = int(tokens[t][u])
                if token == 0:
                    held_note[u] = None
                elif token >= 2:
                    held_note[u] = token
        out.append(logits)
    return np.array(out)


def arranger_log_prob_reference(logits, previous, target) -> np.ndarray:
    """Log p of ``target`` (T, 4) under each voice's softmax of ``logits`` (T, V), hold masked after a rest."""
    from chiptuner.model.arranger import TOKEN_OFFSET  # noqa: PLC0415

    out = np.zeros(np.shape(target), dtype=np.float64)
    for t in range(len(target)):
        for v in range(4):
            voice = np.array(logits[t][TOKEN_OFFSET[v] : TOKEN_OFFSET[v + 1]], dtype=np.float64)
            if previous[t][v] == 0:
                voice[1] = -np.inf
            out[t, v] = voice[target[t][v]] - np.logaddexp.reduce(voice)
    return out


def _melody_local_top(start_step, end_step, pitch, s, p):
    fill, max_dur, span = 16, 64, 32
    n_steps = int(start_step[-1]) + max_dur + 2
    top = [-1] * n_steps
    for i in range(len(pitch)):
        for t in range(int(start_step[i]), min(int(end_step[i]), int(start_step[i]) + fill)):
            top[t] = max(top[t], int(pitch[i]))
    window = [top[t] for t in range(max(s - span, 0), min(s + span, n_steps)) if top[t] >= 0]
    return sum(window) / len(window) if window else p


def melody_velocity_features(start_step, end_step, pitch, velocity) -> np.ndarray:
    """Columns 18 on of ``_kernels.melody_features.FEATURE_NAMES`` (velocity, beat, register), note by note."""
    n = len(pitch)
    out = np.zeros((n, 13))
    if n == 0:
        return out
    pitches = sorted(int(p) for p in pitch)
    song_median, song_p80 = pitches[n // 2], pitches[(n * 4) // 5]
    vel_median = sorted(int(v) for v in velocity)[n // 2]
    onset_steps = sorted({int(x) for x in start_step})

    def nearest_velocity(i, step):
        # velocity gap to the first note of ``step`` closest in pitch (under an octave), else 32
        best, gap = 12, 32
        for j in range(n):
            d = abs(int(pitch[j]) - int(pitch[i]))
            if start_step[j] == step and d < best:
                best, gap = d, min(abs(int(velocity[j]) - int(velocity[i])), 32)
        return gap

    for i in range(n):
        s, e, p, v = int(start_step[i]), int(end_step[i]), int(pitch[i]), int(velocity[i])
        group = [j for j in range(n) if start_step[j] == s]
        v_max = max(int(velocity[j]) for j in group)
        near = [int(velocity[j]) for j in range(n) if s - 8 <= start_step[j] <= s + 8]
        before = [t for t in onset_steps if t < s]
        local = _melody_local_top(start_step, end_step, pitch, s, p)
        out[i] = [
            (v - vel_median) / 16,
            (v - v_max) / 16,
            float(v == v_max),
            (v - sum(near) / len(near)) / 16,
            min(sum(1 for j in group if pitch[j] < p), 4),
            float(s % 4 == 0),
            float(s % 2 == 0),
            (p - song_median) / 12,
            (nearest_velocity(i, before[-1]) if before else 32) / 16,
            nearest_velocity(i, e) / 16,
            (song_p80 - song_median) / 12,
            (v_max - vel_median) / 16,
            abs(p - local) / 12,
        ]
    return out


def melody_context_features(start_step, end_step, pitch, velocity, q) -> np.ndarray:
    """The columns of ``_kernels.melody_features.CONTEXT_NAMES``, note by note over all notes."""
    n = len(pitch)
    out = np.zeros((n, 22))
    if n == 0:
        return out
    p_all = [int(x) for x in pitch]
    v_all = [int(x) for x in velocity]
    w = [float(x) * float(x) for x in q]
    sw = sum(w)
    sp = sum(wi * pi for wi, pi in zip(w, p_all, strict=True)) / max(sw, 1e-9)
    sv = sum(wi * vi for wi, vi in zip(w, v_all, strict=True)) / max(sw, 1e-9)
    sd_p = np.sqrt(sum(wi * (pi - sp) ** 2 for wi, pi in zip(w, p_all, strict=True)) / max(sw, 1e-9)) + 1
    sd_v = np.sqrt(sum(wi * (vi - sv) ** 2 for wi, vi in zip(w, v_all, strict=True)) / max(sw, 1e-9)) + 1
    steps = sorted({int(x) for x in start_step})
    best = {}  # onset step -> the first note of highest q
    for i in range(n):
        s = int(start_step[i])
        if s not in best or q[i] > q[best[s]]:
            best[s] = i

    def line_std(lo, hi):
        vs = [v_all[best[t]] for t in steps if lo <= t <= hi]
        return float(np.std(vs)) if vs else 0.0

    sound = (0.0, -1, 0)  # q, end step, pitch of the last confident line note
    for k, s in enumerate(steps):
        group = [i for i in range(n) if start_step[i] == s]
        near = [j for j in range(n) if s - 16 <= start_step[j] <= s + 16 and start_step[j] != s]
        wide = [j for j in range(n) if s - 64 <= start_step[j] <= s + 64]
        w_near = sum(w[j] for j in near)
        w_wide = sum(w[j] for j in wide)
        p_wide = sum(w[j] * p_all[j] for j in wide) / w_wide if w_wide > 1e-6 else sp
        v_wide = sum(w[j] * v_all[j] for j in wide) / w_wide if w_wide > 1e-6 else sv
        prev = best[steps[k - 1]] if k > 0 else -1
        nxt = best[steps[k + 1]] if k + 1 < len(steps) else -1
        sounding = sound[1] > s
        for i in group:
            p, v = p_all[i], v_all[i]
            other = max([q[j] for j in group if j != i], default=0.0)
            p_near = sum(w[j] * p_all[j] for j in near) / w_near if w_near > 1e-6 else None
            v_near = sum(w[j] * v_all[j] for j in near) / w_near if w_near > 1e-6 else None
            out[i] = [
                q[i],
                q[i] - max(other, 0.0),
                (p - p_near) / 12 if p_near is not None else 0.0,
                abs(p - p_near) / 12 if p_near is not None else 0.0,
                (v - v_near) / 16 if v_near is not None else 0.0,
                w_near / 8,
                abs(p - p_all[prev]) / 12 if prev >= 0 else 1.0,
                q[prev] if prev >= 0 else 0.0,
                abs(p - p_all[nxt]) / 12 if nxt >= 0 else 1.0,
                q[nxt] if nxt >= 0 else 0.0,
                sound[0] if sounding else 0.0,
                (p - sound[2]) / 12 if sounding else 0.0,
                (p - sp) / sd_p,
                (v - sv) / sd_v,
                abs(v - sv) / sd_v,
                (p_wide - sp) / sd_p,
                (v_wide - sv) / sd_v,
                w_wide / 32,
                sd_v / 16,
                sd_p / 12,
                line_std(s - 16, s + 16) / 16,
                line_std(s - 64, s + 64) / 16,
            ]
        a = best[s]
        if q[a] > 0.5 or sound[1] <= s:
            sound = (float(q[a]), int(end_step[a]), p_all[a])
    return out


def melody_mlp_logits(x, w_hidden, b_hidden, w_out, b_out) -> np.ndarray:
    """``relu(x[:, :F] @ w_hidden.T + b_hidden) @ w_out + b_out`` with F = ``w_hidden``'s columns."""
    h = np.maximum(x[:, : w_hidden.shape[1]] @ w_hidden.T + b_hidden, 0.0)
    return h @ w_out + b_out


def melody_line_logits(x, q, w_in, b_in, w_ih_first, w_ih_upper, w_hh, b_ih, b_hh, w_out, b_out) -> np.ndarray:
    """The stacked bidirectional GRU of ``line_logits`` written out with numpy, one note at a time.

    torch.nn.GRU's cell: r = sigmoid(W_ir e + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in e + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h. A layer above
    the first reads both directions of the one below.
    """
    e = np.maximum(np.concatenate([x, q[:, None]], axis=1) @ w_in.T + b_in, 0.0)
    n, hidden = len(x), w_in.shape[0]
    layer_in = e
    for layer in range(len(w_hh)):
        states = []
        for d, steps in ((0, range(n)), (1, range(n - 1, -1, -1))):
            w_ih = w_ih_first[d] if layer == 0 else w_ih_upper[layer - 1, d]
            h = np.zeros(hidden)
            hs = np.zeros((n, hidden))
            for t in steps:
                gi = w_ih @ layer_in[t] + b_ih[layer, d]
                gh = w_hh[layer, d] @ h + b_hh[layer, d]
                r = 1 / (1 + np.exp(-(gi[:hidden] + gh[:hidden])))
                z = 1 / (1 + np.exp(-(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])))
                new = np.tanh(gi[2 * hidden :] + r * gh[2 * hidden :])
                h = (1 - z) * new + z * h
                hs[t] = h
            states.append(hs)
        layer_in = np.concatenate(states, axis=1)
    return np.concatenate([layer_in, e], axis=1) @ w_out + b_out


# --- synth: the chip voices of chiptuner._kernels.synth, one sample at a time ----------------


def lfsr_bits_reference(register: int, short_mode: bool, n: int) -> tuple[list[int], int]:
    """``n`` clocks of the NES noise shift register, as a list of 15 bits (bit 0 first).

    Each clock: feedback = bit 0 xor bit 1 (long mode) or bit 6 (short mode); every bit
    moves down one place and the feedback enters at bit 14. Returns bit 0 before each
    clock (the NES mutes the channel when it is 1) and the register after the last one.
    """
    bits = [(register >> i) & 1 for i in range(15)]
    out = []
    for _ in range(n):
        out.append(bits[0])
        feedback = bits[0] ^ bits[6 if short_mode else 1]
        bits = bits[1:] + [feedback]
    return out, sum(bit << i for i, bit in enumerate(bits))


def naive_pulse_reference(freq_hz: float, duty: float, sample_rate: int, n: int) -> np.ndarray:
    """A pulse without band-limiting: 1 where the phase is under ``duty``, else 0 (it aliases)."""
    phase = (np.arange(n) * (freq_hz / sample_rate)) % 1.0
    return (phase < duty).astype(np.float64)


def naive_triangle_reference(freq_hz: float, sample_rate: int, n: int) -> np.ndarray:
    """The NES 32-stair triangle without band-limiting, 0-1: 15, 14, ..., 0, 0, 1, ..., 15 over a cycle."""
    stair = np.floor(((np.arange(n) * (freq_hz / sample_rate)) % 1.0) * 32).astype(int)
    return np.where(stair < 16, 15 - stair, stair - 16) / 15.0


def nes_mix_reference(pulse1, pulse2, triangle, noise):
    """The NES mixer's formulas as the wiki writes them, levels 0-15 (0 where a sum is silent)."""
    pulse1, pulse2, triangle, noise = (np.asarray(a, np.float64) for a in (pulse1, pulse2, triangle, noise))
    p = pulse1 + pulse2
    with np.errstate(divide="ignore"):
        pulse_out = np.where(p > 0, 95.88 / (8128.0 / np.where(p > 0, p, 1.0) + 100.0), 0.0)
        tnd = triangle / 8227.0 + noise / 12241.0
        tnd_out = np.where(tnd > 0, 159.79 / (1.0 / np.where(tnd > 0, tnd, 1.0) + 100.0), 0.0)
    return pulse_out + tnd_out


def dc_block_reference(x, sample_rate: int, corner_hz: float) -> np.ndarray:
    """First-order high-pass (RC), from rest: y[i] = a (y[i-1] + x[i] - x[i-1]), a = RC / (RC + dt)."""
    rc = 1.0 / (2 * np.pi * corner_hz)
    dt = 1.0 / sample_rate
    a = rc / (rc + dt)
    y = np.zeros(len(x))
    x_prev = y_prev = 0.0
    for i, value in enumerate(np.asarray(x, np.float64)):
        y_prev = a * (y_prev + value - x_prev)
        x_prev = value
        y[i] = y_prev
    return y


def _bspline_step(x: float) -> float:
    """The integral from -inf to x of the cubic B-spline (support -2..2), as truncated powers."""
    return sum((-1) ** k * math.comb(4, k) * max(x + 2 - k, 0.0) ** 4 for k in range(5)) / 24


def blep_reference(x: float) -> float:
    """What a band-limited unit step at time 0 adds to the ideal step, at time x (samples)."""
    return _bspline_step(x) - (1.0 if x >= 0 else 0.0)


def _edges_residual(phase: float, dt: float, edge_phase: float) -> float:
    """Residual at ``phase`` of a unit step recurring at ``edge_phase`` each cycle (all instances within 2 samples)."""
    since = ((phase - edge_phase) % 1.0) / dt  # samples since the last instance
    period = 1.0 / dt
    total = 0.0
    for m in range(-3, 4):
        x = since + m * period
        if abs(x) < 2:
            total += blep_reference(x)
    return total


def chip_period_reference(voice: int, pitch: int) -> int:
    """The timer period of a MIDI key on a pitched voice, folded by octaves into the chip's range."""
    divider = 16 if voice < 2 else 32
    low, high = (8, 0x7FF) if voice < 2 else (2, 0x7FF)
    while True:
        period = math.floor(1789773.0 / (divider * 440.0 * 2 ** ((pitch - 69) / 12)) - 1 + 0.5)
        if period > high:
            pitch += 12
        elif period < low:
            pitch -= 12
        else:
            return period


def output_filter_reference(x, sample_rate: int) -> np.ndarray:
    """The console's output filters in turn: high-pass 90 Hz, high-pass 440 Hz, low-pass 14 kHz (all RC)."""
    y = dc_block_reference(dc_block_reference(x, sample_rate, 90.0), sample_rate, 440.0)
    rc = 1.0 / (2 * np.pi * 14000.0)
    b = (1.0 / sample_rate) / (rc + 1.0 / sample_rate)
    out = np.zeros(len(y))
    previous = 0.0
    for i, value in enumerate(y):
        previous += b * (value - previous)
        out[i] = previous
    return out


def chip_synth_reference(events, drum_table, n_frames: int, sample_rate: int) -> np.ndarray:
    """The synth as its kernel's docstring describes it, one sample and one voice at a time.

    ``events``: (sample, voice, pitch, velocity, duty) tuples, applied in order before
    their sample. Pitch -1 releases, -2 only sets the duty; velocity 0 releases.
    """
    k = synth_kernel
    frame_rate = 1789773.0 / 29780.5
    voices = [
        {"gate": 0.0, "freq": 0.0, "phase": 0.0, "peak": 0, "level": 0.0, "duty": 0, "frames": 0.0} for _ in range(4)
    ]
    voices[0]["duty"], voices[1]["duty"] = k.DEFAULT_DUTY
    noise = voices[3]
    noise.update(register=1, short=False, decay_sec=0.0)
    ramp = 15.0 / (k.RAMP_SEC * sample_rate)
    by_sample: dict[int, list] = {}
    for event in events:
        by_sample.setdefault(int(event[0]), []).append(event)

    def toward(level, target):
        return min(level + ramp, target) if level < target else max(level - ramp, target)

    mix = np.zeros(n_frames)
    for i in range(n_frames):
        for _, v, pitch, velocity, duty in by_sample.get(i, []):
            if duty >= 0 and v in (0, 1):
                voices[v]["duty"] = duty
            volume = min(15, max(1, int(math.floor(velocity * 15 / 127 + 0.5)))) if velocity > 0 else 0
            if pitch == -1 or (pitch >= 0 and volume == 0):
                voices[v]["gate"] = 0.0
            elif pitch >= 0 and v == 3:
                rate, short, decay_sec, gain = drum_table[pitch]
                noise.update(gate=1.0, freq=rate, short=bool(short), decay_sec=decay_sec, frames=0.0)
                noise["peak"] = min(15, max(1, math.floor(volume * gain + 0.5)))
            elif pitch >= 0:
                divider = 16 if v < 2 else 32
                freq = 1789773.0 / (divider * (chip_period_reference(v, pitch) + 1))
                voices[v].update(gate=1.0, freq=freq, peak=volume if v < 2 else 15, frames=0.0)
        level = [0.0, 0.0, 0.0, 0.0]
        for v in range(3):
            voice = voices[v]
            if v < 2:  # the pulse envelope: down a level every 3 frames, 3 levels, held (never under 1)
                step = min(int(voice["frames"]) // 3, 3)
                target = voice["gate"] * max(voice["peak"] - step, 1) if voice["peak"] > 0 else 0.0
                if voice["peak"] > 0:
                    voice["frames"] += frame_rate / sample_rate
            else:
                target = voice["gate"] * voice["peak"]
            voice["level"] = toward(voice["level"], target)
            if voice["level"] <= 0:
                continue
            phase, dt = voice["phase"], voice["freq"] / sample_rate
            if v < 2 and dt >= 0.5:
                value = k.DUTY_CYCLES[voice["duty"]]
            elif v < 2:  # naive pulse plus the residuals of its rising (phase 0) and falling (phase = duty) edge
                duty = k.DUTY_CYCLES[voice["duty"]]
                value = 1.0 if phase < duty else 0.0
                value += _edges_residual(phase, dt, 0.0) - _edges_residual(phase, dt, duty)
            elif 32 * dt < 1:  # 32 stairs, the residual of every stair's edge
                height = [15 - s if s < 16 else s - 16 for s in range(32)]
                stair = min(int(phase * 32), 31)
                value = height[stair]
                for s in range(32):
                    value += (height[s] - height[s - 1]) * _edges_residual(phase, dt, s / 32)
                value /= 15.0
            else:
                value = abs(2 * phase - 1)
            level[v] = voice["level"] * value
            voice["phase"] = (phase + dt) % 1.0
        if noise["peak"] > 0:
            # The drum envelope: the peak falling 60 dB in decay_sec, on the 4-bit grid, frame by frame.
            frames = max(noise["decay_sec"] * frame_rate, 1.0)
            target = math.floor(noise["peak"] * 10.0 ** (-3.0 * int(noise["frames"]) / frames) + 0.5)
            noise["frames"] += frame_rate / sample_rate
            noise["level"] = toward(noise["level"], target)
            clocks = noise["freq"] / sample_rate
            if noise["level"] > 0 and clocks > 0:
                # The share of this sample's time during which bit 0 is clear.
                on_time, time_left = 0.0, clocks
                while noise["phase"] + time_left >= 1.0:
                    span = 1.0 - noise["phase"]
                    on_time += span * (1 - (noise["register"] & 1))
                    time_left -= span
                    _, noise["register"] = lfsr_bits_reference(noise["register"], noise["short"], 1)
                    noise["phase"] = 0.0
                on_time += time_left * (1 - (noise["register"] & 1))
                noise["phase"] += time_left
                level[3] = noise["level"] * on_time / clocks
        mix[i] = float(nes_mix_reference(level[0], level[1], level[2], level[3]))
    return (output_filter_reference(mix, sample_rate) * k.OUTPUT_GAIN).astype(np.float32)


def control_changes_from_mido(mid, controller: int) -> list[tuple[int, int, int]]:
    """(tick, channel, value) of every control change of ``controller``, track by track in file order."""
    out = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "control_change" and msg.control == controller:
                out.append((tick, msg.channel, msg.value))
    return out


# --- chip files: the chip model's frame loop and the NSF driver's stream ---------------------------


def voice_frames_reference(notes, n_frames: int, *, one_shot: bool, cut_repeats: bool):
    """Period, duty and volume of one voice on each frame, frame by frame.

    ``notes``: (start_frame, end_frame, period, duty, envelope levels) by onset. On a frame,
    the note sounding is the last one started; it plays its envelope from its onset (the last
    level held) until its end frame or the next onset, whichever comes first, or, one-shot,
    until the next onset; a note that so ends on the next one's onset with the same period,
    two frames long or more, ends a frame early when ``cut_repeats``. Before the first note:
    the first note's period and duty, silent.
    """
    period, duty, volume = [0] * n_frames, [0] * n_frames, [0] * n_frames
    for f in range(n_frames):
        started = [i for i, note in enumerate(notes) if note[0] <= f]
        if not notes:
            continue
        i = started[-1] if started else 0
        start, end, p, d, levels = notes[i]
        period[f], duty[f] = p, d
        if not started:
            continue
        following = notes[i + 1] if i + 1 < len(notes) else None
        stop = following[0] if following else n_frames
        last = stop if one_shot else min(end, stop)
        if cut_repeats and following and last == following[0] and following[2] == p and last - start >= 2:
            last -= 1
        if f < last:
            volume[f] = levels[min(f - start, len(levels) - 1)]
    return period, duty, volume


def nsf_stream_reference(writes_by_frame: list[list[tuple[int, int]]]) -> bytes:
    """The driver's stream: each frame's writes as (register, value) pairs, then one byte $80 + k that
    ends the frame and skips the k frames without writes that follow (at most 126; longer silences
    take more bytes, each a frame of its own), and $FF at the end."""
    out = bytearray()
    n = len(writes_by_frame)
    f = 0
    while f < n:
        for register, value in writes_by_frame[f]:
            out += bytes([register, value])
        g = f + 1
        while g < n and not writes_by_frame[g]:
            g += 1
        covered = g - f
        while covered > 127:
            out.append(0x80 + 126)
            covered -= 127
        out.append(0x80 + covered - 1)
        f = g
    out.append(0xFF)
    return bytes(out)
