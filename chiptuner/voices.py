"""Voice reduction: a full song to the four chip voices (thin wrapper over ``_kernels.voices``).

``reduce_voices`` gives the model's training target: pulse1 = the lead, triangle = the
bass line, pulse2 = the most salient remaining line, noise = the drums in five classes.
Every voice is monophonic and starts a note only where a note of the song starts.

The rules, step by step (16th-note grid):

- **pulse1** (lead): the given lead notes; a later onset cuts a sounding note; of notes
  starting on one step the highest wins.
- **triangle** (bass): among the notes that are neither drums nor lead notes, the lowest
  pitch starting at the step, unless the bass note already sounding is lower (it is then
  held); when the bass note ends and nothing starts, silence. A lead note is any note
  with the (onset tick, pitch) of a note of ``lead``, so unison doublings of the melody in
  other tracks count as lead too.
- **pulse2** (harmony): the highest line under the lead, mirror of the bass. Salience,
  best first: under the lead (anywhere where the lead rests) the highest of the pitches
  starting at the step and the harmony note still held (a start begins a note, the held
  note goes on); the held note above the lead; the lowest pitch starting above the lead;
  silence. The lead's and the bass's pitch at the step are never candidates. Only notes
  that start can enter, so sustained chords under a moving line do not, while arpeggios
  and counter-lines climbing above the held note do. (Onset-first, where any start under
  the lead replaces the held note, found the chorale alto on 85% of steps against 96%.)
- **noise** (drums): channel-10 notes mapped by ``GM_DRUM_MAP`` to kick 36, snare 38,
  closed hat 42, open hat 46 or crash 49; of hits on one step the first of
  ``DRUM_PRIORITY`` (kick > snare > crash > open hat > closed hat) wins; a drum is held
  while its note lasts. Melodic channels with percussive programs are not read as drums
  (about 3% of the NES corpus keeps drums only there; see ``tools/measure_voices.py``).
- pitched voices are folded by whole octaves into ``VOICE_RANGES`` after the choice.
"""

from __future__ import annotations

import logging

import numpy as np

from chiptuner._kernels import voices as _k
from chiptuner.errors import ParameterError
from chiptuner.timebase import STEPS_PER_BEAT
from chiptuner.types import VOICE_NAMES, Arrangement, Notes, Score

__all__ = [
    "VOICE_RANGES",
    "DRUM_KEYS",
    "DRUM_NAMES",
    "DRUM_PRIORITY",
    "GM_DRUM_MAP",
    "reduce_voices",
    "voice_notes",
]

logger = logging.getLogger(__name__)

#: Inclusive MIDI pitch range of each pitched voice; reduced lines are octave-folded into it.
VOICE_RANGES = {"pulse1": (48, 96), "pulse2": (40, 88), "triangle": (28, 64)}

#: The five drum classes of the noise voice, as General MIDI keys:
#: kick, snare, closed hat, open hat, crash.
DRUM_KEYS = np.array([36, 38, 42, 46, 49], dtype=np.int16)
DRUM_KEYS.flags.writeable = False
DRUM_NAMES = ("kick", "snare", "closed_hat", "open_hat", "crash")

#: Drum keys by importance: when several classes hit on one step, the first one wins.
DRUM_PRIORITY = np.array([36, 38, 49, 46, 42], dtype=np.int16)
DRUM_PRIORITY.flags.writeable = False

_KICK, _SNARE, _CLOSED, _OPEN, _CRASH = (int(k) for k in DRUM_KEYS)
# fmt: off
_GM_CLASSES = {
    # GM2 / GS extensions below 35: clicks and sticks read as hats, the slap as a snare
    27: _CLOSED, 28: _SNARE, 29: _CLOSED, 30: _CLOSED, 31: _CLOSED, 32: _CLOSED, 33: _CLOSED, 34: _CLOSED,
    35: _KICK, 36: _KICK,  # bass drums
    37: _SNARE, 38: _SNARE, 39: _SNARE, 40: _SNARE,  # side stick, snares, hand clap
    41: _KICK, 43: _KICK,  # floor toms: low toms sound like a kick on the noise channel
    45: _SNARE, 47: _SNARE, 48: _SNARE, 50: _SNARE,  # low to high toms
    42: _CLOSED, 44: _CLOSED, 46: _OPEN,  # hi-hats (pedal = closed)
    49: _CRASH, 52: _CRASH, 55: _CRASH, 57: _CRASH,  # crash, china, splash, crash 2
    51: _CLOSED, 59: _CLOSED,  # rides keep time like a closed hat
    53: _OPEN,  # ride bell: an accent that rings
    54: _CLOSED, 56: _CLOSED, 58: _OPEN,  # tambourine, cowbell, vibraslap
    60: _SNARE, 61: _SNARE, 62: _SNARE, 63: _SNARE, 64: _KICK,  # bongos, congas (low conga = kick)
    65: _SNARE, 66: _SNARE,  # timbales
    67: _CLOSED, 68: _CLOSED, 69: _CLOSED, 70: _CLOSED,  # agogos, cabasa, maracas
    71: _CLOSED, 72: _OPEN, 73: _CLOSED, 74: _OPEN,  # whistles, guiros (short / long)
    75: _CLOSED, 76: _CLOSED, 77: _CLOSED,  # claves, wood blocks
    78: _CLOSED, 79: _OPEN, 80: _CLOSED, 81: _OPEN,  # cuicas, triangles (mute / open)
    # GM2 / GS extensions above 81
    82: _CLOSED, 83: _OPEN, 84: _CRASH, 85: _CLOSED, 86: _KICK, 87: _KICK, 88: _OPEN,
}
# fmt: on

#: Drum class key (36, 38, 42, 46 or 49) of each channel-10 key; -1 for keys that are no drum.
GM_DRUM_MAP = np.full(128, -1, dtype=np.int16)
GM_DRUM_MAP[list(_GM_CLASSES)] = list(_GM_CLASSES.values())
GM_DRUM_MAP.flags.writeable = False


#: (low, high) of pulse1, pulse2 and triangle as the kernel reads them.
_RANGES = np.array([VOICE_RANGES[name] for name in VOICE_NAMES[:3]], dtype=np.int64)
_RANGES.flags.writeable = False


def _fold_table(ranges: np.ndarray) -> np.ndarray:
    """``_kernels.voices.fold_table`` in numpy, so that no kernel runs at import.

    Pitch p of voice v moved by whole octaves into ``ranges[v]``; column 128 (index -1)
    keeps silence silent.
    """
    pitch = np.arange(128, dtype=np.int64)
    table = np.full((len(ranges), 129), -1, dtype=np.int16)
    for v, (low, high) in enumerate(ranges.tolist()):
        up = pitch + 12 * ((low - pitch + 11) // 12)
        down = pitch - 12 * ((pitch - high + 11) // 12)
        table[v, :128] = np.where(pitch < low, up, np.where(pitch > high, down, pitch))
    table.flags.writeable = False
    return table


#: Octave folding of pulse1, pulse2 and triangle as a lookup table, made once.
_FOLD = _fold_table(_RANGES)


def reduce_voices(
    score: Score,
    lead: Notes,
    *,
    steps_per_beat: int = STEPS_PER_BEAT,
    n_steps: int | None = None,
) -> Arrangement:
    """Reduce a song to the four monophonic chip voices (pulse1, pulse2, triangle, noise).

    Parameters
    ----------
    score : Score
        The whole song.
    lead : Notes
        The melody, normally a monophonic subset of ``score.notes`` chosen by the melody
        stage. Its notes are pulse1; notes of the score with the (onset tick, pitch) of
        a lead note are kept out of the other voices.
    steps_per_beat : int, keyword-only
        Grid resolution (4 = 16th notes).
    n_steps : int or None, keyword-only
        Length T of the result; by default the last release step of the score. Notes
        beyond it are cut.

    Returns
    -------
    Arrangement
        ``pitch`` [shape=(T, 4), dtype=int16], -1 where silent, noise as GM drum keys of
        ``DRUM_KEYS``; ``onset`` [shape=(T, 4), dtype=bool], True only where a voice starts
        a note. The rules are in the module docstring.

    Raises
    ------
    TypeError
        If ``score`` is not a Score or ``lead`` is not Notes.
    ParameterError
        If ``steps_per_beat`` is not a positive integer or ``n_steps`` is negative.
    """
    if not isinstance(score, Score):
        raise TypeError(f"score is a {type(score).__name__}; pass a chiptuner.Score (from chiptuner.read_midi)")
    if not isinstance(lead, Notes):
        raise TypeError(f"lead is a {type(lead).__name__}; pass chiptuner.Notes (e.g. score.notes.take(mask))")
    if isinstance(steps_per_beat, bool) or not isinstance(steps_per_beat, (int, np.integer)) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer such as 4")
    notes = score.notes
    tpb = score.ticks_per_beat
    if tpb <= 0:
        raise ParameterError(f"ticks_per_beat={tpb}, steps_per_beat={steps_per_beat}; both must be positive integers")
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
            raise ParameterError(f"n_steps is {n_steps!r}; it must be an integer >= 0, or None for the song's length")
        pitch = np.empty((n_steps, 4), dtype=np.int16)
        onset = np.empty((n_steps, 4), dtype=np.bool_)
        _reduce_into(notes, lead, tpb, steps_per_beat, pitch, onset)
        return Arrangement._adopt(pitch, onset, steps_per_beat=int(steps_per_beat))
    start_step = np.empty(len(notes), dtype=np.int64)
    end_step = np.empty(len(notes), dtype=np.int64)
    n_steps = _k.quantize(notes.start_tick, notes.end_tick, tpb, steps_per_beat, start_step, end_step)
    if n_steps < 0:
        raise ParameterError(f"every note of the score ends before tick 0 (last step {n_steps}); pass n_steps")
    pitch = np.empty((n_steps, 4), dtype=np.int16)
    onset = np.empty((n_steps, 4), dtype=np.bool_)
    _k.reduce_folded(
        start_step, end_step, notes.start_tick, notes.pitch, notes.is_drum, lead.start_tick, lead.end_tick,
        lead.pitch, tpb, steps_per_beat, GM_DRUM_MAP, DRUM_PRIORITY, _FOLD, pitch, onset,
    )  # fmt: skip
    # the kernel's fresh outputs
    return Arrangement._adopt(pitch, onset, steps_per_beat=int(steps_per_beat))


def _reduce_into(
    notes: Notes, lead: Notes, ticks_per_beat: int, steps_per_beat: int, out_pitch: np.ndarray, out_onset: np.ndarray
) -> int:
    """The voices of ``reduce_voices`` written into ``out_pitch`` and ``out_onset`` [shape=(T, 4)].

    For arguments already checked (``pipeline.song_arrays`` checks its own): one kernel call,
    no Arrangement. Returns how many onsets pulse2, triangle and noise have together.
    """
    return _k.reduce_ticks(
        notes.start_tick, notes.end_tick, notes.pitch, notes.is_drum, lead.start_tick, lead.end_tick, lead.pitch,
        ticks_per_beat, steps_per_beat, GM_DRUM_MAP, DRUM_PRIORITY, _FOLD, out_pitch, out_onset,
    )  # fmt: skip


def _reduce_steps_into(
    notes: Notes,
    start_step: np.ndarray,
    end_step: np.ndarray,
    lead: Notes,
    ticks_per_beat: int,
    steps_per_beat: int,
    out_pitch: np.ndarray,
    out_onset: np.ndarray,
) -> int:
    """``_reduce_into`` given the notes' steps on this grid (``_kernels.voices.quantize``'s)."""
    return _k.reduce_folded(
        start_step, end_step, notes.start_tick, notes.pitch, notes.is_drum, lead.start_tick, lead.end_tick,
        lead.pitch, ticks_per_beat, steps_per_beat, GM_DRUM_MAP, DRUM_PRIORITY, _FOLD, out_pitch, out_onset,
    )  # fmt: skip


def voice_notes(arrangement: Arrangement, voice: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn one voice of an arrangement back into notes.

    A note runs from an onset to the next onset, pitch change or silence. A pitch that
    starts without an onset flag (not produced by ``reduce_voices``) still starts a note;
    an onset flag on a silent step is ignored.

    Parameters
    ----------
    arrangement : Arrangement
    voice : int
        0-3, in the order of ``VOICE_NAMES``.

    Returns
    -------
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
        Exclusive end, ``end_step > start_step``.
    pitch : np.ndarray [shape=(N,), dtype=int16]
    """
    if isinstance(voice, bool) or not isinstance(voice, (int, np.integer)) or not 0 <= voice < 4:
        raise ParameterError(f"voice is {voice!r}; it must be an index 0-3 into {VOICE_NAMES}")
    pitch = arrangement.pitch[:, voice]
    onset = arrangement.onset[:, voice]
    n_steps = len(pitch)
    boundary = onset.copy()
    if n_steps:
        boundary[0] = True
        boundary[1:] |= pitch[1:] != pitch[:-1]
    start_step = np.flatnonzero(boundary)
    end_step = np.append(start_step[1:], n_steps)
    sounding = pitch[start_step] >= 0
    start_step = start_step[sounding]
    return start_step.astype(np.int64), end_step[sounding].astype(np.int64), pitch[start_step].astype(np.int16)
