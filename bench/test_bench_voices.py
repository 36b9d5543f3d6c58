"""Voice reduction per note of one POP909 song (group "batch"), budget in bench/targets.toml."""

from __future__ import annotations

import pytest

import chiptuner
from bench.conftest import budget
from chiptuner.melody import skyline_notes
from chiptuner.voices import reduce_voices


@pytest.fixture(scope="module")
def song(corpora):
    score = chiptuner.read_midi(corpora / "pop909" / "POP909" / "001" / "001.mid")
    return score, skyline_notes(score)


@pytest.mark.benchmark(group="batch")
def test_bench_reduce_voices(benchmark, song):
    score, lead = song
    reduce_voices(score, lead)  # compiled before timing
    arrangement = benchmark.pedantic(reduce_voices, args=(score, lead), rounds=200, iterations=20, warmup_rounds=5)
    assert arrangement.onset[:, 0].sum() > 0.9 * len(lead)
    assert arrangement.onset[:, 1:3].any(axis=0).all()
    if benchmark.disabled:
        return
    ns = benchmark.stats.stats.median * 1e9 / len(score.notes)
    benchmark.extra_info["ns_per_note"] = round(ns, 1)
    assert ns <= budget("voices")["voices_ns_per_note"]
