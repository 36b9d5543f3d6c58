"""Melody choice on a song with every track merged into one (the line network's path), group "batch".

Budgets in bench/targets.toml. POP909 001 with MELODY, BRIDGE and PIANO merged into one
track and channel: no track choice is possible, so every note goes through both note
networks and the bidirectional GRU. The skyline of the same notes, timed first in the
same run, is the floor any melody choice pays (grid, sort, one pass); the line network's
cost is held against it as well as in ns per note.
"""

from __future__ import annotations

import pytest

import chiptuner
from bench.conftest import budget
from chiptuner.melody import melody_notes, skyline_notes
from chiptuner.train.melody_corpus import merge_tracks

#: Median seconds of the skyline peer, filled by its test (which runs first).
_SKYLINE_SEC: dict[str, float] = {}


@pytest.fixture(scope="module")
def merged(corpora):
    return merge_tracks(chiptuner.read_midi(corpora / "pop909" / "POP909" / "001" / "001.mid"))


@pytest.mark.benchmark(group="batch")
def test_bench_skyline_merged(benchmark, merged):
    skyline_notes(merged)  # compiled before timing
    chosen = benchmark.pedantic(skyline_notes, args=(merged,), rounds=50, iterations=5, warmup_rounds=2)
    assert len(chosen) > 0
    if not benchmark.disabled:
        _SKYLINE_SEC["median"] = benchmark.stats.stats.median
        benchmark.extra_info["ns_per_note"] = round(benchmark.stats.stats.median * 1e9 / len(merged.notes), 1)


@pytest.mark.benchmark(group="batch")
def test_bench_melody_merged(benchmark, merged):
    melody_notes(merged)  # compiled before timing
    chosen = benchmark.pedantic(melody_notes, args=(merged,), rounds=20, iterations=1, warmup_rounds=2)
    assert 0.1 * len(merged.notes) < len(chosen) < 0.5 * len(merged.notes)
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    ns = median * 1e9 / len(merged.notes)
    benchmark.extra_info["ns_per_note"] = round(ns, 1)
    assert ns <= budget("melody")["merged_ns_per_note"]
    if "median" in _SKYLINE_SEC:
        ratio = median / _SKYLINE_SEC["median"]
        benchmark.extra_info["ratio_vs_skyline"] = round(ratio, 1)
        assert ratio <= budget("melody")["merged_max_ratio_vs_skyline"], f"{ratio:.0f}x the skyline"
