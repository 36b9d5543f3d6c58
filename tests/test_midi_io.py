"""The SMF reader against annotated bytes, mido as an oracle on every corpus file, and the writer."""

from __future__ import annotations

import os
import stat
import struct
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mido
import numpy as np
import pytest

import chiptuner
from chiptuner import MidiFileError, read_midi, write_midi
from chiptuner._kernels import midi_io as _k
from chiptuner.midi_io import MAX_DURATION_SEC
from chiptuner.types import DEFAULT_US_PER_BEAT, Notes, Score, TempoMap, TimeSignatures
from tests.reference import notes_from_mido, tempo_from_mido

# --- building files from annotated bytes -------------------------------------------------------


def hexbytes(text: str) -> bytes:
    """Bytes from hex pairs; everything after '#' on a line is a comment."""
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


def mthd(fmt: int = 1, n_tracks: int = 1, division: int = 96) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, fmt, n_tracks, division)


def mtrk(body: bytes, length: int | None = None) -> bytes:
    return b"MTrk" + struct.pack(">I", len(body) if length is None else length) + body


END = hexbytes("00 FF 2F 00")


def one_track(body: str, **header) -> bytes:
    return mthd(**header) + mtrk(hexbytes(body) + END)


def note_rows(score: Score) -> list[tuple[int, ...]]:
    n = score.notes
    return sorted(
        zip(
            n.start_tick.tolist(), n.end_tick.tolist(), n.pitch.tolist(), n.velocity.tolist(),
            n.channel.tolist(), n.program.tolist(), n.track.tolist(), strict=True,
        )
    )  # fmt: skip


# --- events ----------------------------------------------------------------------------------


def test_running_status_and_velocity_zero_note_off():
    score = read_midi(
        one_track(
            """
            00 90 3C 64   # on C4
            60 3E 64      # running status: on D4 at 96
            00 3C 00      # running status, velocity 0: off C4 at 96
            60 3E 00      # off D4 at 192
            """
        )
    )
    assert note_rows(score) == [(0, 96, 60, 100, 0, 0, 0), (96, 192, 62, 100, 0, 0, 0)]
    assert score.repairs == ()
    assert score.ticks_per_beat == 96


def test_running_status_survives_meta_and_sysex():
    score = read_midi(
        one_track(
            """
            00 91 40 50          # on E4, channel 2
            10 FF 01 02 68 69    # text meta "hi"
            10 F0 02 7E F7       # sysex
            10 40 00             # running status after both: off E4
            """
        )
    )
    assert note_rows(score) == [(0, 48, 64, 80, 1, 0, 0)]


def test_stray_note_off_is_ignored_and_reported():
    score = read_midi(one_track("00 80 3C 40  00 90 3C 40  30 80 3C 40  00 80 3C 40"))
    assert note_rows(score) == [(0, 48, 60, 64, 0, 0, 0)]
    assert any("note-off without" in r for r in score.repairs)


def test_overlapping_same_pitch_retriggers():
    # Two note-ons of C4 then two offs: the second on ends the first (retrigger policy).
    score = read_midi(one_track("00 90 3C 40  10 90 3C 50  10 80 3C 00  10 80 3C 00"))
    assert note_rows(score) == [(0, 16, 60, 64, 0, 0, 0), (16, 32, 60, 80, 0, 0, 0)]
    assert any("note-on on a sounding key" in r for r in score.repairs)


def test_unreleased_note_ends_at_last_event_of_its_track():
    score = read_midi(one_track("00 90 3C 40  20 90 40 40  20 80 40 00  40 FF 01 00"))
    assert note_rows(score) == [(0, 128, 60, 64, 0, 0, 0), (32, 64, 64, 64, 0, 0, 0)]
    assert any("never released" in r for r in score.repairs)


def test_zero_length_note_is_kept():
    score = read_midi(one_track("00 99 24 64  00 89 24 00"))  # a drum hit with on and off on one tick
    assert note_rows(score) == [(0, 0, 36, 100, 9, 0, 0)]
    assert score.notes.is_drum.tolist() == [True]


def test_program_in_force_at_onset_across_tracks():
    conductor = mtrk(hexbytes("00 C2 05  40 C2 07") + END)  # programs for channel 3 live in track 0
    notes = mtrk(hexbytes("00 92 3C 40  10 82 3C 00  30 92 3E 40  10 82 3E 00") + END)
    score = read_midi(mthd(n_tracks=2) + conductor + notes)
    assert [(r[0], r[5], r[6]) for r in note_rows(score)] == [(0, 5, 1), (64, 7, 1)]


def test_data_byte_above_127_is_clipped():
    score = read_midi(one_track("00 90 3C FF  10 80 3C 00"))
    assert note_rows(score) == [(0, 16, 60, 127, 0, 0, 0)]
    assert any("clipped" in r for r in score.repairs)


def test_tempo_and_time_signature_meta():
    score = read_midi(
        one_track(
            """
            00 FF 51 03 07 A1 20    # 500000 us per beat at 0
            00 FF 58 04 06 03 18 08 # 6/8
            60 FF 51 03 0F 42 40    # 1000000 us per beat at 96
            00 90 3C 40  60 80 3C 00
            """
        )
    )
    assert score.tempo.tick.tolist() == [0, 96] and score.tempo.us_per_beat.tolist() == [500000, 1000000]
    assert (score.time_signatures.numerator.tolist(), score.time_signatures.denominator.tolist()) == ([6], [8])


def test_default_tempo_when_the_file_has_none():
    score = read_midi(one_track("00 90 3C 40  60 80 3C 00"))
    assert score.tempo.tick.tolist() == [0] and score.tempo.us_per_beat.tolist() == [500000]


def test_track_names_are_read():
    score = read_midi(mthd(n_tracks=1) + mtrk(hexbytes("00 FF 03 04") + b"Lead" + END))
    assert score.track_names == ("Lead",)


def test_tempo_map_and_signatures_from_several_tracks_are_sorted_and_deduplicated():
    data = (
        mthd(n_tracks=2)
        + mtrk(
            hexbytes(
                """
            00 FF 03 05 00 42 61 73 73    # name "\0Bass": the NUL is stripped
            60 FF 51 03 0F 42 40          # 1000000 us per beat at 96
            00 FF 58 04 03 02 18 08       # 3/4 at 96
            00 FF 51 03 07 A1 20          # 500000 at 96: the last change on a tick wins
            00 90 3C 40  60 80 3C 00
            """
            )
            + END
        )
        + mtrk(
            hexbytes(
                """
            30 FF 51 03 03 0D 40          # 200000 at 48
            00 FF 58 04 02 02 18 08       # 2/4 at 48
            83 00 FF 51 03 0F 42 40       # 1000000 at 432
            """
            )
            + END
        )
    )
    for source in (data, bytearray(data), memoryview(data)):
        score = read_midi(source)
        assert score.tempo.tick.tolist() == [0, 48, 96, 432]
        assert score.tempo.us_per_beat.tolist() == [500000, 200000, 500000, 1000000]
        assert score.time_signatures.tick.tolist() == [48, 96]
        assert score.time_signatures.numerator.tolist() == [2, 3]
        assert score.track_names == ("Bass", "")
        assert score.end_tick == 192 == int(score.notes.end_tick.max())
        arrays = [getattr(score.notes, name) for name in score.notes._ARRAYS]
        arrays += [score.tempo.tick, score.tempo.us_per_beat, score.time_signatures.tick]
        assert not any(a.flags.writeable for a in arrays)


def test_reader_kernel_constants_agree_with_the_package():
    assert _k.DEFAULT_US_PER_BEAT == DEFAULT_US_PER_BEAT
    assert _k.DRUM_CHANNEL == 9


# --- structure ---------------------------------------------------------------------------------


def test_missing_end_of_track_is_recovered():
    data = mthd() + mtrk(hexbytes("00 90 3C 40  60 80 3C 00"))
    score = read_midi(data)
    assert note_rows(score) == [(0, 96, 60, 64, 0, 0, 0)]
    assert any("end-of-track" in r for r in score.repairs)


def test_truncated_file_keeps_what_came_before():
    data = one_track("00 90 3C 40  60 80 3C 00  00 90 3E 40  60 80 3E 00")
    score = read_midi(data[:-6])  # cut inside the second note's off
    assert [r[2] for r in note_rows(score)] == [60, 62]
    assert any("truncated" in r for r in score.repairs)


def test_extra_track_chunk_beyond_header_count_is_read():
    track = mtrk(hexbytes("00 90 3C 40  60 80 3C 00") + END)
    score = read_midi(mthd(n_tracks=1) + track + track)
    assert [r[6] for r in note_rows(score)] == [0, 1]
    assert any("track count" in r for r in score.repairs)


def test_wrong_chunk_length_reads_up_to_end_of_track():
    body = hexbytes("00 90 3C 40  60 80 3C 00") + END
    data = mthd(n_tracks=2) + mtrk(body, length=len(body) - 3) + mtrk(hexbytes("00 90 40 40  60 80 40 00") + END)
    score = read_midi(data)
    assert [(r[2], r[6]) for r in note_rows(score)] == [(60, 0), (64, 1)]
    assert any("length wrong" in r for r in score.repairs)


def test_unknown_chunk_is_skipped():
    data = mthd(n_tracks=1) + b"XFIH" + struct.pack(">I", 3) + b"abc" + mtrk(hexbytes("00 90 3C 40  60 80 3C 00") + END)
    assert [r[2] for r in note_rows(read_midi(data))] == [60]


def test_riff_rmid_wrapper_is_unwrapped():
    smf = one_track("00 90 3C 40  60 80 3C 00")
    data_chunk = b"data" + struct.pack("<I", len(smf)) + smf
    riff = b"RIFF" + struct.pack("<I", 4 + len(data_chunk)) + b"RMID" + data_chunk
    assert note_rows(read_midi(riff)) == note_rows(read_midi(smf))


def test_smpte_division_gives_seconds_through_the_default_tempo():
    # 25 frames/s x 40 ticks/frame = 1000 ticks per second; a note at tick 1000 starts at 1 s.
    division = ((256 - 25) << 8) | 40
    score = read_midi(one_track("87 68 90 3C 40  87 68 80 3C 00", division=division))
    assert score.smpte
    seconds = chiptuner.timebase.ticks_to_seconds(score.notes.start_tick, score.tempo, score.ticks_per_beat)
    assert seconds.tolist() == pytest.approx([1.0])


def test_sysex_and_realtime_bytes_are_skipped():
    score = read_midi(one_track("00 F0 03 43 12 F7  00 F7 01 00  00 90 3C 40  10 F8  10 80 3C 00"))
    assert note_rows(score) == [(0, 32, 60, 64, 0, 0, 0)]


def test_format_0_and_2_are_read():
    for fmt in (0, 2):
        assert len(read_midi(one_track("00 90 3C 40 60 80 3C 00", fmt=fmt)).notes) == 1


def test_empty_track_list_gives_an_empty_score():
    score = read_midi(mthd(n_tracks=0))
    assert len(score.notes) == 0 and score.end_tick == 0


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "PNG"),
        (b"PK\x03\x04" + bytes(40), "zip"),
        (b"MThd", "too short"),
        (b"", "too short"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 1, 0) + b"MTrk\x00\x00\x00\x00", "time division is 0"),
        (b"MThd" + struct.pack(">IHHH", 2, 1, 1, 96) + bytes(8), "header"),
        (b"RIFF\x10\x00\x00\x00RMIDjunk\x00\x00\x00\x00", "RIFF"),
    ],
)
def test_non_midi_bytes_are_refused_with_a_reason(data, words):
    with pytest.raises(MidiFileError, match=words):
        read_midi(data)


def test_vlq_over_four_bytes_stops_the_track():
    score = read_midi(one_track("00 90 3C 40  60 80 3C 00  81 81 81 81 01 90 3E 40  60 80 3E 00"))
    assert [r[2] for r in note_rows(score)] == [60]
    assert any("over 4 bytes" in r for r in score.repairs)


def test_time_bomb_duration_is_refused_without_allocating_per_tick():
    # Each delta is the 4-byte maximum (2^28 - 1 ticks): 30 of them at 96 ticks per beat is years.
    body = "00 90 3C 40 " + "FF FF FF 7F FF 01 00 " * 30 + "00 80 3C 00"
    with pytest.raises(MidiFileError, match="cap"):
        read_midi(one_track(body))
    assert MAX_DURATION_SEC < 1e5


def test_absurd_note_count_is_refused(monkeypatch):
    monkeypatch.setattr(chiptuner.midi_io, "MAX_NOTES", 10)
    with pytest.raises(MidiFileError, match="more than 10 notes"):
        read_midi(one_track("00 90 3C 40 00 80 3C 00 " * 11))


def test_missing_file_and_folder_and_wrong_type(tmp_path):
    with pytest.raises(MidiFileError, match="no such file"):
        read_midi(tmp_path / "nope.mid")
    with pytest.raises(MidiFileError, match="folder"):
        read_midi(tmp_path)
    with pytest.raises(TypeError):
        read_midi(42)


def read_or_unblock(path: Path, seconds: float = 10.0) -> BaseException | None:
    """``read_midi(path)`` in a thread; a FIFO it blocks on is opened for writing so the test ends."""
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_midi(path)
            outcome.append(None)
        except BaseException as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with open(path, "wb"):  # the reader's open() returns, its read sees end of file
            pass
        thread.join(seconds)
        pytest.fail(f"read_midi({path.name}) blocked for {seconds:g} s")
    return outcome[0]


def test_special_files_are_refused_without_being_read(tmp_path):
    fifo = tmp_path / "pipe.mid"
    os.mkfifo(fifo)
    device_link = tmp_path / "device.mid"
    device_link.symlink_to(os.devnull)
    loop = tmp_path / "loop.mid"
    loop.symlink_to(loop.name)
    cases = [
        (fifo, "is a named pipe (FIFO), not a regular file"),
        (Path(os.devnull), "is a character device, not a regular file"),
        (device_link, "is a character device, not a regular file"),
        (loop, "too many levels of symbolic links"),
    ]
    for path, message in cases:
        error = read_or_unblock(path)
        assert isinstance(error, MidiFileError), (path, error)
        assert str(error).startswith(f"{path}: ") and message in str(error), str(error)
        assert "\n" not in str(error)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_a_file_longer_than_its_stat_size_is_read_only_up_to_the_cap(monkeypatch):
    status = Path("/proc/self/status")  # a regular file of about 1 kB whose stat size is 0
    assert stat.S_ISREG(status.stat().st_mode) and status.stat().st_size == 0
    monkeypatch.setattr(chiptuner.midi_io, "MAX_FILE_BYTES", 64)
    with pytest.raises(MidiFileError, match=r"more than 64 bytes, over the cap"):
        read_midi(status)


# --- the writer ---------------------------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path):
    rng = np.random.default_rng(7)
    n = 300
    start = np.sort(rng.integers(0, 5000, n))
    notes = Notes(
        start,
        start + rng.integers(0, 400, n),
        rng.integers(20, 110, n),
        rng.integers(1, 128, n),
        rng.integers(0, 16, n),
        np.zeros(n),
        rng.integers(0, 3, n),
        np.zeros(n, bool),
    )
    # Overlapping notes of one key would be split by the retrigger policy: keep one per key.
    keep = np.ones(n, bool)
    last_end: dict = {}
    for i in range(n):
        key = (int(notes.track[i]), int(notes.channel[i]), int(notes.pitch[i]))
        if last_end.get(key, -1) > notes.start_tick[i]:
            keep[i] = False
        else:
            last_end[key] = int(notes.end_tick[i])
    channel = notes.channel[keep]
    program = (channel.astype(np.int16) * 7) % 128  # one program per channel
    notes = notes.take(keep)
    notes = Notes(
        notes.start_tick, notes.end_tick, notes.pitch, notes.velocity, channel, program, notes.track, channel == 9
    )
    score = Score(
        notes,
        TempoMap(np.array([0, 960]), np.array([400000, 600000])),
        TimeSignatures(np.array([0]), np.array([3]), np.array([4])),
        ticks_per_beat=240,
        track_names=("a", "b", "c"),
    )
    write_midi(score, tmp_path / "out.mid")
    back = read_midi(tmp_path / "out.mid")
    # The writer adds a tempo track in front: source track t is written as track t + 1.
    rows = [r[:6] + (r[6] - 1,) for r in note_rows(back)]
    assert rows == note_rows(score)
    assert back.tempo.us_per_beat.tolist() == [400000, 600000]
    assert back.track_names[1:] == ("a", "b", "c")
    assert back.ticks_per_beat == 240


# --- mido as the oracle on every corpus file ----------------------------------------------------

FIELDS = ("start_tick", "end_tick", "pitch", "velocity", "channel", "program", "track")


def _build_meta_message_keeping_delta(meta_type, data, delta=0):
    # mido 1.3.3 drops the delta time of unknown meta events (build_meta_message ignores it for
    # them), which shifts every later event of the track; the oracle must not inherit that bug.
    from mido.midifiles import meta  # noqa: PLC0415 (test-only patch)

    if meta_type not in meta._META_SPECS:
        return meta.UnknownMetaMessage(meta_type, data, time=delta)
    return meta.build_meta_message(meta_type, data, delta)


def _sorted_rows(notes: Notes, n_tracks: int) -> np.ndarray:
    keep = notes.track < n_tracks
    columns = [getattr(notes, f)[keep].astype(np.int64) for f in FIELDS]
    order = np.lexsort(columns[::-1])
    return np.stack([c[order] for c in columns])


def _compare_with_mido(path: str) -> str | None:
    """None when the reader agrees with mido or mido cannot read the file; else what differs."""
    from mido.midifiles import midifiles  # noqa: PLC0415 (worker-side patch, see above)

    midifiles.build_meta_message = _build_meta_message_keeping_delta
    try:
        mid = mido.MidiFile(path, clip=True)
    except Exception:  # noqa: BLE001 (mido fails in many ways; the oracle only covers what it reads)
        return None
    try:
        score = read_midi(path)
    except MidiFileError as error:
        if mid.ticks_per_beat <= 0 or any(len(t) and False for t in mid.tracks):
            return None
        return f"{path}: refused but mido reads it: {error}"
    if any("over 4 bytes" in r for r in score.repairs):
        return None  # mido accepts quantities over 4 bytes; the standard (and this reader) does not
    ours = _sorted_rows(score.notes, len(mid.tracks))
    theirs = _sorted_rows(notes_from_mido(mid), len(mid.tracks))
    if ours.shape != theirs.shape or not np.array_equal(ours, theirs):
        return f"{path}: notes differ ({ours.shape[1]} here, {theirs.shape[1]} from mido)"
    if not score.smpte:
        tick, us = tempo_from_mido(mid)
        if not (np.array_equal(tick, score.tempo.tick) and np.array_equal(us, score.tempo.us_per_beat)):
            return f"{path}: tempo maps differ"
    return None


def _midi_files(root: Path) -> list[str]:
    suffixes = (".mid", ".midi", ".kar", ".rmi")
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


@pytest.mark.corpus
def test_notes_match_mido_on_every_corpus_file_mido_reads(corpora):
    files = _midi_files(corpora)
    assert len(files) > 1000
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        problems = [p for p in pool.map(_compare_with_mido, files, chunksize=32) if p]
    assert problems == []


@pytest.mark.corpus
def test_named_broken_corpus_files_are_read_or_refused_cleanly(corpora):
    vg = corpora / "vgmusic_nes_gb" / "midis"
    extra = read_midi(vg / "ff3jtime.mid")  # an extra track chunk beyond the header's count
    assert any("track count" in r for r in extra.repairs)
    assert extra.track_names and len(set(extra.notes.track.tolist())) >= 1
    for name in ("Iceclimber.mid", "ff1fightgs1.mid"):  # data bytes above 127
        assert any("clipped" in r for r in read_midi(vg / name).repairs)
    truncated = read_midi(vg / "Zelda_Temple_Theme.mid")
    assert len(truncated.notes) > 0 and truncated.repairs
    bomb = read_midi(vg / "W&W2_Level1.mid")  # mido sees ~3e8 s; the over-long delta is cut here
    seconds = chiptuner.timebase.ticks_to_seconds(bomb.notes.end_tick, bomb.tempo, bomb.ticks_per_beat)
    assert seconds.max() < 600
