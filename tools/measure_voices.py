"""Measure the voice reduction on the corpora and print Markdown tables.

    python tools/measure_voices.py [--vgmusic 200] [--pop909 100] [--nes 200] [--bach 365] [--seed 0]

Per corpus: per-voice fraction of steps sounding and onsets per bar (16 steps); for NES files
with three monophonic melodic channels, how often the triangle equals the lowest channel and
pulse2 the remaining one (a check that the reduction finds the chip parts where they exist); for
Bach chorales (soprano = lead), how often the triangle equals the bass voice and pulse2 the alto.
Leads: POP909 = the MELODY track; vgmusic = the non-drum track of highest mean pitch; NES
three-voice files = the channel of highest mean pitch.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from chiptuner import read_midi
from chiptuner.errors import MidiFileError
from chiptuner.timebase import quantize_notes
from chiptuner.types import VOICE_NAMES, Notes, Score
from chiptuner.voices import VOICE_RANGES, reduce_voices

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
STEPS_PER_BAR = 16


def _grid(score: Score, notes: Notes, n_steps: int, voice: str) -> np.ndarray:
    """The notes' pitch per step (last onset wins), octave-folded into the voice's range."""
    start, end = quantize_notes(notes, score.ticks_per_beat)
    out = np.full(n_steps, -1, dtype=np.int16)
    for s, e, p in sorted(zip(start.tolist(), end.tolist(), notes.pitch.tolist(), strict=True)):
        out[s:e] = p
    low, high = VOICE_RANGES[voice]
    sounding = out >= 0
    folded = out.astype(np.int64)
    folded[sounding & (folded < low)] += 12 * ((low - folded[sounding & (folded < low)] + 11) // 12)
    folded[sounding & (folded > high)] -= 12 * ((folded[sounding & (folded > high)] - high + 11) // 12)
    return folded.astype(np.int16)


def _agreement(arr_column: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    sounding = truth >= 0
    return int((arr_column[sounding] == truth[sounding]).sum()), int(sounding.sum())


def _highest(notes: Notes, group: np.ndarray) -> int:
    ids = np.unique(group)
    return int(ids[np.argmax([notes.pitch[group == g].mean() for g in ids])])


class Stats:
    def __init__(self) -> None:
        self.sounding = np.zeros(4)
        self.onsets = np.zeros(4)
        self.steps = 0
        self.files = 0
        self.notes = 0
        self.seconds: list[float] = []
        self.match: dict[str, list[int]] = {}

    def add(self, score: Score, lead: Notes) -> np.ndarray:
        t0 = time.perf_counter()
        arr = reduce_voices(score, lead)
        self.seconds.append(time.perf_counter() - t0)
        self.sounding += (arr.pitch >= 0).sum(0)
        self.onsets += arr.onset.sum(0)
        self.steps += len(arr)
        self.files += 1
        self.notes += len(score.notes)
        return arr.pitch

    def agree(self, name: str, column: np.ndarray, truth: np.ndarray) -> None:
        hit, total = _agreement(column, truth)
        entry = self.match.setdefault(name, [0, 0, 0, 0])  # hits, steps, files >= 90%, files
        entry[0] += hit
        entry[1] += total
        entry[2] += int(total > 0 and hit >= 0.9 * total)
        entry[3] += int(total > 0)


def measure_pop909(n: int, rng: random.Random) -> Stats:
    stats = Stats()
    songs = sorted(p for p in (CORPORA / "pop909" / "POP909").iterdir() if p.is_dir())
    for song in rng.sample(songs, min(n, len(songs))):
        score = read_midi(song / f"{song.name}.mid")
        melody = score.track_names.index("MELODY")
        stats.add(score, score.notes.take(score.notes.track == melody))
    return stats


def measure_vgmusic(n: int, rng: random.Random) -> tuple[Stats, dict[str, int]]:
    stats = Stats()
    files = sorted((CORPORA / "vgmusic_nes_gb" / "midis").iterdir())
    drums = {"files": 0, "channel 10": 0, "percussive program only": 0}
    for path in rng.sample(files, min(n, len(files))):
        try:
            score = read_midi(path)
        except MidiFileError:
            continue
        notes = score.notes
        melodic = ~notes.is_drum
        drums["files"] += 1
        drums["channel 10"] += int(notes.is_drum.any())
        drums["percussive program only"] += int(not notes.is_drum.any() and (notes.program[melodic] >= 112).any())
        if not melodic.any():
            stats.add(score, Notes.empty())
            continue
        lead_track = _highest(notes.take(melodic), notes.track[melodic])
        stats.add(score, notes.take(melodic & (notes.track == lead_track)))
    return stats, drums


def measure_nes_three_voices(n: int, rng: random.Random) -> Stats:
    stats = Stats()
    names = json.loads((CORPORA / "vgmusic_nes_gb" / "nes_like_lists.json").read_text())["three_mono_voices"]
    for name in rng.sample(names, min(n, len(names))):
        try:
            score = read_midi(CORPORA / "vgmusic_nes_gb" / "midis" / name)
        except (MidiFileError, FileNotFoundError):
            continue
        notes = score.notes.take(~score.notes.is_drum)
        channels = np.unique(notes.channel)
        if len(channels) != 3:
            continue
        means = [notes.pitch[notes.channel == c].mean() for c in channels]
        low, mid, high = (int(channels[i]) for i in np.argsort(means))
        pitch = stats.add(score, notes.take(notes.channel == high))
        lowest = _grid(score, notes.take(notes.channel == low), len(pitch), "triangle")
        remaining = _grid(score, notes.take(notes.channel == mid), len(pitch), "pulse2")
        stats.agree("triangle = lowest channel", pitch[:, 2], lowest)
        stats.agree("pulse2 = remaining channel", pitch[:, 1], remaining)
    return stats


def measure_bach(n: int, rng: random.Random) -> Stats:
    stats = Stats()
    files = sorted((CORPORA / "bach_chorales").glob("*.mid"))
    for path in rng.sample(files, min(n, len(files))):
        score = read_midi(path)
        notes = score.notes
        pitch = stats.add(score, notes.take(notes.channel == 0))
        bass = _grid(score, notes.take(notes.channel == 3), len(pitch), "triangle")
        alto = _grid(score, notes.take(notes.channel == 1), len(pitch), "pulse2")
        stats.agree("triangle = bass (B)", pitch[:, 2], bass)
        stats.agree("pulse2 = alto (A)", pitch[:, 1], alto)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vgmusic", type=int, default=200)
    parser.add_argument("--pop909", type=int, default=100)
    parser.add_argument("--nes", type=int, default=200)
    parser.add_argument("--bach", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reduce_voices(read_midi(next((CORPORA / "bach_chorales").glob("*.mid"))), Notes.empty())  # compile
    rng = random.Random(args.seed)
    vgmusic, drums = measure_vgmusic(args.vgmusic, rng)
    runs = {
        "vgmusic (random)": vgmusic,
        "vgmusic three_mono_voices": measure_nes_three_voices(args.nes, rng),
        "POP909": measure_pop909(args.pop909, rng),
        "Bach chorales": measure_bach(args.bach, rng),
    }
    sounding_heads = " | ".join(f"{v} sounding" for v in VOICE_NAMES)
    onset_heads = " | ".join(f"{v} onsets/bar" for v in VOICE_NAMES)
    print(f"| corpus | files | {sounding_heads} | {onset_heads} | median µs/song | ns/note |")
    print("|---" * 11 + "|")
    for name, s in runs.items():
        sounding = " | ".join(f"{x / s.steps:.2f}" for x in s.sounding)
        per_bar = " | ".join(f"{x / s.steps * STEPS_PER_BAR:.2f}" for x in s.onsets)
        median_us = float(np.median(s.seconds)) * 1e6
        ns_note = sum(s.seconds) / max(s.notes, 1) * 1e9
        print(f"| {name} | {s.files} | {sounding} | {per_bar} | {median_us:.0f} | {ns_note:.0f} |")
    print()
    print("| corpus | check | steps agreeing | files with >= 90% |")
    print("|---|---|---|---|")
    for name, s in runs.items():
        for check, (hit, total, good, files) in s.match.items():
            print(f"| {name} | {check} | {hit / max(total, 1):.3f} | {good}/{files} |")
    print()
    print(
        f"vgmusic drums: {drums['channel 10']}/{drums['files']} files use channel 10; "
        f"{drums['percussive program only']} have no channel 10 but a melodic part with program 112-127"
    )


if __name__ == "__main__":
    main()
