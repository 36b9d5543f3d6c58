"""Standard MIDI File parsing, byte by byte, with every read bounds-checked.

``parse_smf`` turns file bytes into parallel note arrays plus tempo, time-signature,
program-change and track tables, written into arrays the caller allocates. It never
raises: problems come back as an error code (the file is refused) or as repair flags
(the file was read, something was recovered).
"""

import numpy as np
from numba import njit

# Slots of the ``info`` output array.
INFO_NOTES = 0
INFO_TEMPOS = 1
INFO_TIME_SIGNATURES = 2
INFO_PROGRAMS = 3
INFO_TRACKS = 4
INFO_FORMAT = 5
INFO_DIVISION = 6
INFO_REPAIRS = 7
INFO_ERROR = 8
INFO_ERROR_POS = 9
INFO_HEADER_TRACKS = 10
INFO_RIFF = 11
INFO_SIZE = 12
# Filled by ``read_smf`` only.
INFO_TEMPO_MAP = 13
INFO_END_TICK = 14
INFO_MAX_US_PER_BEAT = 15

# Error codes (the file is refused).
ERR_NONE = 0
ERR_TOO_SHORT = 1
ERR_NOT_MIDI = 2
ERR_BAD_HEADER = 3
ERR_BAD_DIVISION = 4
ERR_TOO_MANY_NOTES = 5
ERR_BAD_RIFF = 6

# Repair flags (the file was read; what had to be recovered).
REP_MISSING_END_OF_TRACK = 1 << 0
REP_TRUNCATED_CHUNK = 1 << 1
REP_BAD_EVENT = 1 << 2
REP_STRAY_NOTE_OFF = 1 << 3
REP_UNRELEASED_NOTE = 1 << 4
REP_RETRIGGERED_NOTE = 1 << 5
REP_DATA_BYTE_CLIPPED = 1 << 6
REP_TRACK_COUNT = 1 << 7
REP_WRONG_CHUNK_LENGTH = 1 << 8
REP_SKIPPED_GARBAGE = 1 << 9
REP_BAD_META = 1 << 10
REP_LONG_VLQ = 1 << 11

_MAX_VLQ_BYTES = 4

#: Microseconds per beat where a file sets no tempo (120 BPM); ``types.DEFAULT_US_PER_BEAT``.
DEFAULT_US_PER_BEAT = 500_000
#: Channel index of General MIDI percussion (channel 10).
DRUM_CHANNEL = 9


@njit(cache=True, nogil=True)
def _u32_be(data, p):
    return (
        (np.int64(data[p]) << 24) | (np.int64(data[p + 1]) << 16) | (np.int64(data[p + 2]) << 8) | np.int64(data[p + 3])
    )


@njit(cache=True, nogil=True)
def _u32_le(data, p):
    return (
        (np.int64(data[p + 3]) << 24) | (np.int64(data[p + 2]) << 16) | (np.int64(data[p + 1]) << 8) | np.int64(data[p])
    )


@njit(cache=True, nogil=True)
def _is_tag(data, p, end, a, b, c, d):
    return p + 4 <= end and data[p] == a and data[p + 1] == b and data[p + 2] == c and data[p + 3] == d


@njit(cache=True, nogil=True)
def _is_chunk_id(data, p, end):
    # Four printable ASCII letters: the shape of any chunk id (MTrk, or an unknown chunk to skip).
    if p + 8 > end:
        return False
    for k in range(4):
        c = data[p + k]
        if c < 0x20 or c > 0x7E:
            return False
    return True


@njit(cache=True, nogil=True)
def _read_vlq(data, p, end):
    """(value, new position); position -1 when the quantity runs past ``end``, -2 past 4 bytes."""
    value = np.int64(0)
    for _ in range(_MAX_VLQ_BYTES):
        if p >= end:
            return value, -1
        b = data[p]
        p += 1
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, p
    return value, -2


@njit(cache=True, nogil=True)
def _find_smf(data, info):
    """(start, end) of the SMF bytes, unwrapping a RIFF RMID container; start -1 on error."""
    n = data.shape[0]
    if n < 14:
        info[INFO_ERROR] = ERR_TOO_SHORT
        return -1, n
    if _is_tag(data, 0, n, 0x52, 0x49, 0x46, 0x46):  # RIFF
        info[INFO_RIFF] = 1
        p = 12
        while p + 8 <= n:
            size = _u32_le(data, p + 4)
            if _is_tag(data, p, n, 0x64, 0x61, 0x74, 0x61):  # "data"
                end = min(n, p + 8 + size)
                return p + 8, end
            p += 8 + size + (size & 1)
        info[INFO_ERROR] = ERR_BAD_RIFF
        return -1, n
    return 0, n


@njit(cache=True, nogil=True)
def parse_smf(
    data,
    note_start_tick,
    note_end_tick,
    note_pitch,
    note_velocity,
    note_channel,
    note_track,
    tempo_tick,
    tempo_us_per_beat,
    time_signature_tick,
    time_signature_numerator,
    time_signature_denominator,
    program_tick,
    program_channel,
    program_value,
    track_name_pos,
    track_name_len,
    info,
):
    """Parse SMF bytes into the caller's output arrays.

    Parameters
    ----------
    data : np.ndarray [shape=(B,), dtype=uint8]
    note_* : np.ndarray [shape=(N_max,)]
        Outputs; the capacity ``N_max`` is the note cap (more notes is ERR_TOO_MANY_NOTES).
        int64 ticks, int16 pitch/velocity, int8 channel, int32 track.
    tempo_*, time_signature_*, program_*, track_name_* : np.ndarray
        Outputs with room for every event the bytes could hold (B // 6 + 1 is enough).
    info : np.ndarray [shape=(16,), dtype=int64]
        Counts, header fields, repair flags and error code, at the ``INFO_*`` slots.

    Notes
    -----
    Pairing policy per track and (channel, pitch): a note-on while the key sounds ends the
    sounding note there (retrigger); a note-off or velocity-0 note-on ends it, or is ignored
    when nothing sounds (stray); a key still sounding when the track ends is released at
    the track's last event. Running status survives meta and sysex events. Data bytes
    above 127 are clipped to 127. A malformed event ends its track (what came before is
    kept). A chunk longer than the bytes left is read up to the end of the bytes. Every
    track chunk present is read, whatever the header's count says.
    """
    info[:] = 0
    start, end = _find_smf(data, info)
    if start < 0:
        return
    if not _is_tag(data, start, end, 0x4D, 0x54, 0x68, 0x64):  # MThd
        info[INFO_ERROR] = ERR_NOT_MIDI
        return
    if start + 14 > end:
        info[INFO_ERROR] = ERR_BAD_HEADER
        return
    header_len = _u32_be(data, start + 4)
    if header_len < 6 or start + 8 + header_len > end:
        info[INFO_ERROR] = ERR_BAD_HEADER
        return
    info[INFO_FORMAT] = (np.int64(data[start + 8]) << 8) | data[start + 9]
    info[INFO_HEADER_TRACKS] = (np.int64(data[start + 10]) << 8) | data[start + 11]
    division = (np.int64(data[start + 12]) << 8) | data[start + 13]
    info[INFO_DIVISION] = division
    if division == 0:
        info[INFO_ERROR] = ERR_BAD_DIVISION
        return

    max_notes = note_start_tick.shape[0]
    max_events = tempo_tick.shape[0]
    max_tracks = track_name_pos.shape[0]
    n_notes = 0
    n_tempos = 0
    n_time_signatures = 0
    n_programs = 0
    n_tracks = 0
    repairs = np.int64(0)
    open_note = np.full(16 * 128, -1, dtype=np.int64)

    p = start + 8 + header_len
    while p + 8 <= end:
        if not _is_tag(data, p, end, 0x4D, 0x54, 0x72, 0x6B):  # not MTrk
            if _is_chunk_id(data, p, end):
                # An unknown chunk (the standard says: skip it).
                p += 8 + _u32_be(data, p + 4)
                continue
            # Garbage where a chunk should start: look for the next track chunk.
            q = p + 1
            while q + 8 <= end and not _is_tag(data, q, end, 0x4D, 0x54, 0x72, 0x6B):
                q += 1
            if q + 8 > end:
                break
            repairs |= REP_SKIPPED_GARBAGE
            p = q
        if n_tracks >= max_tracks:
            break
        body = p + 8
        declared_end = body + _u32_be(data, p + 4)
        if declared_end > end:
            repairs |= REP_TRUNCATED_CHUNK
            parse_end = end
            trusted_length = False
        elif declared_end == end or _is_chunk_id(data, declared_end, end):
            parse_end = declared_end
            trusted_length = True
        else:
            # The declared length lands nowhere sensible: read on to the end-of-track event.
            parse_end = end
            trusted_length = False

        track = n_tracks
        n_tracks += 1
        track_name_pos[track] = -1
        track_name_len[track] = 0
        first_note = n_notes
        tick = np.int64(0)
        running = 0
        q = body
        ended = False
        while q < parse_end:
            delta, q = _read_vlq(data, q, parse_end)
            if q < 0:
                # A delta over 4 bytes is how corrupt files claim hours of silence: stop the track there.
                repairs |= REP_LONG_VLQ if q == -2 else REP_BAD_EVENT
                break
            tick += delta
            if q >= parse_end:
                repairs |= REP_BAD_EVENT
                break
            status = np.int64(data[q])
            if status < 0x80:
                if running == 0:
                    repairs |= REP_BAD_EVENT
                    break
                status = running
            else:
                q += 1
                if status < 0xF0:
                    running = status
            kind = status & 0xF0
            if status < 0xF0:
                n_data = 1 if (kind == 0xC0 or kind == 0xD0) else 2
                if q + n_data > parse_end:
                    repairs |= REP_BAD_EVENT
                    break
                d1 = np.int64(data[q])
                d2 = np.int64(data[q + 1]) if n_data == 2 else np.int64(0)
                q += n_data
                if d1 > 127 or d2 > 127:
                    repairs |= REP_DATA_BYTE_CLIPPED
                    d1 = min(d1, 127)
                    d2 = min(d2, 127)
                channel = status & 0x0F
                if kind == 0x90 and d2 > 0:
                    key = channel * 128 + d1
                    sounding = open_note[key]
                    if sounding >= 0:
                        note_end_tick[sounding] = tick
                        repairs |= REP_RETRIGGERED_NOTE
                    if n_notes >= max_notes:
                        info[INFO_ERROR] = ERR_TOO_MANY_NOTES
                        info[INFO_NOTES] = n_notes
                        return
                    note_start_tick[n_notes] = tick
                    note_end_tick[n_notes] = -1
                    note_pitch[n_notes] = d1
                    note_velocity[n_notes] = d2
                    note_channel[n_notes] = channel
                    note_track[n_notes] = track
                    open_note[key] = n_notes
                    n_notes += 1
                elif kind == 0x80 or kind == 0x90:
                    key = channel * 128 + d1
                    sounding = open_note[key]
                    if sounding >= 0:
                        note_end_tick[sounding] = tick
                        open_note[key] = -1
                    else:
                        repairs |= REP_STRAY_NOTE_OFF
                elif kind == 0xC0:
                    if n_programs < max_events:
                        program_tick[n_programs] = tick
                        program_channel[n_programs] = channel
                        program_value[n_programs] = d1
                        n_programs += 1
            elif status == 0xFF or status == 0xF0 or status == 0xF7:
                meta_type = np.int64(-1)
                if status == 0xFF:
                    if q >= parse_end:
                        repairs |= REP_BAD_EVENT
                        break
                    meta_type = data[q]
                    q += 1
                length, q = _read_vlq(data, q, parse_end)
                if q < 0 or q + length > parse_end:
                    repairs |= REP_LONG_VLQ if q == -2 else REP_BAD_EVENT
                    break
                if meta_type == 0x2F:
                    q += length
                    ended = True
                    break
                if meta_type == 0x51:
                    us_per_beat = (
                        (np.int64(data[q]) << 16) | (np.int64(data[q + 1]) << 8) | np.int64(data[q + 2])
                        if length >= 3
                        else np.int64(0)
                    )
                    if us_per_beat <= 0:
                        repairs |= REP_BAD_META
                    elif n_tempos < max_events:
                        tempo_tick[n_tempos] = tick
                        tempo_us_per_beat[n_tempos] = us_per_beat
                        n_tempos += 1
                elif meta_type == 0x58:
                    if length >= 2 and data[q] > 0 and data[q + 1] <= 10:
                        if n_time_signatures < max_events:
                            time_signature_tick[n_time_signatures] = tick
                            time_signature_numerator[n_time_signatures] = data[q]
                            time_signature_denominator[n_time_signatures] = 1 << data[q + 1]
                            n_time_signatures += 1
                    else:
                        repairs |= REP_BAD_META
                elif meta_type == 0x03 and track_name_pos[track] < 0:
                    track_name_pos[track] = q
                    track_name_len[track] = length
                q += length
            else:
                # System common / realtime bytes: fixed lengths as the standard gives them.
                n_data = 2 if status == 0xF2 else (1 if (status == 0xF1 or status == 0xF3) else 0)
                if q + n_data > parse_end:
                    repairs |= REP_BAD_EVENT
                    break
                q += n_data

        if not ended:
            repairs |= REP_MISSING_END_OF_TRACK
        # Release what still sounds at the track's last event.
        for i in range(first_note, n_notes):
            if note_end_tick[i] < 0:
                note_end_tick[i] = tick
                open_note[note_channel[i] * 128 + note_pitch[i]] = -1
                repairs |= REP_UNRELEASED_NOTE
        if trusted_length:
            p = declared_end
        else:
            if declared_end <= end and not ended:
                repairs |= REP_WRONG_CHUNK_LENGTH
            elif declared_end <= end and q != declared_end:
                repairs |= REP_WRONG_CHUNK_LENGTH
            p = q if q > body else declared_end

    if n_tracks != info[INFO_HEADER_TRACKS]:
        repairs |= REP_TRACK_COUNT
    info[INFO_NOTES] = n_notes
    info[INFO_TEMPOS] = n_tempos
    info[INFO_TIME_SIGNATURES] = n_time_signatures
    info[INFO_PROGRAMS] = n_programs
    info[INFO_TRACKS] = n_tracks
    info[INFO_REPAIRS] = repairs
    info[INFO_SIZE] = end - start


@njit(cache=True, nogil=True)
def assign_programs(
    note_start_tick, note_channel, note_track, program_tick, program_channel, program_value, out_program
):
    """Program in force at each note's onset: the last change on its channel at a tick <= onset.

    Notes come grouped by track and sorted by onset within a track (as ``parse_smf`` writes
    them); program changes in file order. Ties between changes on one tick go to the later
    one in file order.
    """
    order = np.argsort(program_tick, kind="mergesort")
    current = np.zeros(16, dtype=np.int16)
    n = note_start_tick.shape[0]
    i = 0
    while i < n:
        track = note_track[i]
        current[:] = 0
        j = 0
        while i < n and note_track[i] == track:
            start = note_start_tick[i]
            while j < order.shape[0] and program_tick[order[j]] <= start:
                current[program_channel[order[j]]] = program_value[order[j]]
                j += 1
            out_program[i] = current[note_channel[i]]
            i += 1


@njit(cache=True, nogil=True)
def read_smf(data, note_tick, note_small, note_channel, note_track, note_is_drum, event_tick, event_small, info):
    """Everything ``read_midi`` needs from the bytes, in one call.

    ``parse_smf``, then the programs, drum flags, sorted time signatures, the tempo map,
    the song's extent and the track names' bytes without their padding.

    Parameters
    ----------
    data : np.ndarray [shape=(B,), dtype=uint8]
    note_tick : np.ndarray [shape=(2, N_max), dtype=int64]
        Rows: start tick, end tick.
    note_small : np.ndarray [shape=(3, N_max), dtype=int16]
        Rows: pitch, velocity, program in force at the onset (``assign_programs``).
    note_channel : np.ndarray [shape=(N_max,), dtype=int8]
    note_track : np.ndarray [shape=(N_max,), dtype=int32]
    note_is_drum : np.ndarray [shape=(N_max,), dtype=bool]
        Channel index 9.
    event_tick : np.ndarray [shape=(5, E_max + 1), dtype=int64]
        Rows: tempo-map tick, its microseconds per beat, time-signature tick (``parse_smf``
        sees ``E_max`` columns; the extra one leaves room for the tempo map's tick 0); then
        per track the byte position (-1 = none) and length of its name, leading and
        trailing NUL and space bytes left out (E_max + 1 is room for every track chunk).
    event_small : np.ndarray [shape=(2, E_max + 1), dtype=int16]
        Rows: time-signature numerator and denominator.
    info : np.ndarray [shape=(16,), dtype=int64]
        As ``parse_smf``, plus ``INFO_TEMPO_MAP`` (entries of the tempo map),
        ``INFO_END_TICK`` (last release, 0 without notes) and ``INFO_MAX_US_PER_BEAT``.

    Notes
    -----
    Time signatures are sorted by tick (stable). The tempo map is sorted by tick (stable);
    of changes on one tick the last wins; it starts at tick 0 (120 BPM until the first
    change). SMPTE files (division >= 0x8000) and files without tempo events get the
    single default entry.
    """
    max_events = event_tick.shape[1] - 1
    program_tick = np.empty(max_events, dtype=np.int64)
    program_channel = np.empty(max_events, dtype=np.int8)
    program_value = np.empty(max_events, dtype=np.int16)
    parse_smf(
        data, note_tick[0, :], note_tick[1, :], note_small[0, :], note_small[1, :], note_channel, note_track,
        event_tick[0, :max_events], event_tick[1, :max_events], event_tick[2, :max_events],
        event_small[0, :max_events], event_small[1, :max_events],
        program_tick, program_channel, program_value, event_tick[3, :], event_tick[4, :], info,
    )  # fmt: skip
    if info[INFO_ERROR] != ERR_NONE:
        return
    for k in range(info[INFO_TRACKS]):
        p = event_tick[3, k]
        if p < 0:
            continue
        length = event_tick[4, k]
        while length > 0 and (data[p] == 0 or data[p] == 0x20):
            p += 1
            length -= 1
        while length > 0 and (data[p + length - 1] == 0 or data[p + length - 1] == 0x20):
            length -= 1
        event_tick[3, k] = p
        event_tick[4, k] = length
    n = info[INFO_NOTES]
    n_programs = info[INFO_PROGRAMS]
    assign_programs(
        note_tick[0, :n], note_channel[:n], note_track[:n],
        program_tick[:n_programs], program_channel[:n_programs], program_value[:n_programs], note_small[2, :n],
    )  # fmt: skip
    end_tick = np.int64(0)
    for i in range(n):
        note_is_drum[i] = note_channel[i] == DRUM_CHANNEL
        if i == 0 or note_tick[1, i] > end_tick:
            end_tick = note_tick[1, i]
    info[INFO_END_TICK] = end_tick

    n_ts = info[INFO_TIME_SIGNATURES]
    if n_ts > 1:
        order = np.argsort(event_tick[2, :n_ts], kind="mergesort")
        ts_tick = event_tick[2, :n_ts].copy()
        ts_num = event_small[0, :n_ts].copy()
        ts_den = event_small[1, :n_ts].copy()
        for k in range(n_ts):
            event_tick[2, k] = ts_tick[order[k]]
            event_small[0, k] = ts_num[order[k]]
            event_small[1, k] = ts_den[order[k]]

    n_tempos = info[INFO_TEMPOS]
    if n_tempos == 0 or info[INFO_DIVISION] >= 0x8000:
        event_tick[0, 0] = 0
        event_tick[1, 0] = DEFAULT_US_PER_BEAT
        n_map = 1
    elif n_tempos == 1 and event_tick[0, 0] == 0:
        n_map = 1
    else:
        order = np.argsort(event_tick[0, :n_tempos], kind="mergesort")
        tempo_tick = event_tick[0, :n_tempos].copy()
        tempo_us = event_tick[1, :n_tempos].copy()
        n_map = 0
        if tempo_tick[order[0]] != 0:
            event_tick[0, 0] = 0
            event_tick[1, 0] = DEFAULT_US_PER_BEAT
            n_map = 1
        for k in range(n_tempos):
            if k + 1 < n_tempos and tempo_tick[order[k + 1]] == tempo_tick[order[k]]:
                continue  # on one tick the last change wins
            event_tick[0, n_map] = tempo_tick[order[k]]
            event_tick[1, n_map] = tempo_us[order[k]]
            n_map += 1
    info[INFO_TEMPO_MAP] = n_map
    max_us = event_tick[1, 0]
    for k in range(1, n_map):
        max_us = max(max_us, event_tick[1, k])
    info[INFO_MAX_US_PER_BEAT] = max_us


@njit(cache=True, nogil=True)
def scan_control_changes(data, controller, out_tick, out_channel, out_value, info):
    """Every control change of one controller in SMF bytes, track by track in file order.

    The same walk over chunks and events as ``parse_smf`` (RIFF unwrapping, unknown chunks
    skipped, garbage between chunks searched past, truncated chunks read to the end of the
    bytes, running status, a malformed event or a delta over 4 bytes ending its track), so
    the ticks agree with the notes ``read_smf`` reads from the same bytes.

    Parameters
    ----------
    data : np.ndarray [shape=(B,), dtype=uint8]
    controller : int
        The controller number, 0-127 (1 = modulation wheel, which the output contract uses for duty).
    out_tick : np.ndarray [shape=(K_max,), dtype=int64]
    out_channel : np.ndarray [shape=(K_max,), dtype=int8]
    out_value : np.ndarray [shape=(K_max,), dtype=int16]
        Outputs; changes beyond ``K_max`` are dropped (``B // 3 + 1`` is room for every one).
    info : np.ndarray [shape=(16,), dtype=int64]
        ``INFO_ERROR`` as ``parse_smf``; the number of changes written in ``INFO_NOTES``.
    """
    info[:] = 0
    start, end = _find_smf(data, info)
    if start < 0:
        return
    if not _is_tag(data, start, end, 0x4D, 0x54, 0x68, 0x64):  # MThd
        info[INFO_ERROR] = ERR_NOT_MIDI
        return
    if start + 14 > end:
        info[INFO_ERROR] = ERR_BAD_HEADER
        return
    header_len = _u32_be(data, start + 4)
    if header_len < 6 or start + 8 + header_len > end:
        info[INFO_ERROR] = ERR_BAD_HEADER
        return
    division = (np.int64(data[start + 12]) << 8) | data[start + 13]
    info[INFO_DIVISION] = division
    if division == 0:
        info[INFO_ERROR] = ERR_BAD_DIVISION
        return
    max_out = out_tick.shape[0]
    n_out = 0
    p = start + 8 + header_len
    while p + 8 <= end:
        if not _is_tag(data, p, end, 0x4D, 0x54, 0x72, 0x6B):  # not MTrk
            if _is_chunk_id(data, p, end):
                p += 8 + _u32_be(data, p + 4)
                continue
            q = p + 1
            while q + 8 <= end and not _is_tag(data, q, end, 0x4D, 0x54, 0x72, 0x6B):
                q += 1
            if q + 8 > end:
                break
            p = q
        body = p + 8
        declared_end = body + _u32_be(data, p + 4)
        if declared_end > end:
            parse_end = end
            trusted_length = False
        elif declared_end == end or _is_chunk_id(data, declared_end, end):
            parse_end = declared_end
            trusted_length = True
        else:
            parse_end = end
            trusted_length = False
        tick = np.int64(0)
        running = 0
        q = body
        while q < parse_end:
            delta, q = _read_vlq(data, q, parse_end)
            if q < 0:
                break
            tick += delta
            if q >= parse_end:
                break
            status = np.int64(data[q])
            if status < 0x80:
                if running == 0:
                    break
                status = running
            else:
                q += 1
                if status < 0xF0:
                    running = status
            kind = status & 0xF0
            if status < 0xF0:
                n_data = 1 if (kind == 0xC0 or kind == 0xD0) else 2
                if q + n_data > parse_end:
                    break
                if kind == 0xB0 and min(np.int64(data[q]), 127) == controller and n_out < max_out:
                    out_tick[n_out] = tick
                    out_channel[n_out] = status & 0x0F
                    out_value[n_out] = min(np.int64(data[q + 1]), 127)
                    n_out += 1
                q += n_data
            elif status == 0xFF or status == 0xF0 or status == 0xF7:
                meta_type = np.int64(-1)
                if status == 0xFF:
                    if q >= parse_end:
                        break
                    meta_type = data[q]
                    q += 1
                length, q = _read_vlq(data, q, parse_end)
                if q < 0 or q + length > parse_end:
                    break
                q += length
                if meta_type == 0x2F:
                    break
            else:
                n_data = 2 if status == 0xF2 else (1 if (status == 0xF1 or status == 0xF3) else 0)
                if q + n_data > parse_end:
                    break
                q += n_data
        if trusted_length:
            p = declared_end
        else:
            p = q if q > body else declared_end
    info[INFO_NOTES] = n_out
