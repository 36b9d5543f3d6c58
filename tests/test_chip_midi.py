"""The output contract writer: format 1, a tempo track, four named voice tracks, duty CC, exact ticks."""

from __future__ import annotations

import mido
import numpy as np
import pytest

import chiptuner
from chiptuner.chip_midi import DUTY_CC, voice_channels, write_arrangement
from chiptuner.types import VOICE_NAMES, Arrangement, TempoMap, TimeSignatures

NAMES = ["pulse1", "pulse2", "triangle", "noise"]


def arrangement_from_text(rows: list[str], steps_per_beat: int = 4) -> Arrangement:
    """One row per step: four cells "pitch" (held), "*pitch" (onset) or "." (silent)."""
    pitch = np.full((len(rows), 4), -1, dtype=np.int16)
    onset = np.zeros((len(rows), 4), dtype=bool)
    for t, row in enumerate(rows):
        cells = row.split()
        assert len(cells) == 4, row
        for v, cell in enumerate(cells):
            if cell != ".":
                onset[t, v] = cell.startswith("*")
                pitch[t, v] = int(cell.lstrip("*"))
    return Arrangement(pitch, onset, steps_per_beat)


# Step:       pulse1 pulse2 triangle noise
SONG = [
    "*60 *67 *36 *36",  # 0
    "60  67  36  .",  # 1  pulse1 held, noise released
    "*62 .   36  *42",  # 2  pulse1 new pitch on an onset
    "62  *67 *36 *42",  # 3  triangle repeats 36: a new note; noise repeats 42: a new note
    ".   67  36  .",  # 4  pulse1 rest
    "*60 69  .   *38",  # 5  pulse2 changes pitch without an onset flag: still a new note
    "*60 69  *40 .",  # 6  pulse1 repeats 60: two notes, not one
    "60  .   40  *49",  # 7
]
# (start_step, end_step, pitch) per voice, as the contract reads SONG.
SONG_NOTES = {
    "pulse1": [(0, 2, 60), (2, 4, 62), (5, 6, 60), (6, 8, 60)],
    "pulse2": [(0, 2, 67), (3, 5, 67), (5, 7, 69)],
    "triangle": [(0, 3, 36), (3, 5, 36), (6, 8, 40)],
    "noise": [(0, 1, 36), (2, 3, 42), (3, 4, 42), (5, 6, 38), (7, 8, 49)],
}


def reference_notes(arrangement: Arrangement, voice: int) -> list[tuple[int, int, int]]:
    """Slow and obvious: a note starts at an onset or a pitch change and runs to the next one or a rest."""
    pitch, onset = arrangement.pitch[:, voice].tolist(), arrangement.onset[:, voice].tolist()
    notes: list[list[int]] = []
    sounding = None  # the open note: [start, end, key]
    for t, (key, start) in enumerate(zip(pitch, onset, strict=True)):
        if sounding is not None and (key < 0 or key != sounding[2] or start):
            sounding[1] = t
            notes.append(sounding)
            sounding = None
        if key >= 0 and sounding is None:
            sounding = [t, -1, key]
    if sounding is not None:
        sounding[1] = len(pitch)
        notes.append(sounding)
    return [tuple(note) for note in notes]


def track_notes(track: mido.MidiTrack) -> list[tuple[int, int, int, int]]:
    """(start_tick, end_tick, key, channel) of a track; fails on a note-on over a sounding note."""
    now, sounding, notes = 0, {}, []
    for message in track:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            assert not sounding, f"tick {now}: note {message.note} starts while {sounding} sounds (not monophonic)"
            sounding[message.note] = (now, message.channel)
        elif message.type in ("note_off", "note_on"):
            start, channel = sounding.pop(message.note)
            assert channel == message.channel
            notes.append((start, now, message.note, channel))
    assert not sounding, f"notes never released: {sounding}"
    return sorted(notes)


def write_and_read(tmp_path, arrangement: Arrangement, **kwargs) -> mido.MidiFile:
    path = tmp_path / "out.mid"
    write_arrangement(arrangement, path, **kwargs)
    return mido.MidiFile(path)


def test_reference_reads_the_annotated_song_as_annotated():
    song = arrangement_from_text(SONG)
    assert {name: reference_notes(song, v) for v, name in enumerate(NAMES)} == SONG_NOTES


def test_voice_channels():
    assert voice_channels() == (0, 1, 2, 3)
    assert voice_channels(gm_drums=False) == (0, 1, 2, 3)
    assert voice_channels(gm_drums=True) == (0, 1, 2, 9)


@pytest.mark.parametrize("gm_drums", [False, True])
def test_layout_format_1_tempo_track_then_four_named_voices(tmp_path, gm_drums):
    mid = write_and_read(tmp_path, arrangement_from_text(SONG), ticks_per_beat=96, gm_drums=gm_drums)
    assert mid.type == 1
    assert mid.ticks_per_beat == 96
    assert len(mid.tracks) == 5
    assert [track.name for track in mid.tracks[1:]] == NAMES
    assert not any(message.type == "note_on" for message in mid.tracks[0])  # the tempo track holds no notes
    channels = (0, 1, 2, 9 if gm_drums else 3)
    for track, channel in zip(mid.tracks[1:], channels, strict=True):
        used = {message.channel for message in track if not message.is_meta}
        assert used == {channel}, track.name


@pytest.mark.parametrize("ticks_per_beat", [96, 480, 1000, 7])
@pytest.mark.parametrize("steps_per_beat", [4, 2])
def test_notes_at_step_times_ticks_per_beat_over_steps_per_beat(tmp_path, ticks_per_beat, steps_per_beat):
    song = arrangement_from_text(SONG, steps_per_beat=steps_per_beat)
    mid = write_and_read(tmp_path, song, ticks_per_beat=ticks_per_beat)
    assert mid.ticks_per_beat == ticks_per_beat
    for v, (name, track) in enumerate(zip(NAMES, mid.tracks[1:], strict=True)):
        expected = [
            (start * ticks_per_beat // steps_per_beat, end * ticks_per_beat // steps_per_beat, key, v)
            for start, end, key in SONG_NOTES[name]
        ]
        assert track_notes(track) == expected, name


def test_repeated_onsets_of_one_pitch_stay_separate_notes_for_read_midi(tmp_path):
    path = tmp_path / "out.mid"
    write_arrangement(arrangement_from_text(SONG), path, ticks_per_beat=480)
    score = chiptuner.read_midi(path)
    assert score.ticks_per_beat == 480
    assert score.track_names == ("tempo", *NAMES)
    notes = score.notes
    for v, name in enumerate(NAMES):
        mine = np.flatnonzero(notes.track == v + 1)
        got = sorted(
            zip(notes.start_tick[mine].tolist(), notes.end_tick[mine].tolist(), notes.pitch[mine].tolist(), strict=True)
        )
        assert got == [(s * 120, e * 120, k) for s, e, k in SONG_NOTES[name]], name
        assert set(notes.channel[mine].tolist()) == {v}
    # pulse1 plays 60 twice in a row (steps 5 and 6) and triangle 36 twice (steps 0 and 3): four notes, not two
    assert len(notes) == sum(len(n) for n in SONG_NOTES.values())


def test_gm_drums_noise_is_read_back_as_drums(tmp_path):
    path = tmp_path / "out.mid"
    write_arrangement(arrangement_from_text(SONG), path, gm_drums=True)
    notes = chiptuner.read_midi(path).notes
    noise = notes.track == 4
    assert notes.is_drum[noise].all() and not notes.is_drum[~noise].any()
    assert set(notes.channel[noise].tolist()) == {9}
    assert sorted(notes.pitch[noise].tolist()) == sorted(k for _, _, k in SONG_NOTES["noise"])


def test_duty_cycle_cc1_on_the_pulses_before_their_first_note(tmp_path):
    mid = write_and_read(tmp_path, arrangement_from_text(SONG))
    duty_ranges = [(0, 31), (32, 63), (64, 95), (96, 127)]
    for track in mid.tracks[1:]:
        cc1 = [m for m in track if m.type == "control_change" and m.control == 1]
        if track.name in ("pulse1", "pulse2"):
            assert len(cc1) == 1, track.name
            assert cc1[0].value == DUTY_CC[track.name]
            assert any(lo <= cc1[0].value <= hi for lo, hi in duty_ranges)
            kinds = [m.type for m in track if not m.is_meta]
            assert kinds.index("control_change") < kinds.index("note_on")
            assert sum(m.time for m in track[: track.index(cc1[0]) + 1]) == 0  # at tick 0
        else:
            assert cc1 == [], f"{track.name} has no duty cycle"


def tempo_track_events(mid: mido.MidiFile) -> list[tuple[int, str, tuple]]:
    now, events = 0, []
    for message in mid.tracks[0]:
        now += message.time
        if message.type == "set_tempo":
            events.append((now, "tempo", (message.tempo,)))
        elif message.type == "time_signature":
            events.append((now, "time_signature", (message.numerator, message.denominator)))
    return events


def test_defaults_are_120_bpm_in_4_4(tmp_path):
    mid = write_and_read(tmp_path, arrangement_from_text(SONG))
    assert tempo_track_events(mid) == [(0, "tempo", (500_000,)), (0, "time_signature", (4, 4))]
    score = chiptuner.read_midi(tmp_path / "out.mid")
    assert score.tempo.tick.tolist() == [0] and score.tempo.us_per_beat.tolist() == [500_000]
    assert score.time_signatures.numerator.tolist() == [4]
    assert score.time_signatures.denominator.tolist() == [4]


def test_tempo_map_and_time_signatures_are_copied(tmp_path):
    tempo = TempoMap(np.array([0, 960, 2000]), np.array([600_000, 400_000, 750_000]))
    signatures = TimeSignatures(np.array([0, 1440]), np.array([3, 6]), np.array([4, 8]))
    mid = write_and_read(
        tmp_path, arrangement_from_text(SONG), ticks_per_beat=480, tempo=tempo, time_signatures=signatures
    )
    assert tempo_track_events(mid) == [
        (0, "tempo", (600_000,)),
        (0, "time_signature", (3, 4)),
        (960, "tempo", (400_000,)),
        (1440, "time_signature", (6, 8)),
        (2000, "tempo", (750_000,)),
    ]
    score = chiptuner.read_midi(tmp_path / "out.mid")
    assert score.tempo.tick.tolist() == [0, 960, 2000]
    assert score.tempo.us_per_beat.tolist() == [600_000, 400_000, 750_000]
    assert score.time_signatures.tick.tolist() == [0, 1440]
    assert score.time_signatures.numerator.tolist() == [3, 6]
    assert score.time_signatures.denominator.tolist() == [4, 8]


def test_empty_time_signatures_fall_back_to_4_4(tmp_path):
    empty = TimeSignatures(np.zeros(0), np.zeros(0), np.zeros(0))
    mid = write_and_read(tmp_path, arrangement_from_text(SONG), time_signatures=empty)
    assert [e for e in tempo_track_events(mid) if e[1] == "time_signature"] == [(0, "time_signature", (4, 4))]


def test_empty_and_silent_arrangements_still_have_every_track(tmp_path):
    for arrangement in (
        Arrangement(np.zeros((0, 4), dtype=np.int16), np.zeros((0, 4), dtype=bool)),
        arrangement_from_text([". . . ."] * 5),
    ):
        mid = write_and_read(tmp_path, arrangement)
        assert [track.name for track in mid.tracks] == ["tempo", *NAMES]
        assert not any(m.type == "note_on" for track in mid.tracks for m in track)


@pytest.mark.parametrize("seed", range(6))
def test_random_arrangements_monophonic_and_equal_to_the_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n_steps = int(rng.integers(1, 200))
    pitch = rng.choice(np.array([-1, 40, 41, 60, 61]), size=(n_steps, 4)).astype(np.int16)
    pitch[:, 3] = rng.choice(np.array([-1, 36, 38, 42, 46, 49]), size=n_steps)
    # sticky: hold the previous pitch most of the time, so long notes and repeats both occur
    hold = rng.random((n_steps, 4)) < 0.6
    for t in range(1, n_steps):
        pitch[t, hold[t]] = pitch[t - 1, hold[t]]
    onset = (rng.random((n_steps, 4)) < 0.3) | (rng.random((n_steps, 4)) < 0.05)  # some on silent steps too
    arrangement = Arrangement(pitch, onset)
    before = (arrangement.pitch.copy(), arrangement.onset.copy())
    tpb = int(rng.choice([96, 120, 480]))
    mid = write_and_read(tmp_path, arrangement, ticks_per_beat=tpb)
    for v, track in enumerate(mid.tracks[1:]):
        got = track_notes(track)  # asserts monophony
        for (_, end, _, _), (start, _, _, _) in zip(got[:-1], got[1:], strict=True):
            assert end <= start, f"{VOICE_NAMES[v]}: overlapping notes"
        expected = [(s * tpb // 4, e * tpb // 4, k, v) for s, e, k in reference_notes(arrangement, v)]
        assert got == expected, VOICE_NAMES[v]
    assert np.array_equal(arrangement.pitch, before[0]) and np.array_equal(arrangement.onset, before[1])


@pytest.mark.parametrize("ticks_per_beat", [0, -480, 32768, 480.0, "480", True, None])
def test_bad_ticks_per_beat_is_a_parameter_error(tmp_path, ticks_per_beat):
    path = tmp_path / "out.mid"
    with pytest.raises(chiptuner.ParameterError, match="ticks_per_beat"):
        write_arrangement(arrangement_from_text(SONG), path, ticks_per_beat=ticks_per_beat)
    assert not path.exists()


def test_numpy_integer_ticks_per_beat_is_accepted(tmp_path):
    mid = write_and_read(tmp_path, arrangement_from_text(SONG), ticks_per_beat=np.int64(240))
    assert mid.ticks_per_beat == 240
    assert track_notes(mid.tracks[1])[0] == (0, 120, 60, 0)
