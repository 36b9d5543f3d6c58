"""The arranger model: vocabulary, weights file, numba step against references and torch goldens."""

from __future__ import annotations

import dataclasses
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
from chiptuner.keys import estimate_key
from chiptuner.metrics import contour_violations, pool, song_statistics
from chiptuner.midi_io import read_midi
from chiptuner.model.arranger import (
    ACCOMPANIMENT,
    CONDITION_BLOCK,
    ENERGY_LEVELS,
    FIRST_NOTE,
    FORMAT_VERSION,
    HOLD,
    INPUT_SIZES,
    MAX_POSITION,
    MAX_STYLES,
    MIN_TEMPERATURE,
    N_TOKENS,
    PAIR_OFFSET,
    REST,
    ROW_OFFSET,
    TOKEN_OFFSET,
    VOICE_HIGH,
    VOICE_LOW,
    Arranger,
    ArrangerModel,
    InputMode,
    bar_voice_flags,
    condition_rows,
    default_model_path,
    load_model,
    parse_voices,
    teacher_forced_log_prob,
    tokens_to_arrangement,
    voices_to_tokens,
)
from tests.helpers import random_tokens
from tests.reference import arranger_log_prob_reference, arranger_logits_reference, arranger_pair_offsets

DATA = Path(__file__).resolve().parent / "data"
MELODY = str(resources.files("chiptuner") / "examples" / "ode_to_joy_melody.mid")
STYLES = ("chip", "pop", "chorale")


def random_model(hidden: int = 12, seed: int = 0, scale: float = 0.5) -> ArrangerModel:
    """Random weights of every array; the pair table is full, also where no voice may read it."""
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
        f(int(PAIR_OFFSET[-1]), n_out),
        metadata={"styles": list(STYLES)},
    )


def step_input_rows(melody, onset, position, tokens, buttons: bool = False) -> list[np.ndarray]:
    """Each step's ``N_ROWS`` input rows (the kernel's ``input_rows``) given the previous step's tokens."""
    rows = np.zeros(_k.N_ROWS, dtype=np.int64)
    previous = np.zeros(4, dtype=np.int64)
    out = []
    for t in range(len(melody)):
        _k.input_rows(ROW_OFFSET, buttons, melody[t], onset[t], position[t], MAX_POSITION, previous, rows)
        out.append(rows.copy())
        previous = np.asarray(tokens[t], dtype=np.int64)
    return out


def previous_tokens(tokens: np.ndarray) -> np.ndarray:
    return np.vstack((np.zeros((1, 4), dtype=np.int64), np.asarray(tokens, dtype=np.int64)[:-1]))


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
    settings = MAX_STYLES + len(ENERGY_LEVELS) + 2 * len(ACCOMPANIMENT)
    assert ROW_OFFSET[-1] == 129 + 6 + 2 + 2 + (MAX_POSITION + 1) + sum(N_TOKENS) + settings
    assert ROW_OFFSET[CONDITION_BLOCK] == 129 + 6 + 2 + 2 + (MAX_POSITION + 1) + sum(N_TOKENS)
    # Per pitched voice: a row per token, then one per note it can hold.
    assert PAIR_OFFSET.tolist() == arranger_pair_offsets(N_TOKENS).tolist() == [0, 100, 200, 276]
    assert _k.SAMPLING_ORDER == (0, 2, 1, 3) and _k.N_CONDITIONS == 5


def test_condition_rows_land_in_the_setting_blocks():
    blocks = list(INPUT_SIZES)

    def first(name):
        return int(ROW_OFFSET[blocks.index(name)])

    rows = condition_rows(2, 1, np.array([True, False, True]))
    assert rows.tolist() == [
        first("style") + 2,
        first("energy") + 1,
        first("pulse2_on") + 1,
        first("triangle_on"),
        first("noise_on") + 1,
    ]
    assert blocks.index("style") == CONDITION_BLOCK
    # Per step: every row inside its own block, past every step-input row.
    rng = np.random.default_rng(0)
    style, energy = rng.integers(0, MAX_STYLES, 50), rng.integers(0, 3, 50)
    on = rng.random((50, 3)) < 0.5
    rows = condition_rows(style, energy, on)
    assert rows.shape == (50, _k.N_CONDITIONS)
    for c, name in enumerate(("style", "energy", "pulse2_on", "triangle_on", "noise_on")):
        block = blocks.index(name)
        assert ((rows[:, c] >= ROW_OFFSET[block]) & (rows[:, c] < ROW_OFFSET[block + 1])).all(), name
    assert (rows[:, 0] - first("style") == style).all() and (rows[:, 1] - first("energy") == energy).all()
    assert (rows[:, 2:] - [first("pulse2_on"), first("triangle_on"), first("noise_on")] == on).all()
    # A scalar style and energy broadcast over the steps' voice flags.
    assert (condition_rows(1, 2, on)[:, :2] == [first("style") + 1, first("energy") + 2]).all()


def test_bar_voice_flags_mark_the_voices_sounding_anywhere_in_each_bar():
    # pulse2 holds into the second bar; the triangle plays in the second bar only; the noise in the third.
    tokens = np.zeros((10, 4), dtype=np.int64)
    tokens[:, 1] = [5, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    tokens[:, 2] = [0, 0, 0, 0, 0, 0, 0, 3, 0, 0]
    tokens[:, 3] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    tokens[:, 0] = 7  # the lead is no accompaniment voice
    position = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    flags = bar_voice_flags(tokens, position)
    assert flags.shape == (10, 3) and flags.dtype == bool
    expected = np.array([[1, 0, 0]] * 4 + [[1, 1, 0]] * 4 + [[0, 0, 1]] * 2, dtype=bool)
    assert np.array_equal(flags, expected)
    # A song starting at step 6 starts a bar there, whatever its position.
    song_start = np.zeros(10, dtype=bool)
    song_start[6] = True
    expected = np.array([[1, 0, 0]] * 4 + [[1, 0, 0]] * 2 + [[0, 1, 0]] * 2 + [[0, 0, 1]] * 2, dtype=bool)
    assert np.array_equal(bar_voice_flags(tokens, position, song_start), expected)
    # The first step starts a bar even off the bar line; no step, no flags.
    assert np.array_equal(
        bar_voice_flags(tokens[2:], position[2:]),
        np.array([[1, 0, 0]] * 2 + [[1, 1, 0]] * 4 + [[0, 0, 1]] * 2, dtype=bool),
    )
    assert bar_voice_flags(np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)).shape == (0, 3)


def test_voices_are_parsed_by_name_and_unknown_ones_refused():
    assert parse_voices(None) == ACCOMPANIMENT == ("pulse2", "triangle", "noise")
    assert parse_voices("noise, pulse2") == ("pulse2", "noise")
    assert parse_voices(["triangle"]) == ("triangle",)
    assert parse_voices("none") == () == parse_voices([])
    for bad in ("bass", ["pulse2", "drums"], "pulse1"):
        with pytest.raises(ParameterError, match="pulse2, triangle, noise") as refused:
            parse_voices(bad)
        assert "none" in str(refused.value)


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
    """Teacher forcing with settings: the condition rows, then each voice given those drawn before it."""
    for seed in range(3):
        model = random_model(hidden=10 + seed, seed=seed)
        pitch, onset, position = random_melody(48, seed)
        buttons = seed == 1
        melody = np.where(pitch >= 0, pitch % 5, -1) if buttons else pitch
        tokens = random_tokens(np.random.default_rng(seed), 48)
        got = teacher_forced_log_prob(
            model, melody, onset, position, tokens, mode="buttons" if buttons else "keys",
            style=STYLES[seed], energy=ENERGY_LEVELS[seed],
        )  # fmt: skip
        rows = step_input_rows(melody, onset, position, tokens, buttons)
        settings = condition_rows(seed, seed, bar_voice_flags(tokens, position))
        expected = arranger_log_prob_reference(
            arranger_logits_reference(model, rows, settings, tokens), previous_tokens(tokens), tokens
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        # The pair table is in play: without it the lead scores the same, every later voice not.
        alone = arranger_log_prob_reference(
            arranger_logits_reference(model, rows, settings), previous_tokens(tokens), tokens
        )
        np.testing.assert_allclose(got[:, 0], alone[:, 0], rtol=1e-5, atol=1e-5)
        assert (np.abs(got[:, 1:] - alone[:, 1:]).max(axis=0) > 0.1).all()
        # And so are the settings: another energy scores otherwise.
        other = teacher_forced_log_prob(
            model, melody, onset, position, tokens, mode="buttons" if buttons else "keys",
            style=STYLES[seed], energy=ENERGY_LEVELS[(seed + 1) % 3],
        )  # fmt: skip
        assert np.abs(other - got).max() > 0.01


@pytest.mark.parametrize(("mode", "voices"), [("keys", None), ("buttons", "pulse2,noise"), ("keys", "triangle")])
def test_sampled_steps_draw_each_voice_from_the_reference_logits_in_sampling_order(mode, voices):
    """The live step: condition vector, pair rows of the voices drawn before, a voice off heard as a rest."""
    model = random_model(hidden=14, seed=61)
    pitch, onset, position = random_melody(80, 62)
    melody = np.where(pitch >= 0, pitch % 5, -1) if mode == "buttons" else pitch
    arranger = Arranger(model, mode=mode, seed=4, style="chorale", energy="high", voices=voices)
    rows, logits, tokens = [], [], []
    for t in range(len(melody)):
        tokens.append(arranger.step(melody[t], onset[t], position[t]).copy())
        rows.append(arranger._rows.copy())
        logits.append(arranger._logits.astype(np.float64))
    tokens = np.array(tokens)
    on = np.array([name in parse_voices(voices) for name in ACCOMPANIMENT])
    settings = np.broadcast_to(condition_rows(STYLES.index("chorale"), 2, on), (len(melody), _k.N_CONDITIONS))
    expected = arranger_logits_reference(model, rows, settings, tokens)
    np.testing.assert_allclose(np.array(logits), expected, rtol=1e-4, atol=1e-4)
    assert (tokens[:, 1:][:, ~on] == REST).all()


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


SETTINGS = [{}, {"style": "pop", "energy": "high", "voices": "triangle,noise"}, {"energy": "low", "voices": "none"}]


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "pop-high", "lead-alone"])
@pytest.mark.parametrize("mode", typing.get_args(InputMode))
def test_stepping_equals_the_batch_run_exactly(mode, settings):
    model = random_model(hidden=16, seed=3)
    pitch, onset, position = random_melody(300, 4)
    melody = pitch if mode == "keys" else np.where(pitch >= 0, pitch % 5, -1)
    batch = Arranger(model, mode=mode, seed=11, **settings).run(melody, onset, position)
    stepper = Arranger(model, mode=mode, seed=11, **settings)
    stepped = np.array([stepper.step(m, o, p).copy() for m, o, p in zip(melody, onset, position, strict=True)])
    assert np.array_equal(batch, stepped)
    # Two halves of a run continue one another exactly.
    halves = Arranger(model, mode=mode, seed=11, **settings)
    assert np.array_equal(
        np.vstack(
            (
                halves.run(melody[:123], onset[:123], position[:123]),
                halves.run(melody[123:], onset[123:], position[123:]),
            )
        ),
        batch,
    )


def test_a_voice_turned_off_never_sounds_and_the_others_play_on():
    model = random_model(seed=43)
    pitch, onset, position = random_melody(600, 44)
    full = Arranger(model, seed=2).run(pitch, onset, position)
    for voices in ("pulse2", "triangle", "noise", "pulse2,noise", "none"):
        on = np.array([True, *(name in parse_voices(voices) for name in ACCOMPANIMENT)])
        tokens = Arranger(model, seed=2, voices=voices).run(pitch, onset, position)
        assert (tokens[:, ~on] == REST).all(), voices
        starts = (tokens[:, on] >= FIRST_NOTE).sum(axis=0)
        assert (starts > 30).all(), (voices, starts)
        assert (tokens[onset, 0] >= FIRST_NOTE).all()  # the lead still follows the player
        assert not np.array_equal(tokens[:, on], full[:, on])  # the band hears who is out
    # The shipped model plays the voices left on as well.
    model = load_model()
    song = melody_input(read_midi(MELODY))
    tokens = Arranger(model, seed=0, voices="triangle").run(song["melody_pitch"], song["melody_onset"],
                                                            song["step_in_bar"])  # fmt: skip
    assert (tokens[:, [1, 3]] == REST).all() and (tokens[:, 2] >= FIRST_NOTE).sum() > 5
    assert (tokens[song["melody_onset"], 0] >= FIRST_NOTE).all()


def test_set_settings_mid_run_changes_the_next_step_and_keeps_the_state():
    model = random_model(seed=45)
    pitch, onset, position = random_melody(160, 46)
    k = 70
    new = {"style": "pop", "energy": "high", "voices": "pulse2,triangle"}
    arranger = Arranger(model, seed=5, style="chorale", energy="low")
    first = arranger.run(pitch[:k], onset[:k], position[:k])
    state = [np.copy(a) for a in arranger._state]
    arranger.set_settings(**new)
    assert all(np.array_equal(a, b) for a, b in zip(arranger._state, state, strict=True))  # the take goes on
    assert (arranger.style, arranger.energy, arranger.voices) == ("pop", "high", ("pulse2", "triangle"))
    after = arranger.run(pitch[k:], onset[k:], position[k:])
    assert (after[:, 3] == REST).all()
    # Exactly what a band with the new settings plays from that state.
    fresh = Arranger(model, seed=5, **new)
    for target, source in zip(fresh._state, state, strict=True):
        np.copyto(target, source)
    assert np.array_equal(fresh.run(pitch[k:], onset[k:], position[k:]), after)
    # Without the change the same take goes on otherwise, from the very next step's logits.
    kept = Arranger(model, seed=5, style="chorale", energy="low")
    assert np.array_equal(kept.run(pitch[:k], onset[:k], position[:k]), first)
    changed = Arranger(model, seed=5, style="chorale", energy="low")
    changed.run(pitch[:k], onset[:k], position[:k])
    changed.set_settings(style="pop")  # one setting alone; the others stay
    assert (changed.energy, changed.voices) == ("low", ACCOMPANIMENT)
    kept.step(pitch[k], onset[k], position[k])
    changed.step(pitch[k], onset[k], position[k])
    assert np.abs(kept._logits - changed._logits).max() > 1e-3
    # A bad value changes nothing.
    condition = arranger._condition.copy()
    for bad in ({"style": "jazz", "energy": "low"}, {"energy": "loud"}, {"voices": "bass", "style": "chip"}):
        with pytest.raises(ParameterError):
            arranger.set_settings(**bad)
        assert (arranger.style, arranger.energy, arranger.voices) == ("pop", "high", ("pulse2", "triangle"))
        assert np.array_equal(arranger._condition, condition)


@pytest.mark.parametrize(
    ("setting", "value", "choices"),
    [
        ("style", "jazz", "chip, pop, chorale"),
        ("energy", "loud", "low, mid, high"),
        ("energy", "High", "low, mid, high"),
        ("voices", "bass", "pulse2, triangle, noise"),
        ("voices", ["pulse2", "pulse1"], "pulse2, triangle, noise"),
    ],
)
def test_bad_style_energy_or_voices_are_refused_naming_the_choices(setting, value, choices):
    model = random_model()
    with pytest.raises(ParameterError, match=choices) as refused:
        Arranger(model, **{setting: value})
    assert setting in str(refused.value)
    arranger = Arranger(model)
    with pytest.raises(ParameterError, match=choices):
        arranger.set_settings(**{setting: value})
    if setting != "voices":
        pitch, onset, position = random_melody(8, 1)
        tokens = np.zeros((8, 4), dtype=np.int64)
        with pytest.raises(ParameterError, match=choices):
            teacher_forced_log_prob(model, pitch, onset, position, tokens, **{setting: value})


def test_the_pair_table_only_reaches_voices_drawn_later():
    model = random_model(seed=47)
    pitch, onset, position = random_melody(60, 48)
    tokens = random_tokens(np.random.default_rng(49), 60)
    base = teacher_forced_log_prob(model, pitch, onset, position, tokens)
    rng = np.random.default_rng(50)
    for order_position, voice in enumerate(_k.SAMPLING_ORDER[:3]):
        pair = np.array(model.pair_table)
        block = slice(int(PAIR_OFFSET[voice]), int(PAIR_OFFSET[voice + 1]))
        pair[block] += rng.standard_normal(pair[block].shape).astype(np.float32) * 3
        got = teacher_forced_log_prob(dataclasses.replace(model, pair_table=pair), pitch, onset, position, tokens)
        earlier = list(_k.SAMPLING_ORDER[: order_position + 1])
        later = list(_k.SAMPLING_ORDER[order_position + 1 :])
        assert np.array_equal(got[:, earlier], base[:, earlier]), voice
        assert (np.abs(got[:, later] - base[:, later]).max(axis=0) > 0.1).all(), voice
    # No row reaches the lead's columns, and the noise voice, drawn last, has no rows.
    pair = np.array(model.pair_table)
    pair[:, : TOKEN_OFFSET[1]] += 5.0
    got = teacher_forced_log_prob(dataclasses.replace(model, pair_table=pair), pitch, onset, position, tokens)
    assert np.array_equal(got, base)


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
        *(getattr(model, n) for n in ("in_table", "b_ih", "b_hh", "w_hh_t", "w_out_t", "b_out", "pair_table")),
        metadata={"a": 1, "styles": ["chip", "pop"], "energy_edges": [1.5, 3.0]},
        extras={"unigram_counts": np.arange(4.0)},
    )
    model.save(tmp_path / "m.npz")
    back = ArrangerModel.load(tmp_path / "m.npz")
    assert back.metadata == model.metadata and np.array_equal(back.extras["unigram_counts"], np.arange(4.0))
    assert back.styles == ("chip", "pop")
    for name in ("in_table", "w_hh_t", "b_out", "pair_table"):
        assert np.array_equal(getattr(back, name), getattr(model, name)), name
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
    np.savez(tmp_path / "v3.npz", **{**arrays, "format_version": np.array(FORMAT_VERSION + 1)})
    with pytest.raises(ModelFileError, match=f"format {FORMAT_VERSION + 1}"):
        ArrangerModel.load(tmp_path / "v3.npz")
    np.savez(tmp_path / "shape.npz", **{**arrays, "b_out": np.zeros(5, np.float32)})
    with pytest.raises(ModelFileError, match="b_out"):
        ArrangerModel.load(tmp_path / "shape.npz")
    np.savez(tmp_path / "nan.npz", **{**arrays, "b_out": np.full_like(arrays["b_out"], np.nan)})
    with pytest.raises(ModelFileError, match="NaN"):
        ArrangerModel.load(tmp_path / "nan.npz")
    np.savez(tmp_path / "pickled.npz", **{**arrays, "metadata_json": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ModelFileError):
        ArrangerModel.load(tmp_path / "pickled.npz")


def _assert_says_how_to_get_a_current_model(message: str, path: Path) -> None:
    assert str(path) in message and "format 1" in message and f"format {FORMAT_VERSION}" in message, message
    assert "chiptuner train" in message and "leave --model out" in message and "\n" not in message, message


def test_a_format_1_model_is_refused_saying_how_to_get_a_current_one(tmp_path):
    random_model().save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as data:
        arrays = {key: data[key] for key in data.files}
    path = tmp_path / "old.npz"
    np.savez(path, **{**arrays, "format_version": np.array(1)})
    for load in (ArrangerModel.load, load_model):
        with pytest.raises(ModelFileError) as refused:
            load(path)
        _assert_says_how_to_get_a_current_model(str(refused.value), path)


def test_a_real_format_1_file_is_refused_by_its_version_not_its_shapes(tmp_path):
    """As format 1 wrote it: no pair table, no setting rows, the old layout."""
    random_model().save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as data:
        arrays = {key: data[key] for key in data.files if key != "pair_table"}
    n_rows = int(ROW_OFFSET[CONDITION_BLOCK])
    arrays.update(
        format_version=np.array(1), row_offset=ROW_OFFSET[: CONDITION_BLOCK + 1], in_table=arrays["in_table"][:n_rows]
    )
    path = tmp_path / "old.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError) as refused:
        ArrangerModel.load(path)
    _assert_says_how_to_get_a_current_model(str(refused.value), path)


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
    assert model.pair_table.shape == (PAIR_OFFSET[-1], TOKEN_OFFSET[-1])
    assert "chip" in model.styles and len(model.metadata["energy_edges"]) == 2
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


def test_the_contour_rule_never_touches_keys_mode():
    """The rule reads button lanes only: in keys mode the player's own pitches lead, rule on or off.

    (Before format 2 this test also pinned the shipped model's arrangements from before the rule by
    their hashes; no code before the rule plays a format-2 model, so there is nothing left to pin.)
    """
    song = melody_input(read_midi(MELODY))
    melody, onset, position = song["melody_pitch"], song["melody_onset"], song["step_in_bar"]
    for model in (load_model(), random_model(seed=36)):
        for seed, settings in enumerate(({}, {"energy": "high"}, {"voices": "triangle"})):
            tokens = Arranger(model, seed=seed, follow_contour=False, **settings).run(melody, onset, position)
            again = Arranger(model, seed=seed, **settings).run(melody, onset, position)
            assert np.array_equal(again, tokens), (seed, settings)
