"""Slow, obviously right references for the kernels.

Every kernel test compares the kernel against the function of the same job here, on
seeded random inputs and on edge cases. Nothing here is fast; everything here is plain.
"""

from __future__ import annotations

import numpy as np

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
    program = np.array([program_at(int(c), int(s)) for c, s in zip(channel, start)], dtype=np.int16).reshape(n)
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
    keys = {(int(s), int(p)) for s, p in zip(lead_start_tick, lead_pitch)}
    return np.array([(int(s), int(p)) in keys for s, p in zip(start_tick, pitch)], dtype=bool)


def note_line(start_step, end_step, pitch, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Monophonic line: at step t the note with the latest (start, pitch, index) that started
    at or before t owns it if it still sounds; else silence (earlier notes were cut)."""
    notes = []
    for i, (s, e, p) in enumerate(zip(start_step, end_step, pitch)):
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
    """Best of: highest start below the lead (any start if the lead rests); the held previous
    harmony pitch; the lowest start above the lead; silence. Lead and bass pitch excluded."""
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
        if below:
            prev = max(below)
            out_pitch[t], out_onset[t] = prev, True
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
