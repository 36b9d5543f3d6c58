"""The arranger model: vocabulary, weights file, numba step against references and torch goldens."""

from __future__ import annotations

import hashlib
import io
import typing
from importlib import resources
from pathlib import Path

import mido
import numpy as np
import pytest

from chiptuner._kernels import arranger as _k
from chiptuner.arrange import melody_input
from chiptuner.errors import ModelFileError, ParameterError
from chiptuner.metrics import contour_violations, estimate_key, pool, song_statistics
from chiptuner.midi_io import read_midi
from chiptuner.model import (
    FIRST_NOTE,
    HOLD,
    MAX_POSITION,
    MIN_TEMPERATURE,
    N_TOKENS,
    REST,
    ROW_OFFSET,
    TOKEN_OFFSET,
    VOICE_HIGH,
    VOICE_LOW,
    Arranger,
    ArrangerModel,
    InputMode,
    default_model_path,
    load_model,
    teacher_forced_log_prob,
    tokens_to_arrangement,
    voices_to_tokens,
)
from chiptuner.voices import DRUM_KEYS
from tests.reference import arranger_logits_reference

DATA = Path(__file__).resolve().parent / "data"
MELODY = str(resources.files("chiptuner") / "examples" / "ode_to_joy_melody.mid")


def random_model(hidden: int = 12, seed: int = 0, scale: float = 0.5) -> ArrangerModel:
    rng = np.random.default_rng(seed)
    n_out = int(TOKEN_OFFSET[-1])

    def f(*shape):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return ArrangerModel(
        f(int(ROW_OFFSET[-1]), 3 * hidden + n_out),
        f(3 * hidden),
        f(3 * hidden),
        f(hidden, 3 * hidden),
        f(hidden, n_out),
        f(n_out),
    )


def random_melody(n_steps: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    pitch = np.where(rng.random(n_steps) < 0.2, -1, rng.integers(20, 110, n_steps))
    onset = (rng.random(n_steps) < 0.4) & (pitch >= 0)
    position = np.arange(n_steps) % 16
    return pitch, onset, position


# ----------------------------------------------------------------------------- vocabulary


def test_token_layout_matches_the_voice_ranges():
    assert N_TOKENS == (2 + 49, 2 + 49, 2 + 37, 2 + 5)
    assert TOKEN_OFFSET.tolist() == [0, 51, 102, 141, 148]
    assert ROW_OFFSET[-1] == 129 + 6 + 2 + 2 + (MAX_POSITION + 1) + sum(N_TOKENS)


def test_voices_to_tokens_and_back_round_trip():
    pitch = np.array([[60, 40, 30, 36], [60, 40, 30, -1], [62, -1, 30, 42], [-1, 45, 31, 42], [-1, 45, -1, 49]])
    onset = np.array([[1, 1, 1, 1], [0, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=bool)
    tokens = voices_to_tokens(pitch, onset)
    assert tokens[:, 0].tolist() == [FIRST_NOTE + 12, HOLD, FIRST_NOTE + 14, REST, REST]
    assert tokens[:, 2].tolist() == [FIRST_NOTE + 2, FIRST_NOTE + 2, HOLD, FIRST_NOTE + 3, REST]
    assert tokens[:, 3].tolist() == [FIRST_NOTE + 0, REST, FIRST_NOTE + 2, HOLD, FIRST_NOTE + 4]
    back = tokens_to_arrangement(tokens)
    assert np.array_equal(back.pitch, pitch)
    assert np.array_equal(
        back.onset, onset | (np.diff(np.vstack([np.full((1, 4), -1), pitch]), axis=0) != 0) & (pitch >= 0)
    )


def test_voices_to_tokens_folds_out_of_range_pitches_and_drops_unknown_drums():
    pitch = np.array([[100, 30, 70, 37]])
    tokens = voices_to_tokens(pitch, np.ones((1, 4), bool))
    decoded = tokens_to_arrangement(tokens).pitch[0]
    assert decoded[0] == 88 and decoded[1] == 42 and decoded[2] == 58 and decoded[3] == -1


def test_voices_to_tokens_refuses_bad_shapes():
    with pytest.raises(ParameterError, match=r"\(T, 4\)"):
        voices_to_tokens(np.zeros((3, 3)), np.zeros((3, 3), bool))


# ----------------------------------------------------------------------------- the step


def test_step_logits_match_the_reference_on_random_models():
    for seed in range(3):
        model = random_model(hidden=10 + seed, seed=seed)
        pitch, onset, position = random_melody(40, seed)
        tokens = voices_to_tokens(*random_voices(40, seed))
        arranger = Arranger(model, follow_lead=False)
        rows_per_step, logits = [], []
        previous = np.zeros(4, dtype=np.int64)
        rows = np.zeros(_k.N_ROWS, dtype=np.int64)
        for t in range(40):
            _k.input_rows(ROW_OFFSET, False, pitch[t], onset[t], position[t], MAX_POSITION, previous, rows)
            rows_per_step.append(rows.copy())
            log_prob = teacher_forced_log_prob(
                model, pitch[: t + 1], onset[: t + 1], position[: t + 1], tokens[: t + 1]
            )
            logits.append(log_prob[-1])
            previous = tokens[t].copy()
        expected = arranger_logits_reference(model, rows_per_step)
        for t in range(40):
            for v in range(4):
                start, end = TOKEN_OFFSET[v], TOKEN_OFFSET[v + 1]
                voice = expected[t, start:end].copy()
                if (tokens[t - 1, v] if t else REST) == REST:
                    voice[HOLD] = -np.inf
                ref = voice[tokens[t, v]] - np.logaddexp.reduce(voice)
                assert logits[t][v] == pytest.approx(ref, rel=1e-5, abs=1e-5)
        del arranger


def random_voices(n_steps: int, seed: int):
    rng = np.random.default_rng(seed)
    pitch = np.full((n_steps, 4), -1)
    for v, (low, high) in enumerate(zip(VOICE_LOW.tolist(), VOICE_HIGH.tolist(), strict=True)):
        pitch[:, v] = np.where(rng.random(n_steps) < 0.3, -1, rng.integers(low, high + 1, n_steps))
    pitch[:, 3] = np.where(rng.random(n_steps) < 0.5, -1, rng.choice(DRUM_KEYS, n_steps))
    return pitch, rng.random((n_steps, 4)) < 0.5


def test_input_rows_pick_one_row_per_block():
    rows = np.zeros(_k.N_ROWS, dtype=np.int64)
    previous = np.array([3, 1, 0, 6])
    _k.input_rows(ROW_OFFSET, False, 60, True, 40, MAX_POSITION, previous, rows)
    assert rows.tolist() == [
        61,
        ROW_OFFSET[2] + 1,
        ROW_OFFSET[3],
        ROW_OFFSET[4] + MAX_POSITION,
        *(ROW_OFFSET[5:9] + previous),
    ]
    _k.input_rows(ROW_OFFSET, True, 4, False, -3, MAX_POSITION, previous, rows)
    assert rows[:4].tolist() == [ROW_OFFSET[1] + 5, ROW_OFFSET[2], ROW_OFFSET[3] + 1, ROW_OFFSET[4]]
    _k.input_rows(ROW_OFFSET, False, -1, True, 0, MAX_POSITION, previous, rows)  # an onset on a rest is no onset
    assert rows[:2].tolist() == [0, ROW_OFFSET[2]]


@pytest.mark.parametrize("mode", typing.get_args(InputMode))
def test_stepping_equals_the_batch_run_exactly(mode):
    model = random_model(hidden=16, seed=3)
    pitch, onset, position = random_melody(300, 4)
    melody = pitch if mode == "keys" else np.where(pitch >= 0, pitch % 5, -1)
    batch = Arranger(model, mode=mode, seed=11).run(melody, onset, position)
    stepper = Arranger(model, mode=mode, seed=11)
    stepped = np.array([stepper.step(m, o, p).copy() for m, o, p in zip(melody, onset, position, strict=True)])
    assert np.array_equal(batch, stepped)
    # Two halves of a run continue one another exactly.
    halves = Arranger(model, mode=mode, seed=11)
    assert np.array_equal(
        np.vstack(
            (
                halves.run(melody[:123], onset[:123], position[:123]),
                halves.run(melody[123:], onset[123:], position[123:]),
            )
        ),
        batch,
    )


def test_same_seed_same_arrangement_other_seed_other_arrangement():
    model = random_model(seed=5)
    pitch, onset, position = random_melody(200, 6)
    a = Arranger(model, seed=1).run(pitch, onset, position)
    b = Arranger(model, seed=1).run(pitch, onset, position)
    c = Arranger(model, seed=2).run(pitch, onset, position)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    arranger = Arranger(model, seed=1)
    arranger.run(pitch, onset, position)
    arranger.reset(1)
    assert np.array_equal(arranger.run(pitch, onset, position), a)


def test_hold_never_follows_a_rest_and_tokens_stay_in_each_vocabulary():
    model = random_model(seed=8, scale=1.5)
    pitch, onset, position = random_melody(2000, 9)
    tokens = Arranger(model, seed=3, temperature=2.0).run(pitch, onset, position)
    assert (tokens >= 0).all() and (tokens < np.array(N_TOKENS)).all()
    previous = np.vstack((np.zeros((1, 4), dtype=np.int64), tokens[:-1]))
    assert not ((tokens == HOLD) & (previous == REST)).any()


def test_lead_follows_the_player_in_keys_mode_and_starts_a_note_in_buttons_mode():
    model = random_model(seed=10)
    pitch, onset, position = random_melody(500, 11)
    arrangement = tokens_to_arrangement(Arranger(model, seed=0).run(pitch, onset, position))
    for t in np.flatnonzero(onset):
        lead = arrangement.pitch[t, 0]
        assert arrangement.onset[t, 0] and 48 <= lead <= 96 and (lead - pitch[t]) % 12 == 0
    lanes = np.where(pitch >= 0, pitch % 5, -1)
    tokens = Arranger(model, mode="buttons", seed=0).run(lanes, onset, position)
    assert (tokens[onset, 0] >= FIRST_NOTE).all()
    free = tokens_to_arrangement(Arranger(model, seed=0, follow_lead=False).run(pitch, onset, position))
    agree = [(free.pitch[t, 0] - pitch[t]) % 12 == 0 and free.onset[t, 0] for t in np.flatnonzero(onset)]
    assert np.mean(agree) < 0.5  # a random model does not follow by itself: the policy is what makes the lead


def test_sampling_follows_the_softmax_and_temperature_only_sharpens_the_note():
    logits = np.array([9.0, 0.5, 1.0, 2.0, 0.0, 1.5], dtype=np.float32)  # a voice's slice at offset 1
    rng = np.array([12345], dtype=np.uint64)
    scratch = np.zeros(8, dtype=np.float32)
    voice = logits[1:].astype(np.float64)
    as_trained = np.exp(voice) / np.exp(voice).sum()
    for temperature in (1.0, 0.5, 2.0):
        draws = np.array(
            [_k.sample_voice(logits, 1, 6, FIRST_NOTE, False, temperature, 0.0, rng, scratch) for _ in range(30000)]
        )
        expected = as_trained.copy()
        notes = np.exp(voice[FIRST_NOTE:] / temperature)
        expected[FIRST_NOTE:] = as_trained[FIRST_NOTE:].sum() * notes / notes.sum()
        assert np.allclose(np.bincount(draws, minlength=5) / len(draws), expected, atol=0.012), temperature
    cold = [_k.sample_voice(logits, 1, 6, FIRST_NOTE, True, 0.05, 0.0, rng, scratch) for _ in range(2000)]
    assert np.mean(np.array(cold) == 2) > 0.99
    after_rest = [_k.sample_voice(logits, 1, 6, REST, False, 1.0, 0.0, rng, scratch) for _ in range(3000)]
    assert HOLD not in after_rest and REST in after_rest
    onset_only = [_k.sample_voice(logits, 1, 6, FIRST_NOTE, True, 1.0, 0.0, rng, scratch) for _ in range(2000)]
    assert min(onset_only) >= FIRST_NOTE


def test_steering_moves_weight_off_clashes_and_out_of_key_notes_but_keeps_the_rest_share():
    # One pitched voice with 12 notes from C4 (60): rest, hold, then C..B.
    logits = np.zeros(14, dtype=np.float32)
    logits[0] = 1.0
    rng = np.array([777], dtype=np.uint64)
    scratch = np.zeros(14, dtype=np.float32)
    n = 40000

    def draws(**steer):
        return np.array(
            [_k.sample_voice(logits, 0, 14, FIRST_NOTE, False, 1.0, 0.0, rng, scratch, 60, **steer) for _ in range(n)]
        )

    free = draws()
    lead_e = draws(lead_class=4, held_pitch=62, clash_bias=20.0)  # lead E; holding D would be a 7th
    rest_share = np.exp(1.0) / (np.exp(1.0) + 13)
    for sample in (free, lead_e):
        assert abs(np.mean(sample == REST) - rest_share) < 0.01
    pitches = 60 + lead_e[lead_e >= FIRST_NOTE] - FIRST_NOTE
    assert set((pitches - 4) % 12) <= {0, 3, 4, 5, 7, 8, 9}
    assert np.mean(lead_e == HOLD) < 0.001 < np.mean(free == HOLD)
    c_major = draws(key=0, key_bias=20.0)
    pitches = 60 + c_major[c_major >= FIRST_NOTE] - FIRST_NOTE
    assert set(pitches % 12) == {0, 2, 4, 5, 7, 9, 11}
    assert abs(np.mean(c_major == REST) - rest_share) < 0.01


def test_a_note_limited_to_some_tokens_is_drawn_from_them_renormalised_at_the_temperature():
    logits = np.array([9.0, 0.5, 1.0, 2.0, 0.0, 1.5, 0.7], dtype=np.float32)  # rest, hold, 5 notes
    rng = np.array([4242], dtype=np.uint64)
    scratch = np.zeros(8, dtype=np.float32)
    for temperature in (1.0, 0.5):
        draws = np.array(
            [_k.sample_voice(logits, 0, 7, FIRST_NOTE, True, temperature, 0.0, rng, scratch, 0, first=3, stop=6)
             for _ in range(30000)]
        )  # fmt: skip
        weights = np.exp(logits[3:6].astype(np.float64) / temperature)
        expected = np.zeros(7)
        expected[3:6] = weights / weights.sum()
        assert np.allclose(np.bincount(draws, minlength=7) / len(draws), expected, atol=0.012), temperature


def test_key_tracking_follows_the_metrics_key_of_the_melody():
    pitch, onset, position = random_melody(400, 5)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    pitch = np.where(pitch >= 0, 62 + scale[pitch % 7], -1)  # D major
    arranger = Arranger(random_model(seed=3), seed=1)
    checked = 0
    for t in range(len(pitch)):
        arranger.step(pitch[t], onset[t], position[t])
        key_index = int(arranger._key_state[_k.KEY_INDEX])
        if np.count_nonzero(onset[: t + 1] & (pitch[: t + 1] >= 0)) < _k.KEY_MIN_ONSETS:
            assert key_index == -1
        elif onset[t] and pitch[t] >= 0:  # the key is re-estimated on each onset of the melody
            expected = estimate_key(pitch[: t + 1], onset[: t + 1])
            assert key_index == expected.tonic + (12 if expected.mode == "minor" else 0), t
            checked += 1
    assert checked > 100


def test_steering_raises_consonance_without_silencing_the_band():
    model = random_model(seed=21, scale=0.8)
    pitch, onset, position = random_melody(3000, 22)
    pitch = np.where(pitch >= 0, 57 + np.array([0, 2, 3, 5, 7, 8, 10])[pitch % 7], -1)  # A minor

    def stats(**steer):
        arrangement = tokens_to_arrangement(Arranger(model, seed=4, **steer).run(pitch, onset, position))
        return song_statistics(pitch, onset, arrangement.pitch, arrangement.onset)

    plain, steered = pool([stats(clash_bias=0.0, key_bias=0.0)]), pool([stats(clash_bias=3.0, key_bias=3.0)])
    assert steered["harmony"] > plain["harmony"] + 0.1
    assert steered["in_key"] > plain["in_key"] + 0.1
    assert abs(steered["silence"] - plain["silence"]) < 0.03


@pytest.mark.parametrize("name", ["clash_bias", "key_bias"])
@pytest.mark.parametrize("bad", [-0.5, float("nan"), 21.0, "loud", True])
def test_bad_steering_is_refused(name, bad):
    with pytest.raises(ParameterError, match=name):
        Arranger(random_model(), **{name: bad})


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "hot", True, 11.0, 1e-320, 0.049])
def test_bad_temperatures_are_refused(bad):
    with pytest.raises(ParameterError, match="temperature"):
        Arranger(random_model(), temperature=bad)


def test_the_temperature_floor_is_named_and_taken():
    # Below the floor the logits / temperature overflow to inf and NaN and sampling falls through.
    with pytest.raises(ParameterError, match=f"from {MIN_TEMPERATURE} to 10"):
        Arranger(random_model(), temperature=1e-320)
    assert Arranger(random_model(), temperature=MIN_TEMPERATURE).temperature == MIN_TEMPERATURE


def test_bad_mode_and_seed_are_refused():
    with pytest.raises(ParameterError, match="input mode"):
        Arranger(random_model(), mode="guitar")
    with pytest.raises(ParameterError, match="seed"):
        Arranger(random_model(), seed=-1)


# ----------------------------------------------------------------------------- golden parity with torch


@pytest.mark.parametrize("mode", typing.get_args(InputMode))
def test_numba_matches_the_torch_goldens(mode):
    """Golden files exported from torch by data/make_golden.py: no torch needed here."""
    model = ArrangerModel.load(DATA / "golden_model.npz")
    with np.load(DATA / "golden_io.npz") as io:
        melody = io["pitch"] if mode == "keys" else io["lane"]
        log_prob = teacher_forced_log_prob(model, melody, io["pitch_onset"], io["position"], io["tokens"], mode=mode)
        expected = io[f"log_prob_{mode}"]
    assert np.abs(log_prob - expected).max() / np.abs(expected).max() < 1e-5
    assert np.isfinite(log_prob).all()


# ----------------------------------------------------------------------------- the weights file


def test_save_and_load_round_trip(tmp_path):
    model = random_model(seed=14)
    model = ArrangerModel(
        *(getattr(model, n) for n in ("in_table", "b_ih", "b_hh", "w_hh_t", "w_out_t", "b_out")),
        metadata={"a": 1},
        extras={"unigram_counts": np.arange(4.0)},
    )
    model.save(tmp_path / "m.npz")
    back = ArrangerModel.load(tmp_path / "m.npz")
    assert back.metadata == {"a": 1} and np.array_equal(back.extras["unigram_counts"], np.arange(4.0))
    assert all(np.array_equal(getattr(back, n), getattr(model, n)) for n in ("in_table", "w_hh_t", "b_out"))
    assert not (tmp_path / "m.npz.tmp").exists()


def test_damaged_or_foreign_model_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ModelFileError, match="not a chiptuner model file"):
        ArrangerModel.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="missing"):
        ArrangerModel.load(tmp_path / "other.npz")
    good = random_model()
    good.save(tmp_path / "good.npz")
    arrays = dict(np.load(tmp_path / "good.npz"))
    np.savez(tmp_path / "v2.npz", **{**arrays, "format_version": np.array(2)})
    with pytest.raises(ModelFileError, match="format 2"):
        ArrangerModel.load(tmp_path / "v2.npz")
    np.savez(tmp_path / "shape.npz", **{**arrays, "b_out": np.zeros(5, np.float32)})
    with pytest.raises(ModelFileError, match="b_out"):
        ArrangerModel.load(tmp_path / "shape.npz")
    np.savez(tmp_path / "nan.npz", **{**arrays, "b_out": np.full_like(arrays["b_out"], np.nan)})
    with pytest.raises(ModelFileError, match="NaN"):
        ArrangerModel.load(tmp_path / "nan.npz")
    np.savez(tmp_path / "pickled.npz", **{**arrays, "metadata_json": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ModelFileError):
        ArrangerModel.load(tmp_path / "pickled.npz")


def _crafted(tmp_path, name: str, **changed) -> Path:
    """A saved random model with some arrays changed (or added), as a crafted file would be."""
    random_model().save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as data:
        arrays = {key: data[key] for key in data.files}
    path = tmp_path / f"{name}.npz"
    np.savez(path, **{**arrays, **changed})
    return path


CRAFTED = [
    ("version-text", {"format_version": np.array("one")}, "format_version"),
    ("version-digit-string", {"format_version": np.array("1")}, "format_version"),
    ("version-float", {"format_version": np.array(1.5)}, "format_version"),
    ("version-list", {"format_version": np.array([1, 1])}, "format_version"),
    ("metadata-not-json", {"metadata_json": np.array("{'a': 1")}, "metadata_json"),
    ("metadata-list", {"metadata_json": np.array("[1, 2]")}, "metadata_json"),
    ("metadata-number", {"metadata_json": np.array("3")}, "metadata_json"),
    ("metadata-not-text", {"metadata_json": np.array(3.0)}, "metadata_json"),
    ("metadata-too-deep", {"metadata_json": np.array("[" * 100_000 + "]" * 100_000)}, "metadata_json"),
    ("clash-bias-list", {"metadata_json": np.array('{"clash_bias": [1, 2]}')}, "clash_bias"),
    ("key-bias-text", {"metadata_json": np.array('{"key_bias": "0.5"}')}, "key_bias"),
    ("key-bias-out-of-range", {"metadata_json": np.array('{"key_bias": 1e9}')}, "key_bias"),
    ("rest-bias-number", {"metadata_json": np.array('{"rest_bias": 0.5}')}, "rest_bias"),
    ("rest-bias-nan", {"metadata_json": np.array('{"rest_bias": [0, 0, 0, NaN]}')}, "rest_bias"),
    ("config-list", {"metadata_json": np.array('{"config": [1]}')}, "config"),
    ("config-seed-list", {"metadata_json": np.array('{"config": {"seed": [0], "test_size": 0.1}}')}, "seed"),
    ("config-test-size-text", {"metadata_json": np.array('{"config": {"seed": 0, "test_size": "a"}}')}, "test_size"),
    ("weights-numeric-strings", {"b_out": np.full(int(TOKEN_OFFSET[-1]), "0.5")}, "b_out"),
    ("weights-text", {"b_hh": np.full(36, "abc")}, "b_hh"),
    ("weights-complex", {"b_hh": np.zeros(36, np.complex64)}, "b_hh"),
    ("weights-structured", {"b_ih": np.zeros(36, [("a", np.float32)])}, "b_ih"),
    ("offsets-float", {"row_offset": ROW_OFFSET.astype(np.float64)}, "row_offset"),
    ("extra-text", {"extra_unigram_counts": np.array(["x"])}, "extra_unigram_counts"),
    ("weights-one-row-short", {"w_hh_t": np.zeros((11, 36), np.float32)}, "w_hh_t"),
]


@pytest.mark.parametrize(("name", "changed", "field"), CRAFTED, ids=[case[0] for case in CRAFTED])
def test_crafted_model_files_are_one_line_naming_the_bad_field(tmp_path, name, changed, field):
    path = _crafted(tmp_path, name, **changed)
    with pytest.raises(ModelFileError) as refused:
        ArrangerModel.load(path)
    message = str(refused.value)
    assert field in message and str(path) in message and "\n" not in message, message


def test_a_model_file_claiming_more_than_256_mb_is_refused_before_anything_is_read(tmp_path):
    import tracemalloc  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    path = _crafted(tmp_path, "huge")
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {**header, "shape": (2**30,)})  # 4 GB of float32
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra_huge.npy", member.getvalue() + bytes(64))
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="256 MB") as refused:
            ArrangerModel.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "4096 MB" in str(refused.value)
    assert peak < 32 * 2**20, peak  # the claim was never allocated


def test_a_midi_file_is_not_a_chiptuner_model_file(tmp_path):
    path = tmp_path / "song.mid"
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90)]))
    midi.save(path)
    for load in (ArrangerModel.load, load_model):
        with pytest.raises(ModelFileError) as refused:
            load(path)
        message = str(refused.value)
        assert "not a chiptuner model file" in message and "MIDI" in message, message
        assert "pickle" not in message


def test_the_default_model_ships_and_loads():
    path = default_model_path()
    assert path.is_file(), "chiptuner/models/default.npz must ship with the package"
    model = load_model()
    assert 128 <= model.hidden <= 256
    assert model.metadata["val_nll"] < 2.0
    for prefix in ("unigram", "markov", "rule"):
        assert any(key.startswith(prefix) for key in model.extras), f"{prefix} baseline arrays missing"


@pytest.mark.parametrize("mode", typing.get_args(InputMode))
def test_preview_and_saved_state_leave_the_run_unchanged(mode):
    model = random_model(seed=31)
    pitch, onset, position = random_melody(300, 32)
    melody = np.where(pitch >= 0, pitch % 5, -1) if mode == "buttons" else pitch
    plain = Arranger(model, mode=mode, seed=3).run(melody, onset, position)
    arranger = Arranger(model, mode=mode, seed=3)
    stepped = []
    for t in range(len(melody)):
        lead = arranger.preview_lead(2 if mode == "buttons" else 61, position[t])  # looks ahead, changes nothing
        assert lead == -1 or 48 <= lead <= 96
        arranger.save_state()
        arranger.step(melody[t], True, position[t])  # a step that is then taken back
        arranger.restore_state()
        stepped.append(arranger.step(melody[t], onset[t], position[t]).copy())
    assert np.array_equal(np.array(stepped), plain)


def test_a_given_lead_pitch_is_what_pulse1_starts_in_either_mode():
    model = random_model(seed=33)
    for mode, melody in (("keys", 60), ("buttons", 3)):
        arranger = Arranger(model, mode=mode, seed=1)
        arranger.step(melody, True, 0, lead_pitch=110)  # folded into 48-96
        assert arranger.started[0] and arranger.sounding[0] == 86
        preview = Arranger(model, mode=mode, seed=2).preview_lead(melody, 0)
        again = Arranger(model, mode=mode, seed=2)
        again.step(melody, True, 0)
        assert preview == again.sounding[0]  # the preview is the pitch the step then plays


def edge_forced_changes(lane, lane_onset, lead):
    """Lane changes the lead cannot follow: it sounded pulse1's top (bottom) and the lane goes up (down)."""
    steps = np.flatnonzero(lane_onset & (lane >= 0))
    move = np.sign(np.diff(lane[steps]))
    before = lead[steps[:-1]]
    return int(np.sum(((move > 0) & (before == VOICE_HIGH[0])) | ((move < 0) & (before == VOICE_LOW[0]))))


def lane_sequences():
    """The example tune's lanes, and a few lane walks a player might tap, with rests between some."""
    song = melody_input(read_midi(MELODY))
    yield song["lane"], song["lane_onset"], song["step_in_bar"]
    rng = np.random.default_rng(7)
    walks = (
        [0, 1, 2, 3, 4, 3, 2, 1] * 8,  # scales
        [0, 4, 1, 4, 0, 3, 0, 4, 2, 2, 4, 0] * 5,  # leaps and repeats
        [4, 4, 3, 4, 4, 3, 4, 4, 2] * 6,  # mostly at the top lane
        list(rng.integers(0, 5, 80)),  # random taps
    )
    for walk in walks:
        gaps = rng.choice([1, 2, 2, 4, 6], len(walk))
        starts = np.concatenate(([0], np.cumsum(gaps)[:-1]))
        lane = np.full(starts[-1] + 4, -1)
        lane_onset = np.zeros(len(lane), dtype=bool)
        for start, gap, value in zip(starts, gaps, walk, strict=True):
            lane[start : start + max(1, gap - int(rng.integers(0, 2)))] = value  # some notes leave a rest
            lane_onset[start] = True
        yield lane, lane_onset, np.arange(len(lane)) % 16


def test_buttons_lead_moves_with_the_lane_unless_the_range_edge_forbids():
    model = load_model()
    free_changes = free_violations = 0
    for lane, lane_onset, position in lane_sequences():
        for seed in (0, 1, 2):
            tokens = Arranger(model, mode="buttons", seed=seed).run(lane, lane_onset, position)
            lead = tokens_to_arrangement(tokens).pitch[:, 0]
            changes, violations = contour_violations(lane, lane_onset, lead)
            assert changes > 20 and violations == edge_forced_changes(lane, lane_onset, lead), seed
            free = Arranger(model, mode="buttons", seed=seed, follow_contour=False).run(lane, lane_onset, position)
            changes, violations = contour_violations(lane, lane_onset, tokens_to_arrangement(free).pitch[:, 0])
            free_changes += changes
            free_violations += violations
    assert free_violations > 0.1 * free_changes  # the model alone does not follow: the rule is what makes it


def test_the_contour_rule_takes_the_range_edge_when_nothing_lies_beyond():
    model = random_model(seed=35)
    for last, lane, expected in ((96, 3, 96), (48, 1, 48)):
        arranger = Arranger(model, mode="buttons", seed=1)
        arranger.step(2, True, 0, lead_pitch=last)  # as the engine passes the lead it sounded
        arranger.step(lane, True, 1)
        assert arranger.sounding[0] == expected
    for seed in range(20):
        arranger = Arranger(model, mode="buttons", seed=seed)
        arranger.step(2, True, 0, lead_pitch=72)
        arranger.step(-1, False, 1)  # a rest keeps the reference
        arranger.step(1, True, 2)
        assert 48 <= arranger.sounding[0] < 72, seed
        arranger.step(1, True, 3)  # the same lane again: any pitch
        again = arranger.sounding[0]
        arranger.step(4, True, 4)  # up from the last onset's pitch, not from the first
        assert arranger.sounding[0] > again or again == 96, seed


#: sha256 of the int64 tokens of the example tune, arranged by the shipped model with seeds 0-2,
#: taken with the code before the contour rule: keys mode, and buttons mode with the rule off.
BEFORE_CONTOUR = {
    "keys": (
        "3a72f8b6450480ffe2ca993e4461c10363abcdc7655f07ec06d908cc38de6686",
        "23fe5eeba8904f44a34a276d25a071e30e107b23c04680d0aaf5a082ddd5971b",
        "c01e93606e4c51c4878005548d6c9a2b5c50cd0426e9a58ea6188892fdc7074b",
    ),
    "buttons": (
        "ba680225aa27197109c4bf2366d06a57f191d6e10bf6437951d9d3135497cc0b",
        "2926a7bcccc7eb2361ee51c86e1f2b4093feafbf346ad6d7c1ca26ac1a35803a",
        "b3fd6c90b117d596e74c439b678490d369077eafa86e1f23b6ebac2f532130b7",
    ),
}


def test_keys_mode_and_buttons_without_the_contour_rule_arrange_as_before():
    model = load_model()
    song = melody_input(read_midi(MELODY))
    inputs = {"keys": (song["melody_pitch"], song["melody_onset"]), "buttons": (song["lane"], song["lane_onset"])}
    for mode, (melody, onset) in inputs.items():
        for seed, expected in enumerate(BEFORE_CONTOUR[mode]):
            tokens = Arranger(model, mode=mode, seed=seed, follow_contour=False).run(melody, onset, song["step_in_bar"])
            assert hashlib.sha256(tokens.astype(np.int64).tobytes()).hexdigest() == expected, (mode, seed)
            if mode == "keys":  # the rule never touches the player's own pitches
                again = Arranger(model, mode=mode, seed=seed).run(melody, onset, song["step_in_bar"])
                assert np.array_equal(again, tokens)
