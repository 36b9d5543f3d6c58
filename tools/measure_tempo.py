"""Tempo-from-onsets accuracy and speed against pretty_midi, and beat phase on POP909.

Run: ``python tools/measure_tempo.py [--corpora DIR] [--limit N]``; prints a Markdown table.

A tempo estimate is correct when it lies within 4% of the true tempo, its double or its
half. True tempo per corpus:

- POP909 (``pop909/POP909/NNN/NNN.mid``): 60 / the median interval of the beats in
  ``beat_midi.txt`` (one row per beat: time_sec, 1 on every other beat, 1 on the bar's
  first beat). Some songs change tempo slightly; the annotation follows the file.
- Nottingham (``nottingham/MIDI/*.mid``): files with no tempo event whose onsets lie on
  the 16th-note tick grid (>= 95%), so the quarter note is a notated beat played at the
  120 BPM players assume. "meter-aware" also accepts the dotted quarter (80 BPM) of x/8
  compound meters, the beat a listener taps there.
- vgmusic (``vgmusic_nes_gb/midis/``): files with exactly one tempo event; its tempo.

Timing: ours is ``estimate_tempo`` on the onset array (seconds); pretty_midi's is
``PrettyMIDI(path).estimate_tempo()`` on the loaded object (loading excluded for both);
each is the median of 5 calls on the file, and the table gives the median over files.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pretty_midi

import chiptuner
from chiptuner.rhythm import estimate_beat_phase, estimate_tempo, warmup
from chiptuner.timebase import ticks_to_seconds

DEFAULT_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
TOLERANCE = 0.04
PHASE_TOLERANCE_SEC = 0.07


def tempo_correct(estimate_bpm: float, truths_bpm: list[float]) -> bool:
    """Within TOLERANCE of a true tempo, its double or its half."""
    if not math.isfinite(estimate_bpm):
        return False
    return any(abs(estimate_bpm / (t * f) - 1.0) <= TOLERANCE for t in truths_bpm for f in (1.0, 2.0, 0.5))


def onsets_of(path: Path | bytes) -> np.ndarray:
    score = chiptuner.read_midi(path)
    return ticks_to_seconds(score.notes.start_tick, score.tempo, score.ticks_per_beat), score


REPEATS = 5


def time_ours(onset_sec: np.ndarray) -> tuple[float, float]:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        bpm = estimate_tempo(onset_sec)
        times.append(time.perf_counter() - start)
    return bpm, float(np.median(times))


def time_theirs(path: Path) -> tuple[float, float]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = pretty_midi.PrettyMIDI(str(path))
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            bpm = pm.estimate_tempo()
            times.append(time.perf_counter() - start)
        return float(bpm), float(np.median(times))
    except Exception:  # pretty_midi fails on some files: counted as wrong, untimed  # noqa: BLE001
        return math.nan, math.nan


def grid_distance_sec(times_sec: np.ndarray, origin_sec: float, period_sec: float) -> np.ndarray:
    """Distance of each time to the nearest point of origin + k * period."""
    x = (times_sec - origin_sec) / period_sec
    return np.abs(x - np.round(x)) * period_sec


def pop909_items(corpora: Path, limit: int) -> list[tuple[Path, list[float], np.ndarray]]:
    folders = sorted(p for p in (corpora / "pop909" / "POP909").iterdir() if p.is_dir() and p.name.isdigit())
    items = []
    for folder in folders[:limit] if limit else folders:
        beats = np.loadtxt(folder / "beat_midi.txt", ndmin=2)
        items.append((folder / f"{folder.name}.mid", [60.0 / float(np.median(np.diff(beats[:, 0])))], beats))
    return items


def nottingham_items(corpora: Path, limit: int) -> list[tuple[Path, list[float], None]]:
    items = []
    for path in sorted((corpora / "nottingham" / "MIDI").glob("*.mid")):
        score = chiptuner.read_midi(path)
        if len(score.notes) == 0 or b"\xff\x51\x03" in path.read_bytes():
            continue
        if np.mean(score.notes.start_tick % (score.ticks_per_beat // 4) == 0) < 0.95:
            continue
        truths = [120.0]
        ts = score.time_signatures
        if len(ts) and ts.denominator[0] == 8 and ts.numerator[0] % 3 == 0:
            truths.append(80.0)
        items.append((path, truths, None))
        if limit and len(items) >= limit:
            break
    return items


def vgmusic_items(corpora: Path, limit: int) -> list[tuple[Path, list[float], None]]:
    paths = sorted((corpora / "vgmusic_nes_gb" / "midis").glob("*.mid"))
    rng = np.random.default_rng(0)
    items = []
    for i in rng.permutation(len(paths)):
        raw = paths[i].read_bytes()
        if raw.count(b"\xff\x51\x03") != 1:
            continue
        try:
            score = chiptuner.read_midi(raw)
        except chiptuner.MidiFileError:
            continue
        if len(score.notes) < 8:
            continue
        items.append((paths[i], [60e6 / float(score.tempo.us_per_beat[-1])], None))
        if limit and len(items) >= limit:
            break
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--limit", type=int, default=300, help="files per corpus (0 = all eligible)")
    args = parser.parse_args()
    warmup()
    corpora = {
        "POP909": pop909_items(args.corpora, args.limit),
        "Nottingham": nottingham_items(args.corpora, args.limit),
        "vgmusic (1 tempo event)": vgmusic_items(args.corpora, args.limit),
    }
    print(
        "| corpus | files | ours | ours, meter-aware | pretty_midi | pretty_midi, meter-aware "
        "| ours median µs/file | pretty_midi median µs/file | speed ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    phase_rows = []
    for name, items in corpora.items():
        ours_ok, ours_ok_meter, theirs_ok, theirs_ok_meter, ours_sec, theirs_sec = [], [], [], [], [], []
        for path, truths, beats in items:
            onset_sec, _ = onsets_of(path)
            ours_bpm, ours_dt = time_ours(onset_sec)
            theirs_bpm, theirs_dt = time_theirs(path)
            ours_sec.append(ours_dt)
            theirs_sec.append(theirs_dt)
            ours_ok.append(tempo_correct(ours_bpm, truths[:1]))
            ours_ok_meter.append(tempo_correct(ours_bpm, truths))
            theirs_ok.append(tempo_correct(theirs_bpm, truths[:1]))
            theirs_ok_meter.append(tempo_correct(theirs_bpm, truths))
            if beats is not None:
                phase_rows.append((onset_sec, truths[0], ours_bpm, beats))
        ours_us = float(np.median(ours_sec)) * 1e6
        theirs_us = float(np.nanmedian(theirs_sec)) * 1e6
        print(
            f"| {name} | {len(items)} | {np.mean(ours_ok):.1%} | {np.mean(ours_ok_meter):.1%} "
            f"| {np.mean(theirs_ok):.1%} | {np.mean(theirs_ok_meter):.1%} "
            f"| {ours_us:.0f} | {theirs_us:.0f} | {theirs_us / ours_us:.0f}x |"
        )
    if phase_rows:
        print()
        print(
            f"Beat phase on POP909 ({len(phase_rows)} songs; correct = median distance of the annotated "
            f"beats / downbeats to the estimated grid <= {PHASE_TOLERANCE_SEC * 1000:.0f} ms, modulo bars):"
        )
        print()
        print("| tempo given to estimate_beat_phase | beat phase correct | downbeat correct |")
        print("|---|---|---|")
        for label, use_truth in (("annotated (beat_midi.txt)", True), ("our estimate", False)):
            beat_ok, down_ok = [], []
            for onset_sec, true_bpm, ours_bpm, beats in phase_rows:
                bpm = true_bpm if use_truth else ours_bpm
                if not math.isfinite(bpm):
                    beat_ok.append(False)
                    down_ok.append(False)
                    continue
                period_sec = 60.0 / bpm
                first_beat_sec, downbeat = estimate_beat_phase(onset_sec, bpm, beats_per_bar=4)
                beat_ok.append(
                    np.median(grid_distance_sec(beats[:, 0], first_beat_sec, period_sec)) <= PHASE_TOLERANCE_SEC
                )
                downbeats = beats[beats[:, 2] == 1, 0]
                origin = first_beat_sec + downbeat * period_sec
                down_ok.append(
                    len(downbeats) > 0
                    and np.median(grid_distance_sec(downbeats, origin, 4 * period_sec)) <= PHASE_TOLERANCE_SEC
                )
            print(f"| {label} | {np.mean(beat_ok):.1%} | {np.mean(down_ok):.1%} |")


if __name__ == "__main__":
    main()
