"""One song to training arrays: shapes, agreement with the stages, bar positions, refusals."""

from __future__ import annotations

import random
import typing

import numpy as np
import pytest

from chiptuner import MidiFileError, ParameterError, write_midi
from chiptuner.melody import MaxOnsets, extract_melody, melody_notes, simplify, to_buttons
from chiptuner.pipeline import (
    MIN_MELODY_ONSETS,
    SONG_KEYS,
    STEP_KEYS,
    SongRejected,
    convert_file,
    song_arrays,
    step_in_bar,
)
from chiptuner.timebase import ticks_to_steps
from chiptuner.types import Notes, Score, TempoMap, TimeSignatures
from chiptuner.voices import reduce_voices

TPB = 96


def make_score(
    *,
    bars: int = 8,
    melody: bool = True,
    bass: bool = True,
    drums: bool = True,
    signatures: tuple[tuple[int, int, int], ...] = ((0, 4, 4),),
    seed: int = 0,
) -> Score:
    """A melody on channel 0 (quarter notes), a bass on channel 1 (half notes), hats on channel 10."""
    rng = np.random.default_rng(seed)
    rows = []  # start, end, pitch, channel
    beats = bars * 4
    if melody:
        pitch = 67 + np.cumsum(rng.integers(-3, 4, beats)) % 12
        rows += [(b * TPB, (b + 1) * TPB, int(p), 0) for b, p in enumerate(pitch)]
    if bass:
        rows += [(b * TPB, (b + 2) * TPB, 36 + int(rng.integers(0, 12)), 1) for b in range(0, beats, 2)]
    if drums:
        rows += [(s * TPB // 2, s * TPB // 2 + 10, 42, 9) for s in range(beats * 2)]
    rows.sort()
    start, end, pitch, channel = (
        (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True)) if rows else ([],) * 4
    )
    n = len(rows)
    channel = np.asarray(channel, dtype=np.int8)
    notes = Notes(start, end, pitch, np.full(n, 100), channel, np.zeros(n), channel.astype(np.int32), channel == 9)
    tick, num, den = (np.array(column) for column in zip(*signatures, strict=True)) if signatures else ([],) * 3
    return Score(
        notes,
        TempoMap(np.zeros(1, np.int64), np.full(1, 500_000, np.int64)),
        TimeSignatures(tick, num, den),
        TPB,
        ("lead", "bass", "drums"),
    )


# ----------------------------------------------------------------------------- song_arrays


@pytest.mark.parametrize("max_onsets", typing.get_args(MaxOnsets))
@pytest.mark.parametrize("seed", range(3))
def test_song_arrays_shapes_and_agreement_with_the_stages(max_onsets, seed):
    score = make_score(seed=seed)
    arrays = song_arrays(score, max_onsets=max_onsets)
    assert set(arrays) == set(STEP_KEYS) | set(SONG_KEYS)
    n_steps = 8 * 16
    for key, dtype in STEP_KEYS.items():
        assert arrays[key].dtype == dtype, key
        assert arrays[key].shape == ((n_steps, 4) if key.startswith("voice") else (n_steps,)), key
    for key, dtype in SONG_KEYS.items():
        assert arrays[key].shape == () and arrays[key].dtype == dtype, key
    assert int(arrays["n_notes"]) == len(score.notes)
    assert int(arrays["ticks_per_beat"]) == TPB and int(arrays["steps_per_beat"]) == 4

    full = extract_melody(score)
    simple = simplify(full, max_onsets=max_onsets)
    lane, lane_onset = to_buttons(simple)
    voices = reduce_voices(score, melody_notes(score), n_steps=n_steps)
    np.testing.assert_array_equal(arrays["full_pitch"][: len(full)], full.pitch)
    np.testing.assert_array_equal(arrays["melody_pitch"][: len(simple)], simple.pitch)
    np.testing.assert_array_equal(arrays["melody_onset"][: len(simple)], simple.onset)
    np.testing.assert_array_equal(arrays["lane"][: len(lane)], lane)
    np.testing.assert_array_equal(arrays["lane_onset"][: len(lane)], lane_onset)
    np.testing.assert_array_equal(arrays["voice_pitch"], voices.pitch)
    np.testing.assert_array_equal(arrays["voice_onset"], voices.onset)
    np.testing.assert_array_equal(arrays["step_in_bar"], np.arange(n_steps) % 16)
    # the melody here is the quarter-note line on channel 0, one onset per beat
    assert 28 <= arrays["full_onset"].sum() <= 32
    assert arrays["melody_onset"].sum() <= arrays["full_onset"].sum()


def test_melody_shorter_than_the_song_is_padded_with_rests():
    score = make_score(bars=8)
    keep = ~((score.notes.channel == 0) & (score.notes.start_tick >= 6 * 4 * TPB))  # melody stops after 6 bars
    short = Score(score.notes.take(keep), score.tempo, score.time_signatures, TPB, score.track_names)
    arrays = song_arrays(short)
    assert arrays["melody_pitch"].shape == (8 * 16,)
    assert np.all(arrays["melody_pitch"][6 * 16 :] == -1)
    assert not arrays["melody_onset"][6 * 16 :].any()
    assert np.all(arrays["lane"][6 * 16 :] == -1)
    assert arrays["voice_onset"][6 * 16 :, 2].any()  # the bass goes on


def test_song_arrays_does_not_mutate_the_score():
    score = make_score()
    before = score.notes.pitch.copy()
    song_arrays(score)
    np.testing.assert_array_equal(score.notes.pitch, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"melody": False, "bass": False, "drums": False}, "no notes"),
        ({"bars": 2}, "too short"),
        ({"bass": False, "drums": False}, "no accompaniment"),
    ],
)
def test_refusals(kwargs, match):
    with pytest.raises(SongRejected, match=match) as info:
        song_arrays(make_score(**kwargs))
    assert isinstance(info.value, MidiFileError)


def test_refuses_a_song_without_a_usable_melody():
    # eight bars of hi-hats and a few sparse pitched notes
    score = make_score(melody=False, bass=False)
    n_sparse = MIN_MELODY_ONSETS - 4
    start = np.arange(n_sparse, dtype=np.int64) * 8 * TPB
    notes = score.notes
    merged = Notes(
        np.concatenate((notes.start_tick, start)),
        np.concatenate((notes.end_tick, start + TPB)),
        np.concatenate((notes.pitch, np.full(n_sparse, 60))),
        np.concatenate((notes.velocity, np.full(n_sparse, 90))),
        np.concatenate((notes.channel, np.zeros(n_sparse))),
        np.concatenate((notes.program, np.zeros(n_sparse))),
        np.concatenate((notes.track, np.zeros(n_sparse))),
        np.concatenate((notes.is_drum, np.zeros(n_sparse, bool))),
    )
    with pytest.raises(SongRejected, match="no usable melody") as info:
        song_arrays(Score(merged, score.tempo, score.time_signatures, TPB))
    assert info.value.n_notes == len(merged)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"max_onsets": "bar"}, "max_onsets"), ({"steps_per_beat": 0}, "steps_per_beat")]
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        song_arrays(make_score(), **kwargs)


def test_convert_file_reads_and_converts(tmp_path):
    score = make_score(seed=4)
    write_midi(score, tmp_path / "song.mid")
    arrays = convert_file(tmp_path / "song.mid")
    expected = song_arrays(score)
    for key in STEP_KEYS:
        np.testing.assert_array_equal(arrays[key], expected[key], err_msg=key)
    (tmp_path / "bad.mid").write_bytes(b"MThd\x00")
    with pytest.raises(MidiFileError):
        convert_file(tmp_path / "bad.mid")


# ----------------------------------------------------------------------------- step_in_bar


def step_in_bar_reference(signatures, ticks_per_beat, n_steps, steps_per_beat):
    """Walk the steps one by one, starting a bar at each sane signature."""
    sane = []
    for tick, num, den in signatures:
        whole = num * 4 * steps_per_beat / den
        if (
            2 <= num <= 16
            and den in (2, 4, 8, 16)
            and whole == int(whole)
            and 1.5 * steps_per_beat <= whole <= 12 * steps_per_beat
        ):
            step = int(ticks_to_steps(np.array([tick]), ticks_per_beat, steps_per_beat=steps_per_beat)[0])
            sane.append((step, int(whole)))
    out = []
    bar, position = 4 * steps_per_beat, 0
    for t in range(n_steps):
        changes = [length for step, length in sane if step == t]
        if changes:
            if changes[-1] != bar or position != 0:
                position = 0
            bar = changes[-1]
        out.append(position)
        position = (position + 1) % bar
    return np.array(out, dtype=np.int8)


@pytest.mark.parametrize(
    ("signatures", "expected_head"),
    [
        ((), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0]),
        (((0, 3, 4),), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]),
        (((0, 6, 8),), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]),
        (((0, 1, 4),), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0]),  # POP909's 1/4: ignored
        (((0, 64, 128),), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0]),
        (((0, 2, 4), (TPB, 3, 8)), [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 1]),  # a change off the bar line restarts
    ],
)
def test_step_in_bar_cases(signatures, expected_head):
    ts = (
        TimeSignatures(*(np.array(c) for c in zip(*signatures, strict=True)))
        if signatures
        else TimeSignatures([], [], [])
    )
    out = step_in_bar(ts, TPB, 40)
    assert out.dtype == np.int8 and out.shape == (40,)
    np.testing.assert_array_equal(out[: len(expected_head)], expected_head)


@pytest.mark.parametrize("seed", range(30))
def test_step_in_bar_matches_reference(seed):
    rng = random.Random(seed)
    spb = rng.choice([2, 4, 8])
    tpb = rng.choice([96, 480, 1024])
    signatures = sorted(
        (
            rng.randrange(0, 64 * tpb),
            rng.choice([1, 2, 3, 4, 5, 6, 7, 9, 12, 64]),
            rng.choice([1, 2, 4, 8, 16, 32, 128]),
        )
        for _ in range(rng.randrange(0, 6))
    )
    n_steps = rng.randrange(0, 300)
    ts = (
        TimeSignatures(*(np.array(c) for c in zip(*signatures, strict=True)))
        if signatures
        else TimeSignatures([], [], [])
    )
    np.testing.assert_array_equal(
        step_in_bar(ts, tpb, n_steps, steps_per_beat=spb), step_in_bar_reference(signatures, tpb, n_steps, spb)
    )


def test_step_in_bar_with_ticks_beyond_int64_arithmetic_wraps_as_ticks_to_steps():
    # 8 * 2**61 and 8 * (2**62 - 1) wrap to 0 and -8 in int64: ticks_to_steps puts both
    # signatures on step 0, so the last one (2/4) holds from there. Python integers would
    # have put them far beyond the grid and kept 3/4.
    ticks = np.array([0, 2**61, 2**62 - 1], dtype=np.int64)
    assert ticks_to_steps(ticks, TPB).tolist() == [0, 0, 0]
    ts = TimeSignatures(ticks, np.array([3, 3, 2]), np.array([4, 4, 4]))
    np.testing.assert_array_equal(step_in_bar(ts, TPB, 64), np.arange(64) % 8)


# ----------------------------------------------------------------------------- real files


@pytest.mark.corpus
def test_a_sample_of_the_corpora_converts_or_is_rejected_with_a_reason(corpora):
    files = sorted(corpora.rglob("*.mid"))
    sample = random.Random(7).sample(files, 40)
    ok = 0
    for path in sample:
        try:
            arrays = convert_file(path)
        except MidiFileError as error:
            assert str(error), path
            continue
        ok += 1
        n_steps = len(arrays["melody_pitch"])
        assert all(len(arrays[key]) == n_steps for key in STEP_KEYS), path
        pitched = arrays["voice_pitch"][:, :3]
        assert pitched[pitched >= 0].min() >= 28 and pitched.max() <= 96, path
    assert ok >= 20
