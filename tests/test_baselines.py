"""Baseline arrangers: proper distributions, known likelihoods, causality and the lead policy."""

from __future__ import annotations

import io
import typing

import numpy as np
import pytest

from chiptuner.errors import ParameterError
from chiptuner.model.arranger import FIRST_NOTE, HOLD, N_TOKENS, REST, VOICE_LOW, InputMode, tokens_to_arrangement
from chiptuner.model.baselines import DRUM_PATTERN, MarkovBaseline, RuleBasedArranger, UnigramBaseline

MODES = typing.get_args(InputMode)
BASELINES = (UnigramBaseline, MarkovBaseline, RuleBasedArranger)


def _random_tokens(rng: np.random.Generator, n: int, rest: float = 0.2, hold: float = 0.4) -> np.ndarray:
    """Valid tokens (never a hold after a rest), a few note classes per voice."""
    tokens = np.zeros((n, 4), dtype=np.int64)
    for v in range(4):
        notes = FIRST_NOTE + rng.choice(N_TOKENS[v] - FIRST_NOTE, size=4, replace=False)
        previous = REST
        for t in range(n):
            u = rng.random()
            token = REST if u < rest else HOLD if u < rest + hold else int(rng.choice(notes))
            if token == HOLD and previous == REST:
                token = int(rng.choice(notes))
            tokens[t, v] = previous = token
    return tokens


def _song(rng: np.random.Generator, n: int = 96, tokens: np.ndarray | None = None) -> dict[str, np.ndarray]:
    tokens = _random_tokens(rng, n) if tokens is None else tokens
    arrangement = tokens_to_arrangement(tokens)
    melody = rng.choice([60, 62, 64, 65, 67, 69, 71, -1], size=n)
    onset = (rng.random(n) < 0.5) & (melody >= 0)
    lane = rng.integers(-1, 5, size=n)
    return {
        "melody_pitch": melody.astype(np.int16),
        "melody_onset": onset,
        "lane": lane.astype(np.int8),
        "lane_onset": (rng.random(n) < 0.5) & (lane >= 0),
        "step_in_bar": (np.arange(n) % 16).astype(np.int8),
        "voice_pitch": np.asarray(arrangement.pitch),
        "voice_onset": np.asarray(arrangement.onset),
        "tokens": tokens,
    }


def _inputs(song: dict[str, np.ndarray], mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if mode == "keys":
        return song["melody_pitch"], song["melody_onset"], song["step_in_bar"]
    return song["lane"], song["lane_onset"], song["step_in_bar"]


def _fitted(cls, songs):
    return cls().fit(songs)


@pytest.fixture(scope="module")
def songs():
    rng = np.random.default_rng(7)
    return [_song(rng) for _ in range(3)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls", BASELINES)
def test_probabilities_sum_to_one_over_allowed_tokens(cls, mode, songs):
    baseline = _fitted(cls, songs)
    rng = np.random.default_rng(1)
    song = _song(rng, n=8)
    melody, onset, position = _inputs(song, mode)
    tokens = song["tokens"]
    for t in range(len(tokens)):
        for v in range(4):
            total = 0.0
            for k in range(N_TOKENS[v]):
                trial = tokens.copy()
                trial[t, v] = k
                log_p = baseline.log_prob(melody, onset, position, trial, mode=mode)[t, v]
                previous = tokens[t - 1, v] if t else REST
                if k == HOLD and previous == REST:
                    assert log_p == -np.inf
                else:
                    assert np.isfinite(log_p) and log_p < 0
                    total += np.exp(log_p)
            assert total == pytest.approx(1.0, abs=1e-9)


def test_unigram_on_its_own_song_scores_the_empirical_entropy():
    rng = np.random.default_rng(0)
    n = 20000
    tokens = _random_tokens(rng, n, rest=0.0, hold=0.5)  # no rests: no renormalisation after step 0
    song = _song(rng, n, tokens)
    tokens = song["tokens"]
    unigram = UnigramBaseline().fit([song])
    nll = -unigram.log_prob(*_inputs(song, "keys"), tokens).mean(axis=0)
    for v in range(4):
        frequency = np.bincount(tokens[:, v]) / n
        frequency = frequency[frequency > 0]
        entropy = -(frequency * np.log(frequency)).sum()
        # add-one smoothing moves each log p by about log(1 + V / n): 51 / 20000 = 0.0025 nats at most
        assert nll[v] == pytest.approx(entropy, abs=1.2 * N_TOKENS[v] / n)
        counts = np.bincount(tokens[:, v], minlength=N_TOKENS[v])
        smoothed = -(counts * np.log((counts + 1) / (n + N_TOKENS[v]))).sum() / n
        assert nll[v] == pytest.approx(smoothed, abs=1e-4)  # only step 0 (after the initial rest) differs
        assert nll[v] >= entropy  # a smoothed model never beats the empirical distribution on its own data


def test_unigram_counts_are_the_token_frequencies(songs):
    unigram = UnigramBaseline().fit(songs)
    for v in range(4):
        expected = np.bincount(np.concatenate([s["tokens"][:, v] for s in songs]), minlength=N_TOKENS[v])
        assert unigram.counts[v, : N_TOKENS[v]].tolist() == expected.tolist()


def test_markov_beats_unigram_on_a_periodic_pattern():
    rng = np.random.default_rng(0)
    period = np.array(
        [
            [FIRST_NOTE + 12, FIRST_NOTE + 20, FIRST_NOTE + 10, FIRST_NOTE + 0],
            [HOLD, HOLD, HOLD, REST],
            [FIRST_NOTE + 14, REST, FIRST_NOTE + 7, FIRST_NOTE + 2],
            [REST, FIRST_NOTE + 21, FIRST_NOTE + 5, HOLD],
        ]
    )  # each token has one successor: first-order Markov predicts it
    train = _song(rng, 8000, np.tile(period, (2000, 1)))
    test = _song(rng, 80, np.tile(period, (20, 1)))
    unigram = UnigramBaseline().fit([train])
    markov = MarkovBaseline().fit([train])
    nll_unigram = -unigram.log_prob(*_inputs(test, "keys"), test["tokens"]).mean()
    log_p_markov = markov.log_prob(*_inputs(test, "keys"), test["tokens"])
    assert -log_p_markov.mean() < 0.5 * nll_unigram
    # after the first step (from the initial rest, seen once in training) every transition is
    # deterministic: p = 2001 / (2000 + N_TOKENS[v]), at most 0.025 nats
    assert -log_p_markov[1:].mean() < 0.03


def test_markov_counts_start_from_a_rest():
    rng = np.random.default_rng(0)
    song = _song(rng, 16)
    markov = MarkovBaseline().fit([song])
    tokens = song["tokens"]
    assert markov.counts.sum() == 4 * 16
    for v in range(4):
        assert markov.counts[v, REST, tokens[0, v]] >= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls", BASELINES)
def test_generate_is_causal(cls, mode, songs):
    baseline = _fitted(cls, songs)
    rng = np.random.default_rng(5)
    song = _song(rng, 64)
    melody, onset, position = _inputs(song, mode)
    full = baseline.generate(melody, onset, position, mode=mode, seed=3)
    changed_somewhere = False
    for t in (0, 9, 30, 62):
        other = _song(rng, 64)
        m2, o2, p2 = (
            np.concatenate([a[: t + 1], b[t + 1 :]])
            for a, b in zip((melody, onset, position), _inputs(other, mode), strict=True)
        )
        p2[t + 1 :] = rng.integers(0, 16, size=len(p2) - t - 1)
        out = baseline.generate(m2, o2, p2, mode=mode, seed=3)
        assert np.array_equal(out[: t + 1], full[: t + 1])
        changed_somewhere |= not np.array_equal(out, full)
    assert changed_somewhere


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls", BASELINES)
def test_generate_follows_the_lead_and_never_holds_after_rest(cls, mode):
    rng = np.random.default_rng(11)
    # Training songs full of rests and holds, so a missing mask would show.
    train = [_song(rng, 200, _random_tokens(rng, 200, rest=0.45, hold=0.5)) for _ in range(2)]
    baseline = _fitted(cls, train)
    song = _song(rng, 300)
    melody, onset, position = _inputs(song, mode)
    tokens = baseline.generate(melody, onset, position, mode=mode, seed=2)
    assert tokens.shape == (300, 4) and tokens.dtype == np.int64
    assert ((tokens >= 0) & (tokens < np.array(N_TOKENS))).all()
    previous = np.vstack([np.full((1, 4), REST), tokens[:-1]])
    assert not ((tokens == HOLD) & (previous == REST)).any()
    lead = onset & (melody >= 0)
    assert lead.sum() > 50
    if mode == "keys":
        folded = melody[lead].astype(np.int64)
        folded = np.where(folded < VOICE_LOW[0], folded + 12 * ((VOICE_LOW[0] - folded + 11) // 12), folded)
        assert (tokens[lead, 0] == FIRST_NOTE + folded - VOICE_LOW[0]).all()
    else:
        assert (tokens[lead, 0] >= FIRST_NOTE).all()


@pytest.mark.parametrize("cls", (UnigramBaseline, MarkovBaseline))
def test_sampling_depends_on_the_seed_and_can_leave_the_lead(cls, songs):
    baseline = _fitted(cls, songs)
    melody, onset, position = _inputs(songs[0], "keys")
    a = baseline.generate(melody, onset, position, seed=1)
    assert np.array_equal(a, baseline.generate(melody, onset, position, seed=1))
    assert not np.array_equal(a, baseline.generate(melody, onset, position, seed=2))
    free = baseline.generate(melody, onset, position, seed=1, follow_lead=False)
    lead = onset & (melody >= 0)
    assert not np.array_equal(free[lead, 0], a[lead, 0])


def test_rule_based_arranges_a_c_major_melody():
    # C major scale, one note per beat, over 2 bars; the key is C major throughout.
    melody = np.repeat(np.array([60, 62, 64, 65, 67, 69, 71, 72]), 4)
    onset = np.zeros(32, bool)
    onset[::4] = True
    position = np.arange(32) % 16
    tokens = RuleBasedArranger().generate(melody, onset, position)
    arrangement = tokens_to_arrangement(tokens)
    pitch, started = np.asarray(arrangement.pitch), np.asarray(arrangement.onset)
    assert pitch[:, 0].tolist() == melody.tolist()
    assert (tokens[1:4, 0] == HOLD).all() and started[::4, 0].all()
    # pulse2: the diatonic third below each melody note
    assert pitch[::4, 1].tolist() == [57, 59, 60, 62, 64, 65, 67, 69]
    # triangle: chord roots in 36-47; C->I, D->V (G), E->I, F->IV, G->I, A->IV, B->V, C->I
    assert pitch[::4, 2].tolist() == [36, 43, 36, 41, 36, 41, 43, 36]
    assert started[::4, 2].all() and not started[1::4, 2].any()
    # noise: the fixed groove, each hit one step long
    expected = np.where(DRUM_PATTERN[position] >= 0, FIRST_NOTE + DRUM_PATTERN[position], REST)
    assert tokens[:, 3].tolist() == expected.tolist()


def test_rule_based_rests_with_the_melody_and_plays_lanes_in_buttons_mode():
    lane = np.array([0, 0, -1, 1, 2, 3, 4, 4])
    onset = np.array([1, 0, 0, 1, 1, 1, 1, 0], bool)
    tokens = RuleBasedArranger().generate(lane, onset, np.arange(8), mode="buttons")
    pitch = np.asarray(tokens_to_arrangement(tokens).pitch)
    assert pitch[:, 0].tolist() == [72, 72, -1, 74, 76, 77, 79, 79]
    assert tokens[:, 0].tolist()[:3] == [FIRST_NOTE + 24, HOLD, REST]
    assert pitch[2, 1] == -1 and tokens[1, 1] == HOLD


def test_rule_eps_is_the_error_rate():
    rng = np.random.default_rng(4)
    song = _song(rng, 128)
    rule = RuleBasedArranger()
    # A song arranged exactly by the rules: eps is the floor, log p of each token log(1 - 1e-4).
    own = rule.generate(*_inputs(song, "keys"))
    exact = _song(rng, 128, own)
    for key in ("melody_pitch", "melody_onset", "step_in_bar"):
        exact[key] = song[key]
    rule.fit([exact])
    assert rule.eps[0].tolist() == [1e-4] * 4
    assert np.allclose(rule.log_prob(*_inputs(exact, "keys"), own), np.log1p(-1e-4))
    # Replace the bass on a quarter of the steps: its eps is that fraction.
    changed = own.copy()
    changed[::4, 2] = np.where(own[::4, 2] == FIRST_NOTE + 3, FIRST_NOTE + 4, FIRST_NOTE + 3)
    exact_changed = dict(exact, **_song(rng, 128, changed))
    for key in ("melody_pitch", "melody_onset", "step_in_bar", "lane", "lane_onset"):
        exact_changed[key] = exact[key]
    rule.fit([exact_changed])
    assert rule.eps[0, 2] == pytest.approx(0.25)
    assert rule.eps[0, 3] == 1e-4


@pytest.mark.parametrize("cls", BASELINES)
def test_arrays_round_trip_through_an_npz(cls, songs):
    baseline = _fitted(cls, songs)
    arrays = baseline.to_arrays()
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    buffer = io.BytesIO()
    np.savez(buffer, unrelated=np.zeros(3), **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        loaded = cls.from_arrays({name: data[name] for name in data.files})
    melody, onset, position = _inputs(songs[1], "keys")
    assert np.array_equal(
        loaded.log_prob(melody, onset, position, songs[1]["tokens"]),
        baseline.log_prob(melody, onset, position, songs[1]["tokens"]),
    )
    with pytest.raises(ParameterError, match="fit"):
        cls.from_arrays({"unrelated": np.zeros(3)})


def test_stored_layout_mismatch_is_refused(songs):
    arrays = UnigramBaseline().fit(songs).to_arrays()
    arrays["unigram_n_tokens"] = arrays["unigram_n_tokens"] + 1
    with pytest.raises(ParameterError, match="layout"):
        UnigramBaseline.from_arrays(arrays)


def test_bad_arguments_are_parameter_errors(songs):
    melody, onset, position = _inputs(songs[0], "keys")
    unigram = UnigramBaseline().fit(songs)
    with pytest.raises(ParameterError, match="mode"):
        unigram.generate(melody, onset, position, mode="drums")
    with pytest.raises(ParameterError, match="buttons"):
        unigram.generate(melody, onset, position, mode="buttons")  # pitches are no lanes
    with pytest.raises(ParameterError, match="vocabulary"):
        unigram.log_prob(melody, onset, position, np.full((len(melody), 4), 99))
    with pytest.raises(ParameterError, match="seed"):
        unigram.generate(melody, onset, position, seed=-1)
    with pytest.raises(ParameterError, match="fit"):
        RuleBasedArranger().log_prob(melody, onset, position, songs[0]["tokens"])
    with pytest.raises(ParameterError, match="lacks"):
        MarkovBaseline().fit([{"melody_pitch": melody}])
