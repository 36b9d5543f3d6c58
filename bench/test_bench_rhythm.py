"""Tempo from onsets against pretty_midi.estimate_tempo on the same files, in one run (group "batch")."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import tomllib

import chiptuner
from chiptuner.rhythm import estimate_tempo, warmup
from chiptuner.timebase import ticks_to_seconds

pretty_midi = pytest.importorskip("pretty_midi")

TARGETS = Path(__file__).with_name("targets.toml")
CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
SONGS = ("001", "050", "123", "400", "777")
_MEDIAN_SEC: dict[str, float] = {}


def budget() -> dict:
    with TARGETS.open("rb") as f:
        return tomllib.load(f)["rhythm"]


def song(name: str) -> Path:
    path = CORPORA / "pop909" / "POP909" / name / f"{name}.mid"
    if not path.is_file():
        pytest.skip(f"needs the POP909 corpus at {path.parent} (a checkout beside ../shared)")
    return path


@pytest.mark.benchmark(group="batch")
@pytest.mark.parametrize("name", SONGS)
def test_bench_tempo_ours(benchmark, name):
    score = chiptuner.read_midi(song(name))
    onset_sec = ticks_to_seconds(score.notes.start_tick, score.tempo, score.ticks_per_beat)
    warmup()
    bpm = benchmark.pedantic(estimate_tempo, args=(onset_sec,), rounds=200, iterations=5, warmup_rounds=5)
    assert 60.0 <= bpm <= 240.0
    if benchmark.disabled:
        return
    _MEDIAN_SEC[f"ours-{name}"] = benchmark.stats.stats.median
    assert benchmark.stats.stats.median * 1e6 <= budget()["tempo_per_file_us"]


@pytest.mark.benchmark(group="batch")
@pytest.mark.parametrize("name", SONGS)
def test_bench_tempo_pretty_midi(benchmark, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = pretty_midi.PrettyMIDI(str(song(name)))
    bpm = benchmark.pedantic(pm.estimate_tempo, rounds=20, iterations=1, warmup_rounds=1)
    assert bpm > 0
    if benchmark.disabled:
        return
    theirs = benchmark.stats.stats.median
    if f"ours-{name}" not in _MEDIAN_SEC:
        pytest.skip("the matching test_bench_tempo_ours did not run in this session")
    ratio = theirs / _MEDIAN_SEC[f"ours-{name}"]
    assert ratio >= budget()["min_ratio_vs_pretty_midi"], f"only {ratio:.0f}x faster than pretty_midi"
