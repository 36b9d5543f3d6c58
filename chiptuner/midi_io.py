"""Reading and writing MIDI files.

``read_midi`` is a thin typed wrapper over the byte-level kernel in
``chiptuner._kernels.midi_io``; ``write_midi`` uses mido, the one place where a file
leaves the package.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import Union

import mido
import numpy as np

from chiptuner._kernels import midi_io as _k
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.timebase import ticks_to_seconds
from chiptuner.types import DEFAULT_US_PER_BEAT, Notes, Score, TempoMap, TimeSignatures

__all__ = [
    "read_midi",
    "read_control_changes",
    "write_midi",
    "events_to_track",
    "MAX_FILE_BYTES",
    "MAX_NOTES",
    "MAX_DURATION_SEC",
]

logger = logging.getLogger(__name__)

#: Files larger than this are refused before they are parsed (the largest real song
#: files are a few MB).
MAX_FILE_BYTES = 32 * 1024 * 1024
#: A song with more notes than this is refused (a long orchestral piece has ~50k).
MAX_NOTES = 1_000_000
#: A song that lasts longer than this is refused: a corrupt delta time, not music.
MAX_DURATION_SEC = 2 * 3600.0

PathOrBytes = Union[str, os.PathLike, bytes, bytearray, memoryview]  # noqa: UP007 (a runtime alias)

_ERRORS = {
    _k.ERR_TOO_SHORT: "too short to be a MIDI file ({size} bytes; a header alone is 14)",
    _k.ERR_NOT_MIDI: "not a MIDI file: it starts with {head!r}{guess}, where a MIDI file starts with b'MThd'",
    _k.ERR_BAD_HEADER: "the MThd header chunk is damaged (length field or size wrong)",
    _k.ERR_BAD_DIVISION: "the header's time division is {division}; it must be ticks per beat > 0 or SMPTE",
    _k.ERR_TOO_MANY_NOTES: (
        "more than {max_notes:,} notes: refused as absurd (raise chiptuner.midi_io.MAX_NOTES to read it)"
    ),
    _k.ERR_BAD_RIFF: "a RIFF file without a 'data' chunk holding MIDI (not an RMID file?)",
}

_REPAIRS = {
    _k.REP_MISSING_END_OF_TRACK: "track without end-of-track event",
    _k.REP_TRUNCATED_CHUNK: "chunk longer than the bytes left (file truncated)",
    _k.REP_BAD_EVENT: "malformed event: rest of its track skipped",
    _k.REP_STRAY_NOTE_OFF: "note-off without a sounding note (ignored)",
    _k.REP_UNRELEASED_NOTE: "note never released (ended at its track's last event)",
    _k.REP_RETRIGGERED_NOTE: "note-on on a sounding key (the earlier note ended there)",
    _k.REP_DATA_BYTE_CLIPPED: "data byte above 127 (clipped to 127)",
    _k.REP_TRACK_COUNT: "header's track count differs from the track chunks present",
    _k.REP_WRONG_CHUNK_LENGTH: "track chunk length wrong (read up to end-of-track)",
    _k.REP_SKIPPED_GARBAGE: "bytes between chunks skipped",
    _k.REP_BAD_META: "invalid tempo or time-signature event (ignored)",
    _k.REP_LONG_VLQ: "variable-length quantity over 4 bytes: rest of its track skipped",
}

_SIGNATURES = (
    (b"<!DOCTYPE", " (looks like HTML)"),
    (b"<html", " (looks like HTML)"),
    (b"<?xml", " (looks like XML, MusicXML perhaps)"),
    (b"\x89PNG", " (a PNG image)"),
    (b"PK\x03\x04", " (a zip archive)"),
    (b"ID3", " (an MP3 file)"),
    (b"%PDF", " (a PDF document)"),
    (b"RIFF", " (a RIFF file that is not MIDI, WAV perhaps)"),
)


def _load_bytes(source: PathOrBytes) -> tuple[np.ndarray, bytes | bytearray, str]:
    """The file's bytes as a uint8 array, as a bytes object (for the names), and a name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > MAX_FILE_BYTES:
            raise MidiFileError(
                f"<bytes>: {len(source):,} bytes is over the {MAX_FILE_BYTES:,}-byte cap for a MIDI file"
            )
        raw = source if isinstance(source, (bytes, bytearray)) else bytes(source)
        return np.frombuffer(raw, dtype=np.uint8), raw, "<bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"read_midi takes a path or bytes, not {type(source).__name__}")
    path = Path(source)
    data = _read_file(path)
    return np.frombuffer(data, dtype=np.uint8), data, str(path)


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(path: Path, mode: int) -> None:
    """Refuse a folder, a pipe, a device or a socket: only a regular file has an end the cap can trust."""
    if stat.S_ISDIR(mode):
        raise MidiFileError(f"{path}: is a folder, not a MIDI file")
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
        raise MidiFileError(f"{path}: is {what}, not a regular file; name a MIDI file")


def _read_file(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_FILE_BYTES``; anything else is refused."""
    try:
        # Stat (through symlinks) before opening: open() on a FIFO waits for a writer, and
        # opening a device can act on it.
        _check_regular(path, os.stat(path).st_mode)
        # O_NONBLOCK: should the path have become a FIFO since the stat, open() returns at once
        # and the fstat below refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            _check_regular(path, info.st_mode)
            if info.st_size > MAX_FILE_BYTES:
                raise MidiFileError(
                    f"{path}: {info.st_size:,} bytes is over the {MAX_FILE_BYTES:,}-byte cap for a MIDI file"
                )
            # Never more than the cap + 1 bytes, whatever the size says: a file can grow after the
            # stat, and /proc files report a size of 0.
            chunks, n_read = [], 0
            want = info.st_size + 1  # one read takes a whole file that is the size it says
            while n_read <= MAX_FILE_BYTES:
                chunk = os.read(fd, min(want, MAX_FILE_BYTES + 1 - n_read))
                if not chunk:
                    break
                chunks.append(chunk)
                n_read += len(chunk)
                want = 1 << 16
            data = b"".join(chunks)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such file") from None
    except PermissionError:
        raise MidiFileError(f"{path}: not readable (permission denied)") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise MidiFileError(f"{path}: too many levels of symbolic links (a link loop); name a MIDI file") from None
        raise MidiFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_FILE_BYTES:
        raise MidiFileError(f"{path}: more than {MAX_FILE_BYTES:,} bytes, over the cap for a MIDI file")
    return data


def read_midi(source: PathOrBytes) -> Score:
    """Read a Standard MIDI File (format 0, 1 or 2; plain or RIFF RMID).

    Parameters
    ----------
    source : str, os.PathLike or bytes
        A path to the file, or its bytes.

    Returns
    -------
    Score
        Notes of every track (grouped by track, by onset within a track), the tempo map
        (starting at tick 0; 120 BPM where the file has none), time signatures, ticks per
        beat and track names. ``score.repairs`` lists what had to be recovered.

    Raises
    ------
    MidiFileError
        The path is not a regular file (a folder, a FIFO, a device) or is over
        ``MAX_FILE_BYTES``, the bytes are not MIDI, the header is damaged, or the song is
        absurd (over ``MAX_NOTES`` notes or ``MAX_DURATION_SEC`` long). The message names the problem.

    Notes
    -----
    Overlapping notes of one key in one track are resolved by retriggering: a note-on on a
    key that already sounds ends the sounding note at that tick. Stray note-offs are
    ignored; notes never released end at their track's last event.
    """
    data, raw, name = _load_bytes(source)
    n_bytes = data.shape[0]
    max_notes = min(n_bytes // 3 + 1, MAX_NOTES)
    max_events = n_bytes // 5 + 1
    # One buffer per dtype and role; the containers get read-only row slices of them.
    info = np.empty(16, dtype=np.int64)
    note_tick = np.empty((2, max_notes), dtype=np.int64)  # start, end
    note_small = np.empty((3, max_notes), dtype=np.int16)  # pitch, velocity, program
    channel = np.empty(max_notes, dtype=np.int8)
    track = np.empty(max_notes, dtype=np.int32)
    is_drum = np.empty(max_notes, dtype=np.bool_)
    # tempo tick, us per beat, signature tick; track name position, length
    event_tick = np.empty((5, max_events + 1), dtype=np.int64)
    event_small = np.empty((2, max_events + 1), dtype=np.int16)  # signature numerator, denominator
    _k.read_smf(data, note_tick, note_small, channel, track, is_drum, event_tick, event_small, info)
    counts = info.tolist()
    if counts[_k.INFO_ERROR]:
        raise _refusal(data, counts, name)
    ticks_per_beat, smpte = _ticks_per_beat(counts[_k.INFO_DIVISION], name)

    n_tracks = counts[_k.INFO_TRACKS]
    track_names = tuple(
        [raw[p : p + length].decode("latin-1") if p >= 0 else "" for p, length in event_tick[3:, :n_tracks].T.tolist()]
    )
    n_map = counts[_k.INFO_TEMPO_MAP]
    n_ts = counts[_k.INFO_TIME_SIGNATURES]
    # The few tempo and signature entries leave their buffers (sized for the worst case).
    event_tick = event_tick[:3, : max(n_map, n_ts)].copy()
    event_small = event_small[:, :n_ts].copy()
    # Read-only buffers give read-only slices: the containers wrap them as they are.
    for buffer in (note_tick, note_small, channel, track, is_drum, event_tick, event_small):
        buffer.setflags(write=False)
    n = counts[_k.INFO_NOTES]
    notes = Notes._wrap(
        note_tick[0, :n], note_tick[1, :n], note_small[0, :n], note_small[1, :n],
        channel[:n], note_small[2, :n], track[:n], is_drum[:n],
    )  # fmt: skip
    tempo = TempoMap._wrap(event_tick[0, :n_map], event_tick[1, :n_map])
    time_signatures = TimeSignatures._wrap(event_tick[2, :n_ts], event_small[0, :n_ts], event_small[1, :n_ts])

    repairs_mask = counts[_k.INFO_REPAIRS]
    repairs = tuple(text for flag, text in _REPAIRS.items() if repairs_mask & flag) if repairs_mask else ()

    end_tick = counts[_k.INFO_END_TICK]
    score = Score._adopt(notes, tempo, time_signatures, ticks_per_beat, track_names, smpte, repairs, end_tick=end_tick)
    # Cheap bound first: only a song that could be over the cap pays for the exact seconds.
    if end_tick * counts[_k.INFO_MAX_US_PER_BEAT] / (1e6 * ticks_per_beat) > MAX_DURATION_SEC:
        duration_sec = float(ticks_to_seconds(np.array([end_tick]), tempo, ticks_per_beat)[0])
        if duration_sec > MAX_DURATION_SEC:
            raise MidiFileError(
                f"{name}: the notes run for {duration_sec:.3g} s, over the {MAX_DURATION_SEC:.0f} s cap "
                "(a corrupt delta time, not a song)"
            )
    if repairs:
        logger.debug("%s: recovered from %s", name, "; ".join(repairs))
    return score


def _refusal(data: np.ndarray, counts: list[int], name: str) -> MidiFileError:
    """The error for bytes a kernel refused (``counts[INFO_ERROR]`` set), naming what they look like."""
    head = bytes(data[:8])
    start = bytes(data[:16]).lstrip().lower()
    guess = next((what for magic, what in _SIGNATURES if start.startswith(magic.lower())), "")
    message = _ERRORS[counts[_k.INFO_ERROR]].format(
        size=data.shape[0], head=head, guess=guess, division=counts[_k.INFO_DIVISION], max_notes=MAX_NOTES
    )
    return MidiFileError(f"{name}: {message}")


def read_control_changes(source: PathOrBytes, *, controller: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read every control change of one controller from a MIDI file (``read_midi`` keeps none).

    Parameters
    ----------
    source : str, os.PathLike or bytes
        A path to the file, or its bytes.
    controller : int, keyword-only
        Controller number 0-127; 1 (modulation) carries the pulse duty in the output contract.

    Returns
    -------
    tick : np.ndarray [shape=(K,), dtype=int64]
        Ticks as ``read_midi`` counts them for the same file.
    channel : np.ndarray [shape=(K,), dtype=int8]
    value : np.ndarray [shape=(K,), dtype=int16]
        0-127. The changes come track by track in file order, by tick within a track.

    Raises
    ------
    MidiFileError
        As ``read_midi``, for bytes that are not MIDI.
    ParameterError
        A controller outside 0-127.
    """
    if isinstance(controller, bool) or not isinstance(controller, (int, np.integer)) or not 0 <= controller <= 127:
        raise ParameterError(f"controller is {controller!r}; use a controller number 0-127 (1 = modulation)")
    data, _, name = _load_bytes(source)
    capacity = data.shape[0] // 3 + 1
    tick = np.empty(capacity, dtype=np.int64)
    channel = np.empty(capacity, dtype=np.int8)
    value = np.empty(capacity, dtype=np.int16)
    info = np.empty(16, dtype=np.int64)
    _k.scan_control_changes(data, int(controller), tick, channel, value, info)
    counts = info.tolist()
    if counts[_k.INFO_ERROR]:
        raise _refusal(data, counts, name)
    n = counts[_k.INFO_NOTES]
    return tick[:n].copy(), channel[:n].copy(), value[:n].copy()


def _ticks_per_beat(division: int, name: str) -> tuple[int, bool]:
    if division < 0x8000:
        return division, False
    frames_per_sec = 256 - (division >> 8)
    ticks_per_frame = division & 0xFF
    if frames_per_sec not in (24, 25, 29, 30) or ticks_per_frame == 0:
        raise MidiFileError(
            f"{name}: SMPTE time division with {frames_per_sec} frames/s and {ticks_per_frame} ticks/frame; "
            "frames/s must be 24, 25, 29 or 30 and ticks/frame > 0"
        )
    ticks_per_sec = (29.97 if frames_per_sec == 29 else frames_per_sec) * ticks_per_frame
    # With the default 120 BPM map a beat is half a second: this many ticks keeps seconds right.
    return max(1, round(ticks_per_sec * DEFAULT_US_PER_BEAT / 1e6)), True


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Write a Score as a format-1 MIDI file: a tempo track, then one track per source track.

    Parameters
    ----------
    score : Score
    path : str or os.PathLike

    Notes
    -----
    ``read_midi(path)`` gives back the same notes (ticks, pitches, velocities, channels,
    tracks, and programs wherever a channel's programs do not interleave across tracks).
    A note whose release coincides with a new onset of the same key is written without
    its note-off: the onset releases it under the reader's retrigger policy.
    """
    mid = mido.MidiFile(type=1, ticks_per_beat=int(score.ticks_per_beat))
    conductor = [(0, 0, mido.MetaMessage("track_name", name="tempo", time=0))]
    for tick, us in zip(score.tempo.tick.tolist(), score.tempo.us_per_beat.tolist(), strict=True):
        conductor.append((tick, 1, mido.MetaMessage("set_tempo", tempo=us, time=0)))
    for tick, num, den in zip(
        score.time_signatures.tick.tolist(),
        score.time_signatures.numerator.tolist(),
        score.time_signatures.denominator.tolist(),
        strict=True,
    ):
        conductor.append((tick, 1, mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0)))
    mid.tracks.append(events_to_track(conductor))

    notes = score.notes
    n_tracks = max(len(score.track_names), int(notes.track.max()) + 1 if len(notes) else 0)
    for t in range(n_tracks):
        index = np.flatnonzero(notes.track == t)
        name = score.track_names[t] if t < len(score.track_names) else ""
        events = [(0, 0, mido.MetaMessage("track_name", name=name, time=0))]
        channel, pitch, start = notes.channel[index], notes.pitch[index], notes.start_tick[index]
        starts = set(zip(channel.tolist(), pitch.tolist(), start.tolist(), strict=True))
        program_now = [-1] * 16
        for i in index.tolist():
            ch, key, vel = int(notes.channel[i]), int(notes.pitch[i]), int(notes.velocity[i])
            on, off = int(notes.start_tick[i]), int(notes.end_tick[i])
            if program_now[ch] != notes.program[i]:
                program_now[ch] = int(notes.program[i])
                events.append((on, 1, mido.Message("program_change", channel=ch, program=program_now[ch])))
            events.append((on, 2, mido.Message("note_on", channel=ch, note=key, velocity=vel)))
            if (ch, key, off) not in starts:
                # Offs sort before onsets on a tick, except the off of a zero-length note.
                events.append((off, 3 if off == on else 0, mido.Message("note_off", channel=ch, note=key, velocity=0)))
        mid.tracks.append(events_to_track(events))
    mid.save(os.fspath(path))


def events_to_track(events: list) -> mido.MidiTrack:
    """A track of ``(tick, order, message)`` events, sorted by tick then order (stable), delta-timed.

    The list is sorted in place; an end-of-track closes the track.
    """
    events.sort(key=lambda event: (event[0], event[1]))
    track = mido.MidiTrack()
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
