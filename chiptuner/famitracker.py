"""FamiTracker text export: a song as the ``.txt`` module text that FamiTracker imports.

The grammar is the text exporter's of FamiTracker 0.4.6 and its descendants (0CC-FamiTracker,
Dn-FamiTracker: ``Source/TextExporter.cpp``), which FamiStudio imports too. Only commands
FamiTracker 0.4.6 already reads are written: the INFO, COMMENTS and PARAMS blocks, MACRO,
INST2A03, TRACK, COLUMNS, ORDER, PATTERN and ROW.

What is written, all read from the chip model (``chip_model``):

- One instrument per voice (per voice and duty for the pulses, per drum class for the
  noise), each with a volume macro (type 0) that is the model's envelope frame by frame
  and a duty macro (type 4: the pulse duty, or the noise's short mode). A sequence's last
  value holds, as the model's sustain does.
- One row per 16th-note step; rows in patterns of ``PATTERN_ROWS`` (more when a song would
  need over ``MAX_FRAMES`` frames), identical patterns of a channel shared, and the frame
  order. Speed 6 and tempo about the BPM (4 rows a beat: BPM = tempo * 6 / speed), nudged
  row by row with ``Fxx`` in the DPCM column so that the rows keep to the model's frames
  (``row_tempos``) instead of drifting, and follow the song's tempo map.
- Pitched notes by name and octave (C-4 is MIDI 60, A-4 440 Hz) of the model's key, folded
  into octaves 0-7 where needed; a note followed by silence ends with ``---``; the
  triangle's repeated notes get the model's cut one frame before the next (``Sxx``).
- Noise notes as the period digit with ``-#``: digit = 15 - the model's period index
  (FamiTracker writes ``digit ^ $F`` to $400E). Drums are one-shots: no ``---``.
- The fifth column (DPCM) is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chiptuner.chip_model import (
    ENVELOPE_LENGTH,
    ENVELOPE_ROWS,
    ENVELOPES,
    FRAME_RATE_HZ,
    ChipSong,
    chip_notes,
    step_frames,
)
from chiptuner.errors import ParameterError
from chiptuner.types import VOICE_NAMES
from chiptuner.voices import DRUM_KEYS, DRUM_NAMES

__all__ = [
    "PATTERN_ROWS",
    "MAX_FRAMES",
    "NOTE_NAMES",
    "DRUM_KEY_OF_INSTRUMENT",
    "Instrument",
    "row_tempos",
    "famitracker_text",
    "write_famitracker",
]

PATTERN_ROWS = 64
#: Frames (pattern rows of the order) and patterns per channel FamiTracker 0.4.6 holds.
MAX_FRAMES = 128
MAX_PATTERN_ROWS = 256
N_CHANNELS = 5  # pulse1, pulse2, triangle, noise, DPCM
SPEED = 6
MIN_TEMPO, MAX_TEMPO = 32, 255
NOTE_NAMES = ("C-", "C#", "D-", "D#", "E-", "F-", "F#", "G-", "G#", "A-", "A#", "B-")
#: The lowest and highest MIDI keys FamiTracker names (C-0 to B-7).
LOWEST_KEY, HIGHEST_KEY = 12, 107
EMPTY_CELL = "... .. . ..."
DUTY_NAMES = ("12.5%", "25%", "50%", "75%")
#: The General MIDI drum key each noise instrument's name stands for (for readers of these files).
DRUM_KEY_OF_INSTRUMENT = {f"noise {name}": int(key) for name, key in zip(DRUM_NAMES, DRUM_KEYS.tolist(), strict=True)}


@dataclass(frozen=True)
class Instrument:
    """One 2A03 instrument: its name, volume sequence and duty value (None: no macro)."""

    name: str
    volume: tuple[int, ...] | None
    duty: int | None


def _quote(text: str) -> str:
    # The exporter's ExportString: in double quotes, a quote doubled.
    return '"' + text.replace('"', '""') + '"'


def _envelope(row_name: str) -> tuple[int, ...]:
    row = ENVELOPE_ROWS[row_name]
    return tuple(int(v) for v in ENVELOPES[row, : ENVELOPE_LENGTH[row]])


def _note_name(key: int) -> str:
    while key < LOWEST_KEY:
        key += 12
    while key > HIGHEST_KEY:
        key -= 12
    return f"{NOTE_NAMES[key % 12]}{key // 12 - 1}"


def row_tempos(row_frames: np.ndarray) -> tuple[int, np.ndarray]:
    """FamiTracker's speed for a song, and a tempo per row that keeps its rows on the model's frames.

    FamiTracker (NTSC) plays a row in ``speed * 150 / tempo`` frames, tempo a whole number
    32-255: 120 BPM at speed 6 gives 7.5 frames a row where the model has 7.512, 0.3 s
    behind after 3 minutes. So a row keeps the tempo before it while FamiTracker's running
    time stays within half a frame of the model's, and otherwise takes the tempo (of the two
    nearest its length) that brings it closest: the rows stay within half a frame of the
    model's however long the song, with few tempo changes, and a tempo map is followed too.

    Parameters
    ----------
    row_frames : np.ndarray [shape=(T,), dtype=float64]
        Each step's length in the model's frames.

    Returns
    -------
    speed : int
    tempo : np.ndarray [shape=(T,), dtype=int64]

    Raises
    ------
    ParameterError
        Steps too long or too short for any speed (slower than 8 BPM or faster than 1275).
    """
    typical = float(np.median(row_frames)) if len(row_frames) else 7.5
    speed = next(
        (s for s in (SPEED, 3, 2, 1, 12, 24, 31) if MIN_TEMPO <= s * 150.0 / typical <= MAX_TEMPO), None
    )  # fmt: skip
    if speed is None or np.any(row_frames <= 0):
        raise ParameterError(
            f"steps of {typical:.2f} frames ({60 * 60.0988 / (4 * typical):.0f} BPM) are outside what FamiTracker "
            "plays; use 8-1275 BPM"
        )
    tempo = np.empty(len(row_frames), np.int64)
    behind = 0.0  # the model's running time minus FamiTracker's, frames
    current = 0
    for r, frames in enumerate(row_frames.tolist()):
        behind += frames
        # The tempo stays while FamiTracker keeps within half a frame of the model (rows fall on
        # whole frames anyway): few Fxx, no drift.
        if not current or abs(behind - speed * 150.0 / current) > 0.5:
            ideal = speed * 150.0 / max(behind, 1e-9)
            options = {min(max(int(np.floor(ideal)) + d, MIN_TEMPO), MAX_TEMPO) for d in (0, 1)}
            current = min(options, key=lambda t: abs(behind - speed * 150.0 / t))
        tempo[r] = current
        behind -= speed * 150.0 / current
    return speed, tempo


def famitracker_text(song: ChipSong, *, title: str | None = None, author: str = "chiptuner") -> str:
    """The FamiTracker text module of a song.

    Raises
    ------
    ParameterError
        A song too long for FamiTracker's 128 frames of 256 rows, or a tempo it cannot play.
    """
    notes = chip_notes(song)
    n_steps = len(song.arrangement)
    frames_of_step = step_frames(song)
    # Instruments: the pulses per duty used, the triangle, the noise per drum class used.
    instruments: list[Instrument] = []
    index: dict[tuple, int] = {}

    def instrument(key: tuple, make: Instrument) -> int:
        if key not in index:
            index[key] = len(instruments)
            instruments.append(make)
        return index[key]

    cells = [[None] * n_steps for _ in range(N_CHANNELS)]
    effects = [[None] * n_steps for _ in range(N_CHANNELS)]
    for n in range(len(notes)):
        v = int(notes.voice[n])
        start, end = int(notes.start_step[n]), int(notes.end_step[n])
        if v < 2:
            duty = int(notes.duty[n])
            inst = instrument(
                (v, duty), Instrument(f"{VOICE_NAMES[v]} {DUTY_NAMES[duty]}", _envelope(VOICE_NAMES[v]), duty)
            )
            cells[v][start] = f"{_note_name(int(notes.chip_key[n]))} {inst:02X} ."
        elif v == 2:
            inst = instrument((2,), Instrument("triangle", None, None))
            cells[v][start] = f"{_note_name(int(notes.chip_key[n]))} {inst:02X} ."
        else:
            row_name = next((name for name, r in ENVELOPE_ROWS.items() if r == notes.envelope_row[n]), "other_drum")
            inst = instrument((3, row_name), Instrument(f"noise {row_name}", _envelope(row_name), int(notes.duty[n])))
            cells[v][start] = f"{15 - int(notes.period[n]):X}-# {inst:02X} ."
        if v < 3 and end < n_steps and cells[v][end] is None:
            cells[v][end] = "--- .. ."  # silence until the next note (overwritten if one starts here)
    # The triangle's cut of a repeated note, one frame before the next (the model's articulation).
    tri = np.flatnonzero(notes.voice == 2)
    for a, b in zip(tri[:-1].tolist(), tri[1:].tolist(), strict=True):
        same = notes.period[a] == notes.period[b] and notes.end_frame[a] == notes.start_frame[b]
        if same and notes.end_frame[a] - notes.start_frame[a] >= 2:
            last_row = int(notes.end_step[a]) - 1
            into_row = int(notes.end_frame[a]) - 1 - int(frames_of_step[last_row])
            if 0 < into_row <= 0xFF:
                effects[2][last_row] = f"S{into_row:02X}"
    # Tempo: per row, so that FamiTracker's rows stay on the model's frames (``row_tempos``);
    # a change is an Fxx in the DPCM column, which has nothing else to do.
    speed, row_tempo = row_tempos(np.diff(song.step_sec) * FRAME_RATE_HZ if n_steps else np.array([7.5]))
    tempo = int(row_tempo[0])
    for s in np.flatnonzero(np.diff(row_tempo) != 0).tolist():
        effects[4][s + 1] = f"F{int(row_tempo[s + 1]):02X}"
    # Patterns: rows of each channel cut into patterns, identical ones shared.
    rows = PATTERN_ROWS
    while -(-max(n_steps, 1) // rows) > MAX_FRAMES:
        rows *= 2
        if rows > MAX_PATTERN_ROWS:
            raise ParameterError(
                f"the song has {n_steps} steps, over the {MAX_FRAMES * MAX_PATTERN_ROWS} FamiTracker holds; "
                "cut it shorter"
            )
    n_frames = max(-(-n_steps // rows), 1)
    order = np.zeros((n_frames, N_CHANNELS), np.int64)
    patterns: list[dict[tuple[str, ...], int]] = [{} for _ in range(N_CHANNELS)]
    for f in range(n_frames):
        for c in range(N_CHANNELS):
            content = []
            for s in range(f * rows, (f + 1) * rows):
                cell = cells[c][s] if s < n_steps else None
                effect = effects[c][s] if s < n_steps else None
                content.append(f"{cell or '... .. .'} {effect or '...'}")
            order[f, c] = patterns[c].setdefault(tuple(content), len(patterns[c]))
    lines = [
        "# FamiTracker text export 0.4.6 (written by chiptuner)",
        "",
        "# INFO block",
        f"{'TITLE':<15} {_quote((song.title if title is None else title)[:31])}",
        f"{'AUTHOR':<15} {_quote(author[:31])}",
        f"{'COPYRIGHT':<15} {_quote('')}",
        "",
        "# COMMENTS block",
        f"COMMENT {_quote(f'Arranged by chiptuner; NTSC, {FRAME_RATE_HZ:.4f} Hz frames.')}",
        "",
        "# PARAMS block",
        f"{'MACHINE':<15} 0",
        f"{'FRAMERATE':<15} 0",
        f"{'EXPANSION':<15} 0",
        f"{'VIBRATO':<15} 1",
        f"{'SPLIT':<15} 32",
        "",
        "# SEQUENCES block",
    ]
    sequences: dict[tuple[int, tuple[int, ...]], int] = {}
    sequence_lines: list[str] = []
    inst_lines: list[str] = []
    for i, inst in enumerate(instruments):
        macro = [-1] * 5
        for kind, values in ((0, inst.volume), (4, None if inst.duty is None else (inst.duty,))):
            if values is None:
                continue
            number = sum(1 for k, _ in sequences if k == kind)
            if (kind, values) not in sequences:
                sequences[(kind, values)] = number
                sequence_lines.append(
                    f"{'MACRO':<9} {kind:3d} {number:3d} {-1:3d} {-1:3d} {0:3d} :" + "".join(f" {v}" for v in values)
                )
            macro[kind] = sequences[(kind, values)]
        inst_lines.append(f"{'INST2A03':<8} {i:3d}   " + "".join(f"{m:3d} " for m in macro) + _quote(inst.name))
    lines += sequence_lines + ["", "# DPCM SAMPLES block", "", "# INSTRUMENTS block", *inst_lines, ""]
    lines += [
        "# TRACKS block",
        "",
        f"TRACK {rows:3d} {speed:3d} {tempo:3d} {_quote('song')}",
        "COLUMNS :" + " 1" * N_CHANNELS,
        "",
    ]
    lines += [f"ORDER {f:02X} :" + "".join(f" {p:02X}" for p in order[f]) for f in range(n_frames)]
    lines.append("")
    for c_pattern in range(int(order.max()) + 1):
        lines.append(f"PATTERN {c_pattern:02X}")
        bodies = []
        for c in range(N_CHANNELS):
            inverse = {p: content for content, p in patterns[c].items()}
            bodies.append(inverse.get(c_pattern, (f"{EMPTY_CELL}",) * rows))
        for r in range(rows):
            lines.append(f"ROW {r:02X}" + "".join(f" : {bodies[c][r]}" for c in range(N_CHANNELS)))
        lines.append("")
    lines.append("# End of export")
    return "\n".join(lines) + "\n"


def write_famitracker(song: ChipSong, path: str | os.PathLike, **fields: str) -> int:
    """Write the FamiTracker text module of a song (``famitracker_text``); returns its size in bytes."""
    data = famitracker_text(song, **fields).encode("ascii", "replace")
    Path(path).write_bytes(data)
    return len(data)
