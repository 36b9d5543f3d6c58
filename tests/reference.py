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
