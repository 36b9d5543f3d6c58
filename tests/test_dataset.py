"""Dataset: shards round trip, transposition properties, split by song."""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from chiptuner.corpus.convert import convert_corpus
from chiptuner.corpus.dataset import (
    CACHE_NAME,
    SHIFTS,
    load_shards,
    open_cache,
    safe_shifts,
    song_group,
    split_by_song,
    transpose,
)
from chiptuner.errors import OutputError, ParameterError
from chiptuner.model.arranger import voices_to_tokens
from chiptuner.pipeline import SONG_KEYS, STEP_KEYS
from chiptuner.voices import VOICE_RANGES

RANGES = [VOICE_RANGES["pulse1"], VOICE_RANGES["pulse2"], VOICE_RANGES["triangle"]]


def random_song(n_steps: int, seed: int, *, in_range: bool = True) -> dict[str, np.ndarray]:
    """Arrays shaped like pipeline.song_arrays, with rests, drums and in-range voices."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key in ("melody_pitch", "full_pitch"):
        pitch = rng.integers(0, 128, n_steps).astype(np.int16)
        pitch[rng.random(n_steps) < 0.3] = -1
        out[key] = pitch
    voices = np.empty((n_steps, 4), dtype=np.int16)
    for column, (low, high) in enumerate(RANGES):
        if in_range:
            voices[:, column] = rng.integers(low, high + 1, n_steps)
        else:
            voices[:, column] = rng.integers(0, 128, n_steps)
    voices[:, 3] = rng.choice([36, 38, 42, 46, 49], n_steps)
    voices[rng.random((n_steps, 4)) < 0.3] = -1
    out["voice_pitch"] = voices
    for key in ("melody_onset", "full_onset", "lane_onset"):
        out[key] = rng.random(n_steps) < 0.4
    out["voice_onset"] = rng.random((n_steps, 4)) < 0.4
    out["lane"] = rng.integers(-1, 5, n_steps).astype(np.int8)
    out["step_in_bar"] = (np.arange(n_steps) % 16).astype(np.int8)
    out["ticks_per_beat"] = np.array(480, dtype=np.int32)
    out["steps_per_beat"] = np.array(4, dtype=np.int8)
    out["n_notes"] = np.array(n_steps // 3, dtype=np.int64)
    return out


# ----------------------------------------------------------------------------- shards


def seeded_converter(path: str) -> dict[str, np.ndarray]:
    n_steps, seed = (int(word) for word in Path(path).read_text().split())
    return random_song(n_steps, seed)


def test_load_shards_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    songs = {f"sub/s{i}.mid" if i % 2 else f"s{i}.mid": (20 + 7 * i, i) for i in range(11)}
    for name, (n_steps, seed) in songs.items():
        (src / name).write_text(f"{n_steps} {seed}")
    convert_corpus([src], tmp_path / "out", workers=2, songs_per_shard=4, converter=seeded_converter)
    assert len(json.loads((tmp_path / "out" / "report.json").read_text())["shards"]) == 3
    corpus = load_shards(tmp_path / "out")
    assert sorted(corpus.song_ids.tolist()) == sorted(songs)
    assert corpus.n_steps == sum(n for n, _ in songs.values())
    assert set(corpus.steps) == set(STEP_KEYS) and set(corpus.songs) == set(SONG_KEYS)
    for key, dtype in {**STEP_KEYS, **SONG_KEYS}.items():
        array = corpus.steps.get(key, corpus.songs.get(key))
        assert array.dtype == dtype, key
        assert not array.flags.writeable
    for i, song in enumerate(corpus):
        expected = random_song(*songs[corpus.song_ids[i]])
        assert set(song) == set(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(song[key], value, err_msg=key)
    with pytest.raises(IndexError):
        corpus.song(len(corpus))


def test_load_shards_ignores_a_shard_the_report_does_not_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"s{i}.mid").write_text(f"30 {i}")
    out = tmp_path / "out"
    convert_corpus([src], out, workers=1, songs_per_shard=2, converter=seeded_converter)
    (out / "shard-00009.npz").write_bytes((out / "shard-00000.npz").read_bytes())  # left by a killed run
    assert len(load_shards(out)) == 3


def test_load_shards_errors(tmp_path):
    with pytest.raises(ParameterError, match="no such folder"):
        load_shards(tmp_path / "missing")
    with pytest.raises(ParameterError, match="no shards"):
        load_shards(tmp_path)


# ----------------------------------------------------------------------------- training cache


def _seeded_conversion(tmp_path: Path, n_songs: int, songs_per_shard: int = 4) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for i in range(n_songs):
        (src / f"s{i:02d}.mid").write_text(f"{20 + 7 * i} {i}")
    out = tmp_path / "out"
    convert_corpus([src], out, workers=1, songs_per_shard=songs_per_shard, converter=seeded_converter)
    return out


def _is_mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_open_cache_maps_what_load_shards_loads(tmp_path):
    out = _seeded_conversion(tmp_path, 11)
    expected = load_shards(out)
    corpus = open_cache(out)
    assert corpus.folder.parent == out / CACHE_NAME
    np.testing.assert_array_equal(corpus.song_ids, expected.song_ids)
    np.testing.assert_array_equal(corpus.offsets, expected.offsets)
    assert set(corpus.steps) == set(expected.steps) and set(corpus.songs) == set(expected.songs)
    for key, array in expected.steps.items():
        mapped = corpus.steps[key]
        assert mapped.dtype == array.dtype and _is_mapped(mapped) and not mapped.flags.writeable, key
        np.testing.assert_array_equal(mapped, array, err_msg=key)
    for key, array in expected.songs.items():
        np.testing.assert_array_equal(corpus.songs[key], array, err_msg=key)
    assert corpus.tokens.dtype == np.int16 and _is_mapped(corpus.tokens)
    for i, song in enumerate(expected):
        start, end = corpus.offsets[i], corpus.offsets[i + 1]
        np.testing.assert_array_equal(
            corpus.tokens[start:end], voices_to_tokens(song["voice_pitch"], song["voice_onset"])
        )
    # each .npy is an ordinary one
    np.testing.assert_array_equal(np.load(corpus.folder / "step.voice_pitch.npy"), expected.steps["voice_pitch"])
    # released pages come back from the file
    before = np.array(corpus.steps["melody_pitch"])
    corpus.release()
    np.testing.assert_array_equal(corpus.steps["melody_pitch"], before)


def test_open_cache_is_written_once_and_again_when_the_shards_change(tmp_path):
    out = _seeded_conversion(tmp_path, 6)
    first = open_cache(out).folder
    written = (first / "step.lane.npy").stat().st_mtime_ns
    assert open_cache(out).folder == first and (first / "step.lane.npy").stat().st_mtime_ns == written
    # a conversion resumed with more songs
    for i in range(6, 9):
        (tmp_path / "src" / f"s{i:02d}.mid").write_text(f"{20 + 7 * i} {i}")
    convert_corpus([tmp_path / "src"], out, workers=1, songs_per_shard=4, converter=seeded_converter)
    grown = open_cache(out)
    assert grown.folder != first and len(grown) == 9 and not first.exists()
    # a shard rewritten in place (same name) is seen by its modification time
    shard = out / "shard-00000.npz"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    assert open_cache(out).folder != grown.folder
    assert [p.name for p in (out / CACHE_NAME).iterdir()] == [open_cache(out).folder.name]


def test_open_cache_elsewhere_and_its_errors(tmp_path):
    out = _seeded_conversion(tmp_path, 3)
    corpus = open_cache(out, cache_root=tmp_path / "cache")
    assert corpus.folder.parent == tmp_path / "cache" and not (out / CACHE_NAME).exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="while writing the training cache"):
        open_cache(out, cache_root=tmp_path / "file" / "cache")
    with pytest.raises(ParameterError, match="no such folder"):
        open_cache(tmp_path / "missing")
    with pytest.raises(ParameterError, match="no shards"):
        open_cache(tmp_path / "src")


# ----------------------------------------------------------------------------- transposition


@pytest.mark.parametrize("semitones", SHIFTS.tolist())
@pytest.mark.parametrize("seed", range(3))
def test_transpose_properties(semitones, seed):
    song = random_song(500, seed)
    before = {key: np.array(value, copy=True) for key, value in song.items()}
    out = transpose(song, semitones)
    for key, value in song.items():  # input untouched
        np.testing.assert_array_equal(value, before[key])
    # drums and rests untouched, rests stay rests
    np.testing.assert_array_equal(out["voice_pitch"][:, 3], song["voice_pitch"][:, 3])
    for key in ("melody_pitch", "full_pitch"):
        np.testing.assert_array_equal(out[key] == -1, song[key] == -1)
        assert out[key].dtype == np.int16
        assert out[key].max() <= 127
    np.testing.assert_array_equal(out["voice_pitch"] == -1, song["voice_pitch"] == -1)
    # ranges respected
    for column, (low, high) in enumerate(RANGES):
        pitch = out["voice_pitch"][:, column]
        assert np.all((pitch == -1) | ((pitch >= low) & (pitch <= high)))
    # pitch classes move by the shift
    sounding = song["voice_pitch"][:, :3] >= 0
    np.testing.assert_array_equal(
        (out["voice_pitch"][:, :3][sounding] - song["voice_pitch"][:, :3][sounding]) % 12, semitones % 12
    )
    # unchanged arrays are the same objects
    for key in ("melody_onset", "voice_onset", "lane", "step_in_bar", "n_notes"):
        assert out[key] is song[key]
    # inverse where no folding happened
    back = transpose(out, -semitones) if -semitones in SHIFTS else None
    if back is not None:
        for column, (low, high) in enumerate(RANGES):
            original = song["voice_pitch"][:, column]
            unfolded = (original < 0) | ((original + semitones >= low) & (original + semitones <= high))
            np.testing.assert_array_equal(back["voice_pitch"][unfolded, column], original[unfolded])
        melody = song["melody_pitch"]
        kept = (melody < 0) | ((melody + semitones >= 0) & (melody + semitones <= 127))
        np.testing.assert_array_equal(back["melody_pitch"][kept], melody[kept])


def test_folding_happens_at_the_range_edges():
    song = random_song(4, 0)
    voices = np.array([[96, 40, 28, 36], [93, 88, 64, 42], [50, 41, 30, -1], [-1, -1, -1, 49]], dtype=np.int16)
    song["voice_pitch"] = voices
    up = transpose(song, 4)["voice_pitch"]
    np.testing.assert_array_equal(up, [[88, 44, 32, 36], [85, 80, 56, 42], [54, 45, 34, -1], [-1, -1, -1, 49]])
    down = transpose(song, -3)["voice_pitch"]
    np.testing.assert_array_equal(down, [[93, 49, 37, 36], [90, 85, 61, 42], [59, 50, 39, -1], [-1, -1, -1, 49]])


def test_out_of_range_input_is_shifted_not_folded():
    song = random_song(3, 0)
    song["voice_pitch"] = np.array([[100, 20, 70, 36], [30, 95, 10, 38], [125, 1, 127, 42]], dtype=np.int16)
    out = transpose(song, 3)["voice_pitch"]
    np.testing.assert_array_equal(out, [[103, 23, 73, 36], [33, 98, 13, 38], [116, 4, 118, 42]])


@pytest.mark.parametrize("seed", range(5))
def test_safe_shifts_invert_exactly(seed):
    song = random_song(64, seed)
    # narrow the voices so that some shifts need no folding
    song["voice_pitch"][:, :3] = np.where(song["voice_pitch"][:, :3] >= 0, 60, -1)
    song["melody_pitch"] = np.where(song["melody_pitch"] >= 0, song["melody_pitch"] % 100 + 10, -1).astype(np.int16)
    song["full_pitch"] = song["melody_pitch"]
    shifts = safe_shifts(song)
    assert 0 in shifts
    assert set(shifts.tolist()) == set(range(-5, 5))  # triangle tops out at 64: +5 and +6 fold
    for s in shifts.tolist():
        if -s in SHIFTS:
            back = transpose(transpose(song, s), -s)
            for key in ("melody_pitch", "full_pitch", "voice_pitch"):
                np.testing.assert_array_equal(back[key], song[key])


@pytest.mark.parametrize("bad", [7, -6, 1.5, "2", True])
def test_transpose_refuses_bad_shifts(bad):
    with pytest.raises(ParameterError, match="semitones"):
        transpose(random_song(4, 0), bad)


# ----------------------------------------------------------------------------- split


def test_song_group():
    assert song_group("pop909/POP909/001/001.mid") == song_group("pop909/POP909/001/versions/001-v3.mid")
    assert song_group("nottingham/MIDI/ashover1.mid") == song_group("nottingham/MIDI/melody/ashover1.mid")
    assert song_group("nottingham/MIDI/ashover1.mid") == song_group("nottingham/MIDI/chords/ashover1.mid")
    assert song_group("nottingham/MIDI/ashover1.mid") != song_group("nottingham/MIDI/ashover10.mid")
    assert song_group("a/x.mid") != song_group("b/x.mid")


@pytest.mark.parametrize("seed", range(4))
def test_split_never_puts_one_song_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(60):
        ids.append(f"pop909/POP909/{i:03d}/{i:03d}.mid")
        ids.extend(f"pop909/POP909/{i:03d}/versions/{i:03d}-v{k}.mid" for k in range(rng.integers(0, 4)))
    ids.extend(f"nottingham/MIDI/{kind}tune{i}.mid" for i in range(30) for kind in ("", "melody/", "chords/"))
    ids = list(rng.permutation(ids))
    train, test = split_by_song(ids, test_size=0.25, seed=seed)
    assert len(train) and len(test)
    np.testing.assert_array_equal(np.sort(np.concatenate((train, test))), np.arange(len(ids)))
    train_groups = {song_group(ids[i]) for i in train}
    test_groups = {song_group(ids[i]) for i in test}
    assert not train_groups & test_groups
    assert 0.15 < len(test_groups) / (len(train_groups) + len(test_groups)) < 0.35
    again = split_by_song(ids, test_size=0.25, seed=seed)
    np.testing.assert_array_equal(again[1], test)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1])
def test_split_bad_test_size(test_size):
    with pytest.raises(ParameterError, match="test_size"):
        split_by_song(["a.mid", "b.mid"], test_size=test_size)


def test_split_needs_two_songs():
    with pytest.raises(ParameterError, match="2 songs or more"):
        split_by_song(["a/1.mid", "a/versions/1-v1.mid"], test_size=0.5)
