"""One song to training arrays: melody, buttons, the four chip voices and bar positions.

Every array of a song lies on one 16th-note step grid of length T, so a training
example is a plain row slice ``[t0:t1]`` of each of them.
"""

from __future__ import annotations

import functools
import logging
import os
import typing

import numpy as np

from chiptuner._kernels import melody as _melody_kernels
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.melody import _RECENTER_BEATS, MaxOnsets, _melody_notes, _window_step, melody_notes, to_buttons
from chiptuner.midi_io import read_midi
from chiptuner.timebase import STEPS_PER_BEAT
from chiptuner.types import Melody, Notes, Score, TempoMap, TimeSignatures
from chiptuner.voices import _reduce_into as _reduce_voices_into
from chiptuner.voices import _reduce_steps_into as _reduce_voice_steps_into

__all__ = [
    "MaxOnsets",
    "SongRejected",
    "song_arrays",
    "convert_file",
    "step_in_bar",
    "warmup",
    "MIN_BARS",
    "MIN_MELODY_ONSETS",
    "MAX_STEPS",
    "STEP_KEYS",
    "SONG_KEYS",
]

logger = logging.getLogger(__name__)

#: A song shorter than this many 4/4 bars is refused: too little to learn an arrangement from.
MIN_BARS = 4
#: A melody with fewer onsets than this is no melody.
MIN_MELODY_ONSETS = 8
#: A song longer than this many steps is refused (about 3.5 hours at 120 BPM: a corrupt file).
MAX_STEPS = 100_000

#: Arrays of ``song_arrays`` with one row per step, and their dtypes.
STEP_KEYS = {
    "melody_pitch": np.int16,
    "melody_onset": np.bool_,
    "full_pitch": np.int16,
    "full_onset": np.bool_,
    "lane": np.int8,
    "lane_onset": np.bool_,
    "voice_pitch": np.int16,
    "voice_onset": np.bool_,
    "step_in_bar": np.int8,
}
#: Scalars of ``song_arrays`` (0-d arrays), and their dtypes.
SONG_KEYS = {"ticks_per_beat": np.int32, "steps_per_beat": np.int8, "n_notes": np.int64}

_MAX_ONSETS = typing.get_args(MaxOnsets)


class SongRejected(MidiFileError):
    """A readable file that makes no training example (no melody, too short, no accompaniment).

    Attributes
    ----------
    n_notes, n_steps : int
        Size of the refused song, for throughput accounting.
    """

    def __init__(self, message: str, *, n_notes: int = 0, n_steps: int = 0) -> None:
        super().__init__(message)
        self.n_notes = n_notes
        self.n_steps = n_steps


def _bar_steps(numerator: int, denominator: int, steps_per_beat: int) -> int:
    """Return the steps per bar of a time signature, or 0 where the signature is not a sane bar line.

    Sane: numerator 2-16, denominator 2, 4, 8 or 16, a whole number of steps, and a bar
    of 1.5 to 12 quarter-note beats. POP909's 1/4 and vgmusic's 64/128 are not sane.
    """
    if not (2 <= numerator <= 16 and denominator in (2, 4, 8, 16)):
        return 0
    steps_x_den = numerator * 4 * steps_per_beat
    if steps_x_den % denominator:
        return 0
    steps = steps_x_den // denominator
    if not (1.5 * steps_per_beat <= steps <= 12 * steps_per_beat):
        return 0
    return steps


def step_in_bar(
    time_signatures: TimeSignatures, ticks_per_beat: int, n_steps: int, *, steps_per_beat: int = STEPS_PER_BEAT
) -> np.ndarray:
    """Index of each step within its bar.

    Parameters
    ----------
    time_signatures : TimeSignatures
    ticks_per_beat : int
    n_steps : int
        Length T of the grid.
    steps_per_beat : int

    Returns
    -------
    np.ndarray [shape=(T,), dtype=int8]
        0 on each downbeat. Bars are 4/4 until the first sane time signature; a signature
        starts a new bar at its (rounded) step. Nonsensical signatures (1/4, 64/128, bars
        under 1.5 or over 12 beats) are ignored: the bar in force goes on.
    """
    if n_steps < 0:
        raise ParameterError(f"n_steps is {n_steps}; it must be >= 0")
    if ticks_per_beat <= 0 or steps_per_beat <= 0:
        raise ParameterError(
            f"ticks_per_beat={ticks_per_beat}, steps_per_beat={steps_per_beat}; both must be positive integers"
        )
    return _step_in_bar(time_signatures, ticks_per_beat, n_steps, steps_per_beat)


def _step_in_bar(time_signatures: TimeSignatures, ticks_per_beat: int, n_steps: int, steps_per_beat: int) -> np.ndarray:
    """``step_in_bar`` for arguments already checked."""
    length = 4 * steps_per_beat
    ticks = time_signatures.tick.tolist()
    if not any(ticks) and n_steps <= MAX_STEPS:
        # Every signature (if any) at tick 0, as in most files of every corpus: the last sane
        # one sets the bar throughout.
        for num, den in zip(time_signatures.numerator.tolist(), time_signatures.denominator.tolist(), strict=True):
            length = _bar_steps(num, den, steps_per_beat) or length
        return _bar_pattern(length)[:n_steps]
    start = 0
    starts = []  # (start, length) of the bars before the one in force
    for step, num, den in zip(
        _signature_steps(ticks, ticks_per_beat, steps_per_beat),
        time_signatures.numerator.tolist(),
        time_signatures.denominator.tolist(),
        strict=True,
    ):
        bar = _bar_steps(num, den, steps_per_beat)
        if bar == 0 or step >= n_steps:
            continue
        if step == start:
            length = bar
        elif bar != length or (step - start) % length:
            starts.append((start, length))
            start, length = step, bar
    if not starts and n_steps <= MAX_STEPS:
        return _bar_pattern(length)[:n_steps]
    starts.append((start, length))
    bounds = [s for s, _ in starts[1:]] + [n_steps]
    out = np.empty(n_steps, dtype=np.int8)
    for (begin, bar), end in zip(starts, bounds, strict=True):
        out[begin:end] = _bar_pattern(bar)[: end - begin] if end - begin <= MAX_STEPS else np.arange(end - begin) % bar
    return out


def _signature_steps(ticks: list[int], ticks_per_beat: int, steps_per_beat: int) -> list[int]:
    """``timebase.ticks_to_steps`` of a few ticks, in Python integers where int64 cannot overflow."""
    if not ticks:
        return []
    if 2 * max(map(abs, ticks)) * steps_per_beat + 2 * ticks_per_beat < 2**63:
        divisor = 2 * ticks_per_beat
        return [(2 * tick * steps_per_beat + ticks_per_beat) // divisor for tick in ticks]
    # Absurd ticks: int64 arithmetic as ticks_to_steps does it, overflow and all.
    return ((2 * np.array(ticks, dtype=np.int64) * steps_per_beat + ticks_per_beat) // (2 * ticks_per_beat)).tolist()


@functools.lru_cache(maxsize=64)  # every sane bar length of a grid (at most 43 at 4 steps per beat)
def _bar_pattern(bar: int) -> np.ndarray:
    """0, 1, ..., bar-1, 0, 1, ... for MAX_STEPS steps, read-only: one bar length's positions, made once."""
    pattern = (np.arange(MAX_STEPS, dtype=np.int32) % bar).astype(np.int8)
    pattern.setflags(write=False)
    return pattern


@functools.lru_cache(maxsize=16)
def _simplify_window(max_onsets: str, steps_per_beat: int) -> int:
    """The window of ``melody.simplify`` for these settings, by its own rule (and its errors)."""
    return _window_step(Melody(np.empty(0, np.int16), np.empty(0, np.bool_), steps_per_beat), max_onsets)


def song_arrays(
    score: Score, *, max_onsets: MaxOnsets = "beat", steps_per_beat: int = STEPS_PER_BEAT
) -> dict[str, np.ndarray]:
    """Make the training arrays of one song, all on one step grid of length T.

    Parameters
    ----------
    score : Score
    max_onsets : {"beat", "half_beat"}
        How far the melody is simplified (see ``melody.simplify``).
    steps_per_beat : int

    Returns
    -------
    dict of str to np.ndarray
        Per step (see ``STEP_KEYS``):

        - ``melody_pitch`` [shape=(T,), dtype=int16], ``melody_onset`` [shape=(T,), dtype=bool]:
          the simplified melody, -1 for a rest (the model's input).
        - ``full_pitch``, ``full_onset``: the melody as extracted, before simplification.
        - ``lane`` [shape=(T,), dtype=int8] (0-4, -1 none), ``lane_onset`` [shape=(T,), dtype=bool]:
          the buttons that play the simplified melody.
        - ``voice_pitch`` [shape=(T, 4), dtype=int16] (-1 silent), ``voice_onset`` [shape=(T, 4), dtype=bool]:
          pulse1, pulse2, triangle, noise.
        - ``step_in_bar`` [shape=(T,), dtype=int8].

        Scalars (0-d arrays, see ``SONG_KEYS``): ``ticks_per_beat``, ``steps_per_beat``, ``n_notes``.

    Raises
    ------
    SongRejected
        No notes, no usable melody (under ``MIN_MELODY_ONSETS`` onsets), no accompaniment,
        shorter than ``MIN_BARS`` bars, or longer than ``MAX_STEPS`` steps.
    ParameterError
        An unknown ``max_onsets``.
    """
    if max_onsets not in _MAX_ONSETS:
        raise ParameterError(f"max_onsets is {max_onsets!r}; use one of {_MAX_ONSETS}")
    if not isinstance(steps_per_beat, int) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer")
    n_notes = len(score.notes)
    if n_notes == 0:
        raise SongRejected("no notes")
    tpb = score.ticks_per_beat
    if not isinstance(tpb, (int, np.integer)) or tpb <= 0:
        raise ParameterError(f"score.ticks_per_beat is {tpb!r}; it must be a positive integer such as 480")
    last_step = (2 * score.end_tick * steps_per_beat + tpb) // (2 * tpb)  # ticks_to_steps of one tick
    if last_step > MAX_STEPS:
        raise SongRejected(
            f"{last_step:,} steps long, over the {MAX_STEPS:,}-step cap (a corrupt duration?)",
            n_notes=n_notes,
            n_steps=last_step,
        )
    # The melody is chosen once: its notes are the lead voice, its grid form the model's input.
    # On the melody's own 16th grid the notes' steps are computed once for both stages.
    shared_steps = steps_per_beat == STEPS_PER_BEAT
    if shared_steps:
        notes = score.notes
        start_step = np.empty(n_notes, dtype=np.int64)
        end_step = np.empty(n_notes, dtype=np.int64)
        _melody_kernels.grid_steps(notes.start_tick, notes.end_tick, tpb, steps_per_beat, start_step, end_step)
        lead = _melody_notes(score, start_step, end_step)
    else:
        lead = melody_notes(score)
    # The grid ends at the song's last release; a note that starts on that very step is cut.
    n_steps = last_step
    # The melody's step arrays come from melody's kernels directly, as melody_from_notes,
    # simplify and to_buttons make them (tests/test_pipeline.py holds them equal): on a
    # typical song those wrappers' checks and containers cost twice their kernels.
    full_pitch = np.empty(n_steps, dtype=STEP_KEYS["full_pitch"])
    full_onset = np.empty(n_steps, dtype=STEP_KEYS["full_onset"])
    _melody_kernels.render_ticks(
        lead.start_tick, lead.end_tick, lead.pitch, tpb, steps_per_beat, full_pitch, full_onset
    )  # fmt: skip
    if n_steps < MIN_BARS * 4 * steps_per_beat:
        raise SongRejected(
            f"too short: {n_steps} steps, under {MIN_BARS} bars of 4/4", n_notes=n_notes, n_steps=n_steps
        )
    n_onsets = int(np.count_nonzero(full_onset))
    if n_onsets < MIN_MELODY_ONSETS:
        raise SongRejected(
            f"no usable melody: {n_onsets} melody notes, under {MIN_MELODY_ONSETS}", n_notes=n_notes, n_steps=n_steps
        )
    melody_pitch = np.empty(n_steps, dtype=STEP_KEYS["melody_pitch"])
    melody_onset = np.empty(n_steps, dtype=STEP_KEYS["melody_onset"])
    window = _simplify_window(max_onsets, steps_per_beat)
    _melody_kernels.thin_onsets(full_pitch, full_onset, window, melody_pitch, melody_onset)
    lane = np.empty(n_steps, dtype=STEP_KEYS["lane"])
    lane_onset = np.empty(n_steps, dtype=STEP_KEYS["lane_onset"])
    recenter_step = _RECENTER_BEATS * steps_per_beat
    _melody_kernels.button_lanes(melody_pitch, melody_onset, recenter_step, lane, lane_onset)
    voice_pitch = np.empty((n_steps, 4), dtype=STEP_KEYS["voice_pitch"])
    voice_onset = np.empty((n_steps, 4), dtype=STEP_KEYS["voice_onset"])
    if shared_steps:
        n_accompaniment = _reduce_voice_steps_into(
            notes, start_step, end_step, lead, tpb, steps_per_beat, voice_pitch, voice_onset
        )
    else:
        n_accompaniment = _reduce_voices_into(score.notes, lead, tpb, steps_per_beat, voice_pitch, voice_onset)
    if not n_accompaniment:
        raise SongRejected("no accompaniment: pulse2, triangle and noise are silent", n_notes=n_notes, n_steps=n_steps)
    return {
        "melody_pitch": melody_pitch,
        "melody_onset": melody_onset,
        "full_pitch": full_pitch,
        "full_onset": full_onset,
        "lane": lane,
        "lane_onset": lane_onset,
        "voice_pitch": voice_pitch,
        "voice_onset": voice_onset,
        "step_in_bar": _step_in_bar(score.time_signatures, tpb, n_steps, steps_per_beat),
        "ticks_per_beat": np.array(tpb, dtype=SONG_KEYS["ticks_per_beat"]),
        "steps_per_beat": np.array(steps_per_beat, dtype=SONG_KEYS["steps_per_beat"]),
        "n_notes": np.array(n_notes, dtype=SONG_KEYS["n_notes"]),
    }


def convert_file(
    path: str | os.PathLike, *, max_onsets: MaxOnsets = "beat", steps_per_beat: int = STEPS_PER_BEAT
) -> dict[str, np.ndarray]:
    """Read one MIDI file and make its training arrays (``read_midi`` then ``song_arrays``).

    Raises
    ------
    MidiFileError
        The file is unreadable, or ``SongRejected``: it makes no training example.
    """
    return song_arrays(read_midi(path), max_onsets=max_onsets, steps_per_beat=steps_per_beat)


def _demo_score() -> Score:
    """Eight bars: a stepwise melody over a bass line and a hi-hat, for warming up."""
    n = 32
    beat = 96
    melody_start = np.arange(n, dtype=np.int64) * beat
    bass_start = np.arange(n // 2, dtype=np.int64) * 2 * beat
    start = np.concatenate((melody_start, bass_start, melody_start))
    length = np.concatenate((np.full(n, beat), np.full(n // 2, 2 * beat), np.full(n, beat // 4)))
    pitch = np.concatenate((72 + np.arange(n) % 8, 48 + np.arange(n // 2) % 5, np.full(n, 42)))
    channel = np.concatenate((np.zeros(n), np.ones(n // 2), np.full(n, 9))).astype(np.int8)
    notes = Notes(
        start,
        start + length,
        pitch,
        np.full(len(start), 100),
        channel,
        np.zeros(len(start)),
        channel.astype(np.int32),
        channel == 9,
    )
    tempo = TempoMap(np.zeros(1, np.int64), np.full(1, 500_000, np.int64))
    signatures = TimeSignatures(np.zeros(1, np.int64), np.full(1, 4), np.full(1, 4))
    return Score(notes, tempo, signatures, beat, ("melody", "bass", "drums"))


def warmup() -> None:
    """Run every stage once on a tiny song, so numba's cache is loaded before real work."""
    try:
        song_arrays(_demo_score())
    except SongRejected as error:
        logger.debug("warm-up song rejected: %s", error)
    # A plain Melody round trip keeps the buttons kernel warm even where the song is refused.
    to_buttons(Melody(np.full(16, 60, np.int16), np.ones(16, bool)))
