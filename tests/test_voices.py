"""Voice reduction: kernels against tests/reference.py, the wrapper's contract, corpus sanity."""

from __future__ import annotations

import numpy as np
import pytest
import tests.reference as ref

from chiptuner import read_midi
from chiptuner._kernels import voices as _k
from chiptuner.errors import ParameterError
from chiptuner.roll import piano_roll
from chiptuner.timebase import quantize_notes
from chiptuner.types import DEFAULT_US_PER_BEAT, VOICE_NAMES, Arrangement, Notes, Score, TempoMap, TimeSignatures
from chiptuner.voices import (
    DRUM_KEYS,
    DRUM_PRIORITY,
    GM_DRUM_MAP,
    VOICE_RANGES,
    _order,
    reduce_voices,
    voice_notes,
)

TPB = 4  # one tick per step keeps the fixtures readable


def make_notes(rows, *, drum: bool = False, track: int = 0) -> Notes:
    """Notes from (start_step, end_step, pitch) rows at TPB ticks per beat (1 tick = 1 step)."""
    rows = list(rows)
    n = len(rows)
    start = np.array([r[0] for r in rows], dtype=np.int64).reshape(n)
    end = np.array([r[1] for r in rows], dtype=np.int64).reshape(n)
    pitch = np.array([r[2] for r in rows], dtype=np.int16).reshape(n)
    channel = np.full(n, 9 if drum else 0, dtype=np.int8)
    return Notes(start, end, pitch, np.full(n, 100), channel, np.zeros(n), np.full(n, track), np.full(n, drum))


def concat(*parts: Notes) -> Notes:
    fields = ("start_tick", "end_tick", "pitch", "velocity", "channel", "program", "track", "is_drum")
    return Notes(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def make_score(notes: Notes) -> Score:
    tempo = TempoMap(np.zeros(1, dtype=np.int64), np.array([DEFAULT_US_PER_BEAT]))
    empty = np.zeros(0, dtype=np.int64)
    return Score(notes, tempo, TimeSignatures(empty, empty, empty), TPB)


def random_rows(rng, n, n_steps, low=20, high=110):
    start = rng.integers(-2, n_steps, n)
    end = start + rng.integers(1, 9, n)
    pitch = rng.integers(low, high, n)
    return start, end, pitch


def random_roll(rng, n_steps, n_notes, low=20, high=110):
    start, end, pitch = random_rows(rng, n_notes, n_steps, low, high)
    return piano_roll(np.maximum(start, 0), end, pitch.astype(np.int16), n_steps=n_steps)


# --- kernels against their references ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_mark_lead_matches_reference(seed):
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 30, 60).astype(np.int64)
    pitch = rng.integers(50, 60, 60).astype(np.int16)
    pick = rng.random(60) < 0.3
    lead_start = np.concatenate([start[pick], rng.integers(0, 30, 5)]).astype(np.int64)
    lead_pitch = np.concatenate([pitch[pick], rng.integers(50, 60, 5)]).astype(np.int16)
    out = np.zeros(60, dtype=bool)
    _k.mark_lead(start, pitch, _order(start, pitch), lead_start, lead_pitch, _order(lead_start, lead_pitch), out)
    expected = ref.mark_lead(start, pitch, lead_start, lead_pitch)
    np.testing.assert_array_equal(out, expected)
    assert expected[pick].all()


@pytest.mark.parametrize("seed", range(12))
def test_note_line_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n_steps = 40
    start, end, pitch = random_rows(rng, int(rng.integers(0, 30)), n_steps + 4, low=-2, high=130)
    pitch = pitch.astype(np.int16)
    out_pitch = np.full(n_steps, -1, dtype=np.int16)
    out_onset = np.zeros(n_steps, dtype=bool)
    owner = np.full(n_steps, -1, dtype=np.int64)
    _k.note_line(start, end, pitch, _order(start, pitch), owner, out_pitch, out_onset)
    exp_pitch, exp_onset = ref.note_line(start, end, pitch, n_steps)
    np.testing.assert_array_equal(out_pitch, exp_pitch)
    np.testing.assert_array_equal(out_onset, exp_onset)


def _run_line(kernel, *args, n_steps):
    out_pitch = np.full(n_steps, -7, dtype=np.int16)
    out_onset = np.ones(n_steps, dtype=bool)
    kernel(*args, out_pitch, out_onset)
    return out_pitch, out_onset


@pytest.mark.parametrize("seed", range(12))
def test_bass_line_matches_reference(seed):
    rng = np.random.default_rng(seed)
    roll, onset = random_roll(rng, 64, int(rng.integers(0, 60)))
    got = _run_line(_k.bass_line, roll, onset, n_steps=64)
    exp = ref.bass_line(roll, onset)
    np.testing.assert_array_equal(got[0], exp[0])
    np.testing.assert_array_equal(got[1], exp[1])


@pytest.mark.parametrize("seed", range(12))
def test_harmony_line_matches_reference(seed):
    rng = np.random.default_rng(seed)
    roll, onset = random_roll(rng, 64, int(rng.integers(0, 60)), low=50, high=80)
    lead = rng.integers(-1, 90, 64).astype(np.int16)
    lead[rng.random(64) < 0.3] = -1
    bass = np.empty(64, dtype=np.int16)
    _k.bass_line(roll, onset, bass, np.empty(64, dtype=bool))
    got = _run_line(_k.harmony_line, roll, onset, lead, bass, n_steps=64)
    exp = ref.harmony_line(roll, onset, lead, bass)
    np.testing.assert_array_equal(got[0], exp[0])
    np.testing.assert_array_equal(got[1], exp[1])


@pytest.mark.parametrize("seed", range(8))
def test_drum_line_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 50))
    start = rng.integers(0, 48, n)
    keys = rng.choice(DRUM_KEYS, n).astype(np.int16)
    roll, onset = piano_roll(start, start + rng.integers(1, 4, n), keys, n_steps=48)
    got = _run_line(_k.drum_line, roll, onset, DRUM_PRIORITY, n_steps=48)
    exp = ref.drum_line(roll, onset, DRUM_PRIORITY)
    np.testing.assert_array_equal(got[0], exp[0])
    np.testing.assert_array_equal(got[1], exp[1])


@pytest.mark.parametrize("voice", ["pulse1", "pulse2", "triangle"])
def test_fold_octaves_matches_reference(voice):
    low, high = VOICE_RANGES[voice]
    pitch = np.concatenate([[-1], np.arange(128)]).astype(np.int16)
    out = np.empty_like(pitch)
    _k.fold_octaves(pitch, low, high, out)
    np.testing.assert_array_equal(out, ref.fold_octaves(pitch, low, high))
    assert ((out[1:] >= low) & (out[1:] <= high)).all()
    assert ((out[1:] - pitch[1:]) % 12 == 0).all()
    assert out[0] == -1


# --- the wrapper's contract ---------------------------------------------------------------------


def check_voice_invariants(arr: Arrangement) -> None:
    pitch, onset = arr.pitch, arr.onset
    assert pitch.dtype == np.int16 and onset.dtype == np.bool_
    assert not (onset & (pitch < 0)).any(), "onset on a silent step"
    previous = np.vstack([np.full((1, 4), -1, dtype=np.int16), pitch[:-1]])
    change = (pitch >= 0) & (pitch != previous)
    assert not (change & ~onset).any(), "a voice changes pitch without an onset"
    for voice, (low, high) in VOICE_RANGES.items():
        column = pitch[:, VOICE_NAMES.index(voice)]
        assert ((column == -1) | ((column >= low) & (column <= high))).all()
    assert np.isin(pitch[:, 3], np.concatenate([[-1], DRUM_KEYS])).all()


def test_empty_score():
    arr = reduce_voices(make_score(Notes.empty()), Notes.empty())
    assert arr.pitch.shape == (0, 4) and arr.onset.shape == (0, 4)
    arr = reduce_voices(make_score(Notes.empty()), Notes.empty(), n_steps=8)
    assert (arr.pitch == -1).all() and not arr.onset.any()


def test_lead_only_goes_to_pulse1_and_nothing_else():
    lead = make_notes([(0, 4, 60), (4, 8, 60), (8, 10, 64)])
    arr = reduce_voices(make_score(lead), lead)
    assert arr.pitch[:, 0].tolist() == [60] * 8 + [64] * 2
    assert np.flatnonzero(arr.onset[:, 0]).tolist() == [0, 4, 8]  # repeated 60 re-articulated
    assert (arr.pitch[:, 1:] == -1).all() and not arr.onset[:, 1:].any()


def test_chords_split_into_bass_and_harmony():
    lead = make_notes([(0, 8, 72)])
    chord = make_notes([(0, 8, 48), (0, 8, 55), (0, 8, 64), (4, 8, 67)], track=1)
    arr = reduce_voices(make_score(concat(lead, chord)), lead)
    check_voice_invariants(arr)
    assert (arr.pitch[:, 2] == 48).all() and arr.onset[:, 2].tolist() == [True] + [False] * 7
    # highest onset below the lead at 0 (64), then the new onset 67 wins over the held 64
    assert arr.pitch[:, 1].tolist() == [64] * 4 + [67] * 4
    assert np.flatnonzero(arr.onset[:, 1]).tolist() == [0, 4]


def test_harmony_keeps_its_held_note_against_lower_onsets():
    lead = make_notes([(0, 8, 76)])
    inner = make_notes([(0, 8, 67), (0, 8, 48), (2, 4, 60), (4, 6, 72)], track=1)
    arr = reduce_voices(make_score(concat(lead, inner)), lead)
    # 60 starts under the held 67: 67 goes on; 72 starts above it (still under the lead): taken
    assert arr.pitch[:, 1].tolist() == [67, 67, 67, 67, 72, 72, -1, -1]
    assert np.flatnonzero(arr.onset[:, 1]).tolist() == [0, 4]


def test_bass_holds_against_higher_onsets_and_takes_lower_ones():
    rows = [(0, 8, 40), (2, 3, 52), (4, 6, 36), (6, 8, 45)]
    arr = reduce_voices(make_score(make_notes(rows)), Notes.empty())
    # 52 starts above the held 40: kept out; 36 starts below: taken; when 36 ends, the new
    # onset 45 begins although 40 still sounds (a note is never picked up in its middle)
    assert arr.pitch[:, 2].tolist() == [40, 40, 40, 40, 36, 36, 45, 45]
    assert np.flatnonzero(arr.onset[:, 2]).tolist() == [0, 4, 6]


def test_notes_outside_ranges_are_octave_folded():
    lead = make_notes([(0, 2, 110), (2, 4, 30)])
    low_bass = make_notes([(0, 4, 12)], track=1)
    high_harmony = make_notes([(0, 4, 100)], track=2)
    arr = reduce_voices(make_score(concat(lead, low_bass, high_harmony)), lead)
    check_voice_invariants(arr)
    assert arr.pitch[:, 0].tolist() == [86, 86, 54, 54]
    assert arr.pitch[:, 2].tolist() == [36] * 4
    assert arr.pitch[0, 1] in (88, 76) and arr.pitch[0, 1] % 12 == 100 % 12


def test_drums_only_and_simultaneous_hits_follow_the_priority():
    drums = make_notes(
        [(0, 1, 42), (0, 1, 36), (1, 2, 42), (1, 2, 49), (2, 3, 38), (2, 3, 57), (3, 4, 46), (3, 4, 44), (5, 8, 51)],
        drum=True,
    )
    arr = reduce_voices(make_score(drums), Notes.empty())
    check_voice_invariants(arr)
    assert arr.pitch[:, 3].tolist() == [36, 49, 38, 46, -1, 42, 42, 42]
    assert arr.onset[:, 3].tolist() == [True, True, True, True, False, True, False, False]
    assert (arr.pitch[:, :3] == -1).all()


def test_drum_map_covers_general_midi_and_fixes_the_class_keys():
    assert (GM_DRUM_MAP[35:82] >= 0).all()
    assert np.isin(GM_DRUM_MAP[GM_DRUM_MAP >= 0], DRUM_KEYS).all()
    np.testing.assert_array_equal(GM_DRUM_MAP[DRUM_KEYS], DRUM_KEYS)
    assert GM_DRUM_MAP[39] == 38 and GM_DRUM_MAP[0] == -1 and GM_DRUM_MAP[127] == -1
    assert sorted(DRUM_PRIORITY.tolist()) == sorted(DRUM_KEYS.tolist())


def test_drum_and_lead_notes_stay_out_of_bass_and_harmony():
    lead = make_notes([(0, 4, 70)])
    doubled = make_notes([(0, 4, 70)], track=3)  # the melody doubled in another track
    drums = make_notes([(0, 4, 36)], drum=True)
    arr = reduce_voices(make_score(concat(lead, doubled, drums)), lead)
    assert (arr.pitch[:, 1:3] == -1).all()
    assert arr.pitch[0, 3] == 36


@pytest.mark.parametrize("seed", range(6))
def test_random_songs_keep_the_invariants_and_the_source_onsets(seed):
    rng = np.random.default_rng(seed)
    start, end, pitch = random_rows(rng, 120, 96)
    start = np.maximum(start, 0)
    lead_rows = [(s, s + 2, p) for s, p in zip(range(0, 96, 2), rng.integers(60, 84, 48), strict=True)]
    lead = make_notes(lead_rows)
    other = make_notes(zip(start, end, pitch, strict=True), track=1)
    drums = make_notes(zip(start[:30], start[:30] + 1, rng.integers(30, 90, 30), strict=True), drum=True)
    notes = concat(lead, other, drums)
    before = [a.copy() for a in (notes.start_tick, notes.pitch)]
    arr = reduce_voices(make_score(notes), lead, n_steps=100)
    assert arr.pitch.shape == (100, 4)
    check_voice_invariants(arr)
    np.testing.assert_array_equal(notes.start_tick, before[0])
    np.testing.assert_array_equal(notes.pitch, before[1])
    starts = np.zeros(100, dtype=bool)
    starts[start[start < 100]] = True
    assert not (arr.onset[:, 1] & ~starts).any() and not (arr.onset[:, 2] & ~starts).any()
    assert np.flatnonzero(arr.onset[:, 0]).tolist() == list(range(0, 96, 2))


def test_n_steps_cuts_and_pads():
    lead = make_notes([(0, 4, 60), (6, 12, 62)])
    short = reduce_voices(make_score(lead), lead, n_steps=8)
    assert short.pitch[:, 0].tolist() == [60] * 4 + [-1] * 2 + [62] * 2
    long = reduce_voices(make_score(lead), lead, n_steps=14)
    assert long.pitch[12:, 0].tolist() == [-1, -1]


def test_steps_per_beat_changes_the_grid():
    lead = make_notes([(0, 4, 60)])  # one beat
    arr = reduce_voices(make_score(lead), lead, steps_per_beat=8)
    assert len(arr) == 8 and arr.steps_per_beat == 8


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_bad_n_steps_is_a_parameter_error(bad):
    with pytest.raises(ParameterError, match="n_steps"):
        reduce_voices(make_score(Notes.empty()), Notes.empty(), n_steps=bad)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="steps_per_beat"):
        reduce_voices(make_score(Notes.empty()), Notes.empty(), steps_per_beat=0)
    with pytest.raises(TypeError, match="lead"):
        reduce_voices(make_score(Notes.empty()), np.zeros(3))
    with pytest.raises(ParameterError, match="voice"):
        voice_notes(Arrangement(np.zeros((2, 4)), np.zeros((2, 4))), 4)


# --- voice_notes ----------------------------------------------------------------------------------


def grid_from_notes(start, end, pitch, n_steps):
    out_pitch = np.full(n_steps, -1, dtype=np.int16)
    out_onset = np.zeros(n_steps, dtype=bool)
    for s, e, p in zip(start, end, pitch, strict=True):
        out_pitch[s:e] = p
        out_onset[s] = True
    return out_pitch, out_onset


@pytest.mark.parametrize("seed", range(4))
def test_voice_notes_round_trip(seed):
    rng = np.random.default_rng(seed)
    start, end, pitch = random_rows(rng, 150, 120)
    lead = make_notes(zip(np.maximum(start[:40], 0), end[:40], pitch[:40] + 10, strict=True))
    other = make_notes(zip(np.maximum(start[40:], 0), end[40:], pitch[40:], strict=True), track=1)
    drums = make_notes(zip(np.maximum(start[:40], 0), end[:40], rng.integers(35, 82, 40), strict=True), drum=True)
    arr = reduce_voices(make_score(concat(lead, other, drums)), lead)
    for voice in range(4):
        s, e, p = voice_notes(arr, voice)
        assert s.dtype == np.int64 and p.dtype == np.int16 and (e > s).all()
        assert len(s) == arr.onset[:, voice].sum()
        grid_pitch, grid_onset = grid_from_notes(s, e, p, len(arr))
        np.testing.assert_array_equal(grid_pitch, arr.pitch[:, voice])
        np.testing.assert_array_equal(grid_onset, arr.onset[:, voice])


def test_voice_notes_splits_repeated_pitches_and_pitch_changes_without_onset():
    pitch = np.full((6, 4), -1, dtype=np.int16)
    onset = np.zeros((6, 4), dtype=bool)
    pitch[:, 0] = [60, 60, 60, 62, -1, 64]
    onset[:, 0] = [True, False, True, False, True, False]
    s, e, p = voice_notes(Arrangement(pitch, onset), 0)
    assert s.tolist() == [0, 2, 3, 5] and e.tolist() == [2, 3, 4, 6] and p.tolist() == [60, 60, 62, 64]


# --- corpus sanity: the chorale bass is the triangle ------------------------------------------

#: bench/measure_voices.py: 0.994 over all 365 chorales, 0.993 on this every-12th sample.
CHORALE_BASS_MIN = 0.97


def test_chorale_bass_is_recovered(corpora):
    files = sorted((corpora / "bach_chorales").glob("*.mid"))[::12]
    assert len(files) >= 20
    agree = total = 0
    for path in files:
        score = read_midi(path)
        notes = score.notes
        channel = notes.channel
        arr = reduce_voices(score, notes.take(channel == 0))
        bass = notes.take(channel == 3)
        s, e = quantize_notes(bass, score.ticks_per_beat)
        truth = np.full(len(arr), -1, dtype=np.int16)
        for a, b, p in zip(s, e, bass.pitch, strict=True):
            truth[a:b] = p
        sounding = truth >= 0
        folded = truth.copy()
        _k.fold_octaves(truth, *VOICE_RANGES["triangle"], folded)
        agree += int((arr.pitch[sounding, 2] == folded[sounding]).sum())
        total += int(sounding.sum())
    assert agree / total >= CHORALE_BASS_MIN
