"""The chip synth: one 512-frame block with all four voices sounding (group "realtime"), and a
3-minute four-voice arrangement rendered offline from its MIDI file (group "batch")."""

from __future__ import annotations

import numpy as np
import pytest

from bench.conftest import budget
from chiptuner import synth
from chiptuner._kernels import synth as _k
from chiptuner.chip_midi import write_arrangement
from chiptuner.chip_model import FRAME_RATE_HZ
from chiptuner.types import Arrangement

BLOCK = 512


@pytest.fixture(scope="module", autouse=True)
def warm():
    synth.warmup()


@pytest.mark.benchmark(group="realtime")
def test_bench_render_block_512(benchmark):
    live = synth.ChipSynth(block_size=BLOCK)
    for voice, pitch in enumerate((84, 76, 40, 49)):
        live.note_on(voice, pitch, 127)
    count = {"blocks": 0}

    def one_block():
        count["blocks"] += 1
        if count["blocks"] % 30 == 0:  # every ~0.35 s a new crash (it rings 0.43 s): the noise never falls silent
            live.note_on(3, 49, 127)
        return live.render()

    out = benchmark.pedantic(one_block, rounds=2000, iterations=5, warmup_rounds=20)
    assert out.shape == (BLOCK,)
    assert live.state[_k.NOISE, _k.V_LEVEL] > 0.0 and np.abs(out).max() > 0.05  # the noise still rings
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    factor = BLOCK / synth.SAMPLE_RATE / median
    benchmark.extra_info["us_per_block"] = round(median * 1e6, 1)
    benchmark.extra_info["realtime_factor"] = round(factor)
    assert median * 1e6 <= budget("synth")["block_512_us"]
    assert factor >= budget("synth")["min_realtime_factor"]


def _three_minute_arrangement() -> Arrangement:
    """180 s at 120 BPM (1440 steps): quarter-note lead, half-note harmony and bass, eighth-note drums."""
    n = 1440
    rng = np.random.default_rng(0)
    pitch = np.full((n, 4), -1, np.int16)
    onset = np.zeros((n, 4), bool)
    for voice, every, low, high in ((0, 4, 60, 84), (1, 8, 52, 76), (2, 8, 33, 52)):
        for start in range(0, n, every):
            pitch[start : start + every, voice] = rng.integers(low, high)
            onset[start, voice] = True
    drums = np.array([36, 42, 38, 42])
    pitch[::2, 3] = drums[(np.arange(n // 2)) % 4]
    onset[::2, 3] = True
    pitch[::64, 3] = 49  # a crash each 4 bars
    return Arrangement(pitch, onset)


@pytest.mark.benchmark(group="batch")
def test_bench_render_three_minutes(benchmark, tmp_path):
    path = tmp_path / "three_minutes.mid"
    write_arrangement(_three_minute_arrangement(), path)
    audio = benchmark.pedantic(synth.render_score, args=(path,), rounds=5, iterations=1, warmup_rounds=1)
    end = round(round(180.0 * FRAME_RATE_HZ) / FRAME_RATE_HZ * synth.SAMPLE_RATE)  # the last release, on a frame
    assert len(audio) == end + round(synth.TAIL_SEC * synth.SAMPLE_RATE)
    assert np.abs(audio).max() > 0.1
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["realtime_factor"] = round(180.0 / median)
    assert median * 1e3 <= budget("synth")["render_3min_ms"]
