"""The chip synth against Game_Music_Emu on the same NSF, voice by voice; export time and NSF size.

Run: ``python tools/measure_chip.py [--corpora DIR] [--songs N] [--seconds S]``; prints Markdown
tables (docs/chip-files.md holds a run's figures).

Songs: the 3-minute arrangement of ``bench/test_bench_synth.py``, the shipped example band
(``chiptuner/examples/ode_to_joy_band.mid``), and the first N files of the NES corpus
(``vgmusic_nes_gb/midis``, sorted by name) reduced to the four voices as for training
(``voices.reduce_voices`` of ``melody.melody_notes``), each with its own tempo map, cut to
its first S seconds. For each song and voice:

- the chip model's notes (``chip_model.play``) give the reference: each note's onset frame
  and its timer period's frequency;
- Game_Music_Emu renders the song's NSF (``nsf.nsf_bytes``) with the other voices muted; its
  audio is read at the rate it makes samples (``tests.nes.gme_rate``: 44,105.3 per emulated
  second when asked for 44,100, from its 16-bit fixed-point resampling ratio);
- the synth renders the song's MIDI file (``synth.render_score``) with only that voice.

Pitch: ``tests.nes.yin_period`` over the note from 2 frames after its onset to 1 frame before
its end, notes of 6 frames or more; cents against the model's period frequency and between the
two renderers. Onsets: ``tests.nes.note_onset`` within 3 frames of the model's onset: where the
energy rises (a note after silence or a re-struck note; for the noise, the energy of its
sample-to-sample steps), where the new period starts repeating (or the old one stops, when the
new period is a multiple of the old), where a triangle moves again after the model's one-frame
stop of a repeat; error in frames. Spectral distance:
2-second excerpts (every 2 s where the voice sounds in both), each normalised to unit power;
the RMS over frequency (60 Hz - 14 kHz) of the difference of the two Welch log spectra, dB. For
scale, the same distance between two different excerpts of the emulator's own rendering
(each excerpt against the next one of the same voice).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import welch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.test_bench_synth import _three_minute_arrangement  # noqa: E402
from chiptuner import chip_model as cm  # noqa: E402
from chiptuner.chip_files import export_file  # noqa: E402
from chiptuner.chip_midi import write_arrangement  # noqa: E402
from chiptuner.melody import melody_notes  # noqa: E402
from chiptuner.midi_io import read_midi  # noqa: E402
from chiptuner.nsf import nsf_bytes  # noqa: E402
from chiptuner.synth import render_score  # noqa: E402
from chiptuner.types import VOICE_NAMES, Arrangement, TempoMap  # noqa: E402
from chiptuner.voices import reduce_voices  # noqa: E402
from tests import nes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
SR = 44100
EXCERPT_SEC = 2.0


def songs(corpora: Path, n_songs: int, seconds: float):
    """(name, arrangement, tempo, ticks per beat) of each song measured, cut to ``seconds``."""
    default_tempo = TempoMap(np.zeros(1, np.int64), np.array([500_000], np.int64))
    yield "bench 3-minute arrangement", _three_minute_arrangement(), default_tempo, 480
    band = cm.read_song(ROOT / "chiptuner" / "examples" / "ode_to_joy_band.mid")
    yield "example band (Ode to Joy)", band.arrangement, default_tempo, 480
    folder = corpora / "vgmusic_nes_gb" / "midis"
    for path in sorted(folder.glob("*.mid"))[:n_songs] if folder.is_dir() else []:
        try:
            score = read_midi(path)
            arrangement = reduce_voices(score, melody_notes(score))
        except Exception as error:  # noqa: BLE001 (a corpus file that does not read is skipped, said)
            print(f"skipped {path.name}: {error}", file=sys.stderr)
            continue
        yield path.stem, arrangement, score.tempo, score.ticks_per_beat


def cut(song: cm.ChipSong, seconds: float) -> int:
    """Steps of the song within its first ``seconds``."""
    return int(np.searchsorted(song.step_sec, seconds, side="right")) - 1


def solo(arrangement: Arrangement, voice: int) -> Arrangement:
    pitch = np.full(arrangement.pitch.shape, -1, np.int16)
    onset = np.zeros(arrangement.onset.shape, bool)
    pitch[:, voice] = arrangement.pitch[:, voice]
    onset[:, voice] = arrangement.onset[:, voice]
    return Arrangement(pitch, onset)


def log_spectrum(x: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    x = x / (np.sqrt(np.mean(x**2)) + 1e-12)
    freq, power = welch(x, sample_rate, nperseg=4096)
    band = (freq >= 60) & (freq <= 14000)
    return freq[band], 10 * np.log10(power[band] + 1e-12)


def spectral_distance(a: np.ndarray, a_rate: float, b: np.ndarray, b_rate: float) -> float:
    freq_a, level_a = log_spectrum(a, a_rate)
    freq_b, level_b = log_spectrum(b, b_rate)
    return float(np.sqrt(np.mean((level_a - np.interp(freq_a, freq_b, level_b)) ** 2)))


def measure_voice(
    notes: cm.ChipNotes, voice: int, gme: np.ndarray, gme_rate: float, ours: np.ndarray
) -> dict[str, list[float]]:
    """The errors of one voice's notes in both renderings (the emulator's read at the rate it makes samples)."""
    rate = cm.FRAME_RATE_HZ
    out: dict[str, list[float]] = {k: [] for k in ("pitch_gme", "pitch_synth", "pitch_between")}
    out.update({k: [] for k in ("onset_gme", "onset_synth", "onset_between", "spectral", "spectral_baseline")})
    mine = np.flatnonzero(notes.voice == voice)
    paused = cm.cut_before(notes)
    renderings = ((gme, gme_rate), (ours, float(SR)))
    for j, n in enumerate(mine.tolist()):
        start, end = int(notes.start_frame[n]), int(notes.end_frame[n])
        hz = float(cm.period_hz(voice, notes.period[n])) if voice < 3 else None
        prev = mine[j - 1] if j else None
        old_hz = None
        if voice < 3 and prev is not None and notes.end_frame[prev] >= start:
            old_hz = float(cm.period_hz(voice, notes.period[prev]))
        onsets = []
        for audio, sr in renderings:
            t = nes.note_onset(
                audio, sr, start / rate, search_sec=3 / rate, old_period=sr / old_hz if old_hz else None,
                new_period=sr / hz if hz else None, paused=bool(paused[n]),
            )  # fmt: skip
            onsets.append((t - start / rate) * rate)
        if np.all(np.isfinite(onsets)):
            out["onset_gme"].append(onsets[0])
            out["onset_synth"].append(onsets[1])
            out["onset_between"].append(onsets[1] - onsets[0])
        if hz and end - start >= 6:
            cents = []
            for audio, sr in renderings:
                part = audio[int((start + 2) / rate * sr) : int((end - 1) / rate * sr)]
                cents.append(1200 * np.log2(sr / nes.yin_period(part, sr / hz) / hz))
            out["pitch_gme"].append(cents[0])
            out["pitch_synth"].append(cents[1])
            out["pitch_between"].append(cents[1] - cents[0])
    excerpts = []
    seconds = min(len(gme) / gme_rate, len(ours) / SR)
    for begin in np.arange(0.0, seconds - EXCERPT_SEC, EXCERPT_SEC):
        a = gme[int(round(begin * gme_rate)) : int(round((begin + EXCERPT_SEC) * gme_rate))]
        b = ours[int(round(begin * SR)) : int(round((begin + EXCERPT_SEC) * SR))]
        if np.sqrt(np.mean(a**2)) > 1e-3 and np.sqrt(np.mean(b**2)) > 1e-3:
            out["spectral"].append(spectral_distance(a, gme_rate, b, SR))
            excerpts.append(a)
    for a, b in zip(excerpts[:-1], excerpts[1:], strict=True):
        out["spectral_baseline"].append(spectral_distance(a, gme_rate, b, gme_rate))
    return out


def export_times(folder: Path) -> dict[str, tuple[float, int]]:
    """Median ms of 7 ``export_file`` calls of the 3-minute arrangement per format, and the file's bytes."""
    source = folder / "three_minutes.mid"
    write_arrangement(_three_minute_arrangement(), source)
    result = {}
    for extension in (".nsf", ".txt", ".wav"):
        out = folder / f"three_minutes{extension}"
        export_file(source, out)  # warm
        times = []
        for _ in range(7 if extension != ".wav" else 3):
            t0 = time.perf_counter()
            _, size = export_file(source, out)
            times.append(time.perf_counter() - t0)
        result[extension] = (1e3 * statistics.median(times), size)
    return result


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    a = np.abs(np.asarray(values))
    return f"{np.median(a):.2f} / {np.percentile(a, 95):.2f} / {a.max():.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--songs", type=int, default=8, help="NES corpus files measured (default: 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of each song (default: 60)")
    args = parser.parse_args()
    if nes.load_gme() is None:
        sys.exit("libgme is not installed (Debian: apt-get install libgme0)")
    totals = {v: {} for v in range(4)}
    measured_songs = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, arrangement, tempo, tpb in songs(args.corpora, args.songs, args.seconds):
            full = cm.song_from_arrangement(arrangement, tempo=tempo, ticks_per_beat=tpb)
            n_steps = cut(full, args.seconds)
            arrangement = Arrangement(arrangement.pitch[:n_steps], arrangement.onset[:n_steps])
            song = cm.song_from_arrangement(arrangement, tempo=tempo, ticks_per_beat=tpb)
            frames = cm.play(song)
            data = nsf_bytes(frames)
            seconds = len(frames) / cm.FRAME_RATE_HZ + 0.5
            measured_songs.append((name, n_steps, round(seconds, 1), len(frames.notes)))
            for v in range(4):
                if not np.any(frames.notes.voice == v):
                    continue
                gme, gme_sr = nes.gme_render(data, seconds, solo=v)
                path = folder / f"solo{v}.mid"
                write_arrangement(solo(arrangement, v), path, ticks_per_beat=tpb, tempo=tempo)
                ours = render_score(path).astype(np.float64)
                result = measure_voice(frames.notes, v, gme, gme_sr, ours)
                for key, values in result.items():
                    totals[v].setdefault(key, []).extend(values)
        times = export_times(folder)
    print(
        "Songs: "
        + "; ".join(f"{name} ({steps} steps, {sec} s, {notes} notes)" for name, steps, sec, notes in measured_songs)
    )
    print()
    print(
        "| voice | notes (pitch / onset) | pitch error, cents: emulator vs model | synth vs model | synth vs emulator "
        "| onset error, frames: emulator vs model | synth vs model | synth vs emulator "
        "| spectral distance synth vs emulator, dB | emulator vs itself elsewhere, dB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v in range(4):
        t = totals[v]
        spectral = t.get("spectral", [])
        baseline = t.get("spectral_baseline", [])
        print(
            f"| {VOICE_NAMES[v]} | {len(t.get('pitch_gme', []))} / {len(t.get('onset_gme', []))} "
            f"| {summary(t.get('pitch_gme', []))} | {summary(t.get('pitch_synth', []))} "
            f"| {summary(t.get('pitch_between', []))} | {summary(t.get('onset_gme', []))} "
            f"| {summary(t.get('onset_synth', []))} | {summary(t.get('onset_between', []))} "
            f"| {np.median(spectral) if spectral else float('nan'):.1f} ({len(spectral)} excerpts) "
            f"| {np.median(baseline) if baseline else float('nan'):.1f} |"
        )
    print()
    print("Error cells: median / 95th percentile / largest, absolute values.")
    print()
    print("| format (3-minute arrangement) | export, median ms | file size, bytes |")
    print("|---|---|---|")
    for extension, (ms, size) in times.items():
        print(f"| {extension} | {ms:.1f} | {size:,} |")


if __name__ == "__main__":
    main()
