"""Chip files of a 3-minute four-voice arrangement: `chiptuner export` to NSF and to FamiTracker
text, end to end (the MIDI file read, the chip model run, the file written), median ms."""

from __future__ import annotations

import pytest

from bench.conftest import budget
from bench.test_bench_synth import _three_minute_arrangement
from chiptuner.chip_files import export_file
from chiptuner.chip_midi import write_arrangement


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory):
    path = tmp_path_factory.mktemp("chip") / "three_minutes.mid"
    write_arrangement(_three_minute_arrangement(), path)
    export_file(path, path.with_suffix(".nsf"))  # compiles (or loads) the numba kernels
    return path


@pytest.mark.benchmark(group="chip_files")
@pytest.mark.parametrize(("extension", "key"), [(".nsf", "nsf_3min_ms"), (".txt", "famitracker_3min_ms")])
def test_bench_export_three_minutes(benchmark, three_minutes, extension, key):
    out = three_minutes.with_suffix(extension)
    fmt, size = benchmark.pedantic(export_file, args=(three_minutes, out), rounds=7, iterations=1, warmup_rounds=1)
    assert size == out.stat().st_size > 1000
    if fmt == "nsf":
        assert size <= budget("chip_files")["nsf_3min_bytes"]
    if benchmark.disabled:
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["ms"] = round(median * 1e3, 2)
    benchmark.extra_info["bytes"] = size
    assert median * 1e3 <= budget("chip_files")[key]
