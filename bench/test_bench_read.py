"""Reading and whole conversion per note, against symusic's and mido's reading in the same run.

The same song files are held in memory as bytes and read in one round by each contender;
the figure is the median time per round divided by the notes in the set (ns/note).
"""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest

import chiptuner
from bench.conftest import budget
from chiptuner.pipeline import SongRejected, song_arrays
from chiptuner.roll import piano_roll
from chiptuner.timebase import quantize_notes

symusic = pytest.importorskip("symusic")

_NS_PER_NOTE: dict[str, float] = {}


@pytest.fixture(scope="module")
def song_bytes(corpora) -> list[bytes]:
    """A fixed mix: 10 POP909 songs, 20 vgmusic files, 10 Nottingham tunes, 5 chorales."""
    pop = [corpora / "pop909" / "POP909" / f"{i:03d}" / f"{i:03d}.mid" for i in range(1, 901, 90)]
    vg = sorted((corpora / "vgmusic_nes_gb" / "midis").glob("*.mid"))[::280][:20]
    folk = sorted((corpora / "nottingham" / "MIDI").glob("*.mid"))[::100][:10]
    bach = sorted((corpora / "bach_chorales").glob("*.mid"))[::70][:5]
    return [p.read_bytes() for p in pop + vg + folk + bach]


@pytest.fixture(scope="module")
def n_notes(song_bytes) -> int:
    return sum(len(chiptuner.read_midi(b).notes) for b in song_bytes)


def _record(benchmark, name: str, n_notes: int) -> float | None:
    if benchmark.disabled:
        return None
    ns = benchmark.stats.stats.median * 1e9 / n_notes
    _NS_PER_NOTE[name] = ns
    benchmark.extra_info["ns_per_note"] = round(ns, 1)
    return ns


def _read_all(song_bytes):
    return [chiptuner.read_midi(b) for b in song_bytes]


def _convert_all(song_bytes):
    out = []
    for b in song_bytes:
        try:
            out.append(song_arrays(chiptuner.read_midi(b)))
        except SongRejected:
            out.append(None)
    return out


@pytest.mark.benchmark(group="batch-read")
def test_bench_read_symusic(benchmark, song_bytes, n_notes):
    scores = benchmark.pedantic(lambda: [symusic.Score.from_midi(b) for b in song_bytes], rounds=15, warmup_rounds=1)
    assert sum(s.note_num() for s in scores) > 0.9 * n_notes
    _record(benchmark, "symusic", n_notes)


@pytest.mark.benchmark(group="batch-read")
def test_bench_read_mido(benchmark, song_bytes, n_notes):
    subset = song_bytes[::5]
    subset_notes = sum(len(chiptuner.read_midi(b).notes) for b in subset)
    files = benchmark.pedantic(lambda: [mido.MidiFile(file=io.BytesIO(b), clip=True) for b in subset], rounds=2)
    assert len(files) == len(subset)
    _record(benchmark, "mido", subset_notes)


@pytest.mark.benchmark(group="batch-read")
def test_bench_read_chiptuner(benchmark, song_bytes, n_notes):
    scores = benchmark.pedantic(_read_all, args=(song_bytes,), rounds=15, warmup_rounds=1)
    assert sum(len(s.notes) for s in scores) == n_notes
    ns = _record(benchmark, "read", n_notes)
    if ns is None:
        return
    assert ns <= budget("read")["read_ns_per_note"]
    if "symusic" in _NS_PER_NOTE:
        assert ns <= budget("read")["read_max_ratio_vs_symusic"] * _NS_PER_NOTE["symusic"]
    if "mido" in _NS_PER_NOTE:
        assert _NS_PER_NOTE["mido"] / ns >= budget("read")["min_ratio_vs_mido"]


@pytest.mark.benchmark(group="batch-read")
def test_bench_convert_chiptuner(benchmark, song_bytes, n_notes):
    arrays = benchmark.pedantic(_convert_all, args=(song_bytes,), rounds=7, warmup_rounds=1)
    assert sum(a is not None for a in arrays) >= len(song_bytes) // 2
    ns = _record(benchmark, "convert", n_notes)
    if ns is None:
        return
    assert ns <= budget("read")["convert_ns_per_note"]
    if "symusic" in _NS_PER_NOTE:
        ratio = ns / _NS_PER_NOTE["symusic"]
        assert ratio <= budget("read")["convert_max_ratio_vs_symusic"], f"conversion is {ratio:.1f}x symusic's reading"


@pytest.mark.benchmark(group="batch-raster")
def test_bench_rasterize(benchmark, song_bytes):
    scores = [s for s in _read_all(song_bytes) if len(s.notes)]
    grids = [(*quantize_notes(s.notes, s.ticks_per_beat), s.notes.pitch) for s in scores]
    total = sum(len(g[2]) for g in grids)
    longest = max(int(g[1].max()) for g in grids)
    # A batch job reuses one pair of roll buffers across songs (see piano_roll's ``out``).
    buffers = (np.empty((longest, 128), np.uint8), np.empty((longest, 128), np.uint8))

    def rasterize_all():
        return sum(int(piano_roll(*g, out=buffers)[1][:, 60].sum()) for g in grids)

    onsets_on_c4 = benchmark.pedantic(rasterize_all, rounds=30, warmup_rounds=1)
    expected = sum(len(np.unique(g[0][g[2] == 60])) for g in grids)
    assert onsets_on_c4 == expected
    ns = _record(benchmark, "raster", total)
    if ns is not None:
        assert ns <= budget("raster")["raster_ns_per_note"]
