"""The arranger step against torch eager and against the bare matvec floor, in one run (group "realtime");
``arrange`` on a 3-minute melody and training throughput (group "batch")."""

from __future__ import annotations

import numpy as np
import pytest

from bench.conftest import budget
from chiptuner._kernels import arranger as _k
from chiptuner.arrange import arrange_score
from chiptuner.model.arranger import (
    CONDITION_BLOCK,
    FIRST_NOTE,
    HOLD,
    MAX_POSITION,
    N_TOKENS,
    PAIR_OFFSET,
    REST,
    ROW_OFFSET,
    TOKEN_OFFSET,
    Arranger,
    condition_rows,
    energy_index,
    load_model,
    warmup,
)
from chiptuner.types import Notes, Score, TempoMap, TimeSignatures

torch = pytest.importorskip("torch")

_MEDIAN_SEC: dict[str, float] = {}
_PITCHES = np.array([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, -1, 62, 60, 59, 60, -1])


@pytest.fixture(scope="module")
def model():
    model = load_model()
    warmup(model)
    return model


def _step_inputs(n: int = 4096):
    pitch = np.resize(_PITCHES, n)
    return pitch.tolist(), (np.arange(n) % 4 == 0).tolist(), (np.arange(n) % 16).tolist()


@pytest.mark.benchmark(group="realtime")
def test_bench_step_numba(benchmark, model):
    arranger = Arranger(model, seed=0)
    pitch, onset, position = _step_inputs()
    state = {"t": 0}

    def one_step():
        t = state["t"] = (state["t"] + 1) % 4096
        return arranger.step(pitch[t], onset[t], position[t])

    tokens = benchmark.pedantic(one_step, rounds=2000, iterations=10, warmup_rounds=50)
    assert tokens.shape == (4,)
    if benchmark.disabled:
        return
    _MEDIAN_SEC["numba"] = benchmark.stats.stats.median
    assert benchmark.stats.stats.median * 1e6 <= budget("model")["step_us"]


class TorchEagerStep:
    """The same step in torch eager on the same weights: the settings' condition vector plus the folded
    rows, GRU gates, heads, then the voices drawn in ``SAMPLING_ORDER`` with hold masked after a rest,
    each drawn voice adding its ``pair_table`` row (a hold heard as the note held) to the later voices'
    logits, a voice that is off resting."""

    def __init__(self, model, voice_on=(True, True, True, True)):
        self.in_table = torch.from_numpy(np.array(model.in_table))
        self.b_ih, self.b_hh = torch.from_numpy(np.array(model.b_ih)), torch.from_numpy(np.array(model.b_hh))
        self.w_hh = torch.from_numpy(np.array(model.w_hh_t).T.copy())
        self.w_out = torch.from_numpy(np.array(model.w_out_t).T.copy())
        self.b_out = torch.from_numpy(np.array(model.b_out))
        self.pair_table = torch.from_numpy(np.array(model.pair_table))
        style = model.styles.index("chip") if "chip" in model.styles else 0
        settings = condition_rows(style, energy_index("mid"), np.array(voice_on[1:]))
        self.condition = self.in_table[torch.from_numpy(settings)].sum(0)  # once, as Arranger.set_settings
        self.voice_on = voice_on
        self.hidden = model.hidden
        self.h = torch.zeros(self.hidden)
        self.rows = np.zeros(_k.N_ROWS, dtype=np.int64)
        self.tokens = np.zeros(4, dtype=np.int64)
        self.held = np.zeros(3, dtype=np.int64)  # the note token each pitched voice sounds
        self.generator = torch.Generator().manual_seed(0)
        self.slices = [slice(int(TOKEN_OFFSET[v]), int(TOKEN_OFFSET[v + 1])) for v in range(4)]
        # Per position in the order, which logits the voice drawn there reaches: the later voices'.
        self.later = []
        for position in range(3):
            mask = torch.zeros(int(TOKEN_OFFSET[-1]))
            for v in _k.SAMPLING_ORDER[position + 1 :]:
                mask[self.slices[v]] = 1.0
            self.later.append(mask)

    @torch.no_grad()
    def step(self, pitch, onset, position):
        _k.input_rows(ROW_OFFSET, False, pitch, onset, position, MAX_POSITION, self.tokens, self.rows)
        x = self.condition + self.in_table[torch.from_numpy(self.rows)].sum(0)
        n = self.hidden
        gi = x[: 3 * n] + self.b_ih
        gh = torch.addmv(self.b_hh, self.w_hh, self.h)
        r = torch.sigmoid(gi[:n] + gh[:n])
        z = torch.sigmoid(gi[n : 2 * n] + gh[n : 2 * n])
        new = torch.tanh(gi[2 * n :] + r * gh[2 * n :])
        self.h = (1 - z) * new + z * self.h
        logits = torch.addmv(self.b_out, self.w_out, self.h) + x[3 * n :]
        for order_position, v in enumerate(_k.SAMPLING_ORDER):
            if not self.voice_on[v]:
                token = REST
            else:
                voice = logits[self.slices[v]].clone()
                if self.tokens[v] == REST:
                    voice[HOLD] = -float("inf")
                token = int(torch.multinomial(torch.softmax(voice, 0), 1, generator=self.generator))
            self.tokens[v] = token
            if order_position < 3:
                if token == HOLD:
                    row = PAIR_OFFSET[v] + N_TOKENS[v] + self.held[v] - FIRST_NOTE
                else:
                    row = PAIR_OFFSET[v] + token
                    self.held[v] = token
                logits = logits + self.pair_table[row] * self.later[order_position]
        return self.tokens


@pytest.mark.benchmark(group="realtime")
def test_bench_step_torch_eager(benchmark, model):
    torch.set_num_threads(1)
    stepper = TorchEagerStep(model)
    pitch, onset, position = _step_inputs()
    state = {"t": 0}

    def one_step():
        t = state["t"] = (state["t"] + 1) % 4096
        return stepper.step(pitch[t], onset[t], position[t])

    tokens = benchmark.pedantic(one_step, rounds=300, iterations=5, warmup_rounds=20)
    assert tokens.shape == (4,)
    if benchmark.disabled:
        return
    if "numba" not in _MEDIAN_SEC:
        pytest.skip("test_bench_step_numba did not run in this session")
    ratio = benchmark.stats.stats.median / _MEDIAN_SEC["numba"]
    benchmark.extra_info["times_slower_than_numba"] = round(ratio, 1)
    assert ratio >= budget("model")["min_ratio_vs_torch"], (
        f"the numba step is only {ratio:.1f}x faster than torch eager"
    )


_LOOP_STEPS = 1000


@pytest.mark.benchmark(group="realtime")
def test_bench_step_in_loop(benchmark, model):
    """The step's compute alone: ``Arranger.run`` over 1000 steps (one call), per step."""
    pitch, onset, position = (np.array(x) for x in _step_inputs(_LOOP_STEPS))
    arranger = Arranger(model, seed=0)
    tokens = benchmark.pedantic(arranger.run, args=(pitch, onset, position), rounds=30, iterations=1, warmup_rounds=2)
    assert tokens.shape == (_LOOP_STEPS, 4)
    if benchmark.disabled:
        return
    _MEDIAN_SEC["loop"] = benchmark.stats.stats.median / _LOOP_STEPS
    benchmark.extra_info["us_per_step"] = round(_MEDIAN_SEC["loop"] * 1e6, 2)


@pytest.mark.benchmark(group="realtime")
def test_bench_matvec_floor_in_loop(benchmark, model):
    """The two bare matrix-vector products over the same weights, 1000 times in one call."""
    h = np.random.default_rng(0).standard_normal(model.hidden).astype(np.float32)
    gh = np.zeros(3 * model.hidden, dtype=np.float32)
    logits = np.zeros(int(TOKEN_OFFSET[-1]), dtype=np.float32)
    args = (model.w_hh_t, model.w_out_t, h, gh, logits, _LOOP_STEPS)
    benchmark.pedantic(_k.matvec_floor_steps, args=args, rounds=30, iterations=1, warmup_rounds=2)
    assert np.allclose(gh, h @ model.w_hh_t.astype(np.float64), rtol=1e-4, atol=1e-4)
    if benchmark.disabled:
        return
    if "loop" not in _MEDIAN_SEC:
        pytest.skip("test_bench_step_in_loop did not run in this session")
    floor = benchmark.stats.stats.median / _LOOP_STEPS
    ratio = _MEDIAN_SEC["loop"] / floor
    benchmark.extra_info["step_over_matvec"] = round(ratio, 2)
    assert ratio <= budget("model")["max_ratio_vs_matvec"], f"the step takes {ratio:.2f}x the bare matvecs"


def _three_minute_score() -> Score:
    rng = np.random.default_rng(0)
    beat = 480
    n = 360  # 3 minutes of quarter notes at 120 BPM
    start = np.arange(n, dtype=np.int64) * beat
    pitch = 60 + rng.integers(-7, 8, n)
    notes = Notes(
        start, start + beat - 10, pitch, np.full(n, 100), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, bool)
    )
    tempo = TempoMap(np.zeros(1, np.int64), np.full(1, 500_000, np.int64))
    return Score(notes, tempo, TimeSignatures(np.zeros(1, np.int64), np.full(1, 4), np.full(1, 4)), beat, ("melody",))


@pytest.mark.benchmark(group="batch")
def test_bench_arrange_three_minutes(benchmark, model):
    score = _three_minute_score()
    arrange_score(score, model=model)
    result = benchmark.pedantic(
        arrange_score, args=(score,), kwargs={"model": model}, rounds=10, iterations=1, warmup_rounds=1
    )
    assert result.n_steps >= 1440
    if benchmark.disabled:
        return
    assert benchmark.stats.stats.median * 1e3 <= budget("model")["arrange_3min_ms"]


@pytest.mark.benchmark(group="batch")
def test_bench_training_throughput(benchmark):
    from chiptuner.train.arranger import ArrangerNet, masked_log_prob  # noqa: PLC0415 (torch-only module)

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = ArrangerNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    batch, window = 64, 128
    # As training feeds it: the step's rows, the settings' rows, and the pair rows of three voices.
    steps = rng.integers(0, int(ROW_OFFSET[CONDITION_BLOCK]), (batch, window, _k.N_ROWS))
    settings = condition_rows(rng.integers(0, 3, (batch, 1)), rng.integers(0, 3, (batch, 1)),
                              rng.random((batch, window, 3)) < 0.8)  # fmt: skip
    rows = torch.from_numpy(np.concatenate((steps, settings), axis=-1))
    pair_rows = torch.from_numpy(rng.integers(PAIR_OFFSET[:3], PAIR_OFFSET[1:], (batch, window, 3)))
    target = torch.from_numpy(np.stack([rng.integers(2, n, (batch, window)) for n in N_TOKENS], axis=-1))
    previous = torch.full_like(target, 2)

    def one_batch():
        logits, _ = net(rows, pair_rows)
        loss = -masked_log_prob(logits, previous, target).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    first = one_batch()
    last = benchmark.pedantic(one_batch, rounds=5, iterations=1, warmup_rounds=1)
    assert last < first  # the same batch again: the loss must fall
    if benchmark.disabled:
        return
    steps_per_sec = batch * window / benchmark.stats.stats.median
    benchmark.extra_info["steps_per_sec"] = round(steps_per_sec)
    assert steps_per_sec >= budget("model")["train_min_steps_per_sec"]
