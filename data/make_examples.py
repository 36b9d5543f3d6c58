"""Write the example songs bundled in chiptuner/examples/ (run: python data/make_examples.py).

Both are written here, note by note: Beethoven's "Ode to Joy" theme (public domain) as
a melody alone, and the same melody with a bass line, chords and a drum groove of our own,
so `chiptuner convert` has a full song to work on in a fresh clone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chiptuner import write_midi
from chiptuner.types import Notes, Score, TempoMap, TimeSignatures

TICKS_PER_BEAT = 480
OUT = Path(__file__).resolve().parents[1] / "chiptuner" / "examples"

# (pitch, beats) per note; 0 is a rest. Sixteen bars of 4/4.
PHRASE_A = [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
            (60, 1), (60, 1), (62, 1), (64, 1)]  # fmt: skip
ENDING_1 = [(64, 1.5), (62, 0.5), (62, 2)]
ENDING_2 = [(62, 1.5), (60, 0.5), (60, 2)]
BRIDGE = [(62, 1), (62, 1), (64, 1), (60, 1), (62, 1), (64, 0.5), (65, 0.5), (64, 1), (60, 1),
          (62, 1), (64, 0.5), (65, 0.5), (64, 1), (62, 1), (60, 1), (62, 1), (55, 2)]  # fmt: skip
MELODY = PHRASE_A + ENDING_1 + PHRASE_A + ENDING_2 + BRIDGE + [(64, 2)] + PHRASE_A[2:] + ENDING_2
# One chord root per bar (C major), the bass plays root and fifth in half notes.
ROOTS = [48, 43, 48, 43, 48, 43, 48, 43, 43, 48, 43, 48, 48, 43, 48, 43]


def _notes(rows: list[tuple[int, int, int, int, int]]) -> Notes:
    """Notes from (start_tick, end_tick, pitch, channel, track) rows."""
    a = np.array(rows, dtype=np.int64).reshape(-1, 5)
    channel = a[:, 3]
    return Notes(a[:, 0], a[:, 1], a[:, 2], np.full(len(a), 96), channel, np.zeros(len(a)), a[:, 4], channel == 9)


def melody_rows(track: int) -> list:
    rows, tick = [], 0
    for pitch, beats in MELODY:
        length = int(beats * TICKS_PER_BEAT)
        if pitch:
            rows.append((tick, tick + length - 20, pitch, 0, track))
        tick += length
    return rows


def band_rows() -> list:
    rows = []
    bar = 4 * TICKS_PER_BEAT
    for i, root in enumerate(ROOTS):
        t = i * bar
        rows += [(t, t + bar // 2, root, 1, 1), (t + bar // 2, t + bar, root + 7, 1, 1)]
        chord = (52, 55, 60) if root == 48 else (50, 55, 59)  # C and G major, voiced under the melody
        for beat in range(4):
            s = t + beat * TICKS_PER_BEAT
            rows += [(s, s + TICKS_PER_BEAT // 2, key, 2, 2) for key in chord]
        for eighth in range(8):
            s = t + eighth * TICKS_PER_BEAT // 2
            rows.append((s, s + 60, 42, 9, 3))
        rows += [(t, t + 60, 36, 9, 3), (t + 2 * TICKS_PER_BEAT, t + 2 * TICKS_PER_BEAT + 60, 36, 9, 3)]
        rows += [(t + k * TICKS_PER_BEAT, t + k * TICKS_PER_BEAT + 60, 38, 9, 3) for k in (1, 3)]
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tempo = TempoMap(np.zeros(1), np.full(1, 500_000))
    meter = TimeSignatures(np.zeros(1), np.full(1, 4), np.full(1, 4))
    lead = Score(_notes(melody_rows(0)), tempo, meter, TICKS_PER_BEAT, ("melody",))
    write_midi(lead, OUT / "ode_to_joy_melody.mid")
    song = Score(
        _notes(melody_rows(0) + band_rows()), tempo, meter, TICKS_PER_BEAT, ("melody", "bass", "chords", "drums")
    )
    write_midi(song, OUT / "ode_to_joy_band.mid")


if __name__ == "__main__":
    main()
