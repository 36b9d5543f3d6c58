"""The built-in chip synth (thin typed wrapper over ``_kernels.synth``).

Four voices as on the NES: pulse1 and pulse2 (duty 12.5, 25, 50 or 75 %), triangle and
noise (drum keys mapped to LFSR settings), mixed by the NES's non-linear mixer and the
console's output filters (high-passes at 90 and 440 Hz, a 14 kHz low-pass). Pitch and
envelopes are the chip model's (``chip_model``): a key plays its timer period's frequency
(not equal temperament), and each note the model's per-frame envelope, counted from the
note's own start sample (no frame grid on the live path). The kernel's docstring has the
sound in detail.

- ``ChipSynth``: the live object. ``note_on`` / ``note_off`` / ``set_duty`` between blocks,
  ``render(n)`` a block into a preallocated buffer.
- ``render_events``: note events as arrays, at exact samples, rendered in one go. It is a
  loop over the same block renderer, so offline and live give the same samples.
- ``render_score``: a MIDI file or ``Score`` to audio. A file that follows the output
  contract (``chip_midi``) plays as written; any other song is first reduced to the four
  voices (see ``render_score``).
- ``write_wav``: 16-bit PCM mono with the standard library's ``wave``.
"""

from __future__ import annotations

import logging
import os
import wave
from typing import Union

import numpy as np

from chiptuner._kernels import synth as _k
from chiptuner.chip_midi import VOICE_VELOCITY
from chiptuner.chip_model import DEFAULT_DRUM_SOUND, DRUM_SOUNDS, FRAME_RATE_HZ, ChipSong, chip_notes, cut_before
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.melody import melody_notes
from chiptuner.midi_io import read_control_changes, read_midi
from chiptuner.timebase import ticks_to_seconds
from chiptuner.types import VOICE_NAMES, Notes, Score
from chiptuner.voices import DRUM_KEYS, DRUM_NAMES, DRUM_PRIORITY, GM_DRUM_MAP, reduce_voices, voice_notes

__all__ = [
    "SAMPLE_RATE",
    "BLOCK_SIZE",
    "DUTY_CYCLES",
    "DEFAULT_DUTY",
    "DRUM_SOUNDS",
    "DEFAULT_DRUM_SOUND",
    "DRUM_TABLE",
    "NOTE_OFF",
    "NO_NOTE",
    "TAIL_SEC",
    "TRIANGLE_CUT_SEC",
    "MAX_RENDER_SEC",
    "ChipSynth",
    "render_events",
    "render_score",
    "render_song",
    "write_wav",
    "warmup",
]

logger = logging.getLogger(__name__)

#: The default sample rate (CD audio).
SAMPLE_RATE = 44100
#: Frames ``ChipSynth`` renders per block by default (11.6 ms at 44.1 kHz).
BLOCK_SIZE = 512
#: Sample rates accepted, Hz.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
#: Pulse duty cycles by duty index; a CC 1 value v selects index ``v // 32``.
DUTY_CYCLES = _k.DUTY_CYCLES
#: Duty index of pulse1 and pulse2 until set: 50 % and 25 % (``chip_midi.DUTY_CC`` writes the same).
DEFAULT_DUTY = _k.DEFAULT_DUTY
#: ``event_pitch`` of a note-off, and of an event that only sets the duty.
NOTE_OFF = _k.NOTE_OFF
NO_NOTE = _k.NO_NOTE
#: Seconds rendered after the last note's release: the crash's decay to -60 dB.
TAIL_SEC = 1.0
#: A triangle note that runs into the same note is released this much earlier, as the chip
#: model stops it for its last frame (pulses need no gap: each note-on restarts the envelope).
TRIANGLE_CUT_SEC = 1.0 / FRAME_RATE_HZ
#: Longest audio ``render_score`` makes (about 300 MB of float32 at 44.1 kHz).
MAX_RENDER_SEC = 1800.0

# DRUM_SOUNDS, DEFAULT_DRUM_SOUND: the chip model's noise settings of the five drum classes (period
# index, short mode, seconds to fall by 60 dB, level gain), and of keys of no class.


def _drum_table() -> np.ndarray:
    """The kernel's drum table: each key 0-127 through ``GM_DRUM_MAP`` to its class's settings."""
    rows = {int(key): DRUM_SOUNDS[name] for key, name in zip(DRUM_KEYS.tolist(), DRUM_NAMES, strict=True)}
    table = np.empty((128, _k.N_DRUM_FIELDS), dtype=np.float64)
    for key in range(128):
        period, short, decay_sec, gain = rows.get(int(GM_DRUM_MAP[key]), DEFAULT_DRUM_SOUND)
        table[key, _k.D_RATE_HZ] = _k.NES_CPU_HZ / _k.NOISE_PERIODS[period]
        table[key, _k.D_SHORT_MODE] = float(short)
        table[key, _k.D_DECAY_SEC] = decay_sec
        table[key, _k.D_GAIN] = gain
    table.setflags(write=False)
    return table


#: float64 (128, 4): the noise settings of every drum key (columns ``_kernels.synth.D_*``).
DRUM_TABLE = _drum_table()

#: Velocity of the voices of a song reduced by ``render_score`` (as ``chip_midi.VOICE_VELOCITY``).
_REDUCED_VELOCITY = (100, 80, 96, 90)
#: Drum keys by importance, last = most important: of hits on one sample the last one sounds.
_DRUM_RANK = np.zeros(128, dtype=np.int64)
for _rank, _key in enumerate(DRUM_PRIORITY.tolist()):
    _DRUM_RANK[GM_DRUM_MAP == _key] = len(DRUM_PRIORITY) - _rank
_DRUM_RANK.flags.writeable = False
del _rank, _key

PathOrScore = Union[str, os.PathLike, bytes, bytearray, memoryview, Score]  # noqa: UP007 (a runtime alias)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_sample_rate(sample_rate: object) -> int:
    if not _is_int(sample_rate) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ParameterError(
            f"sample_rate is {sample_rate!r}; use a whole number of Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} "
            f"(44100 is CD audio)"
        )
    return int(sample_rate)


def _check_voice(voice: object) -> int:
    if not _is_int(voice) or not 0 <= voice < 4:
        raise ParameterError(f"voice is {voice!r}; use 0-3 for {', '.join(VOICE_NAMES)}")
    return int(voice)


class ChipSynth:
    """The four chip voices, rendered block by block for a live stream.

    Parameters
    ----------
    sample_rate : int, keyword-only
        Hz, 8000-192000.
    block_size : int, keyword-only
        The most frames one ``render`` call makes; its buffer is allocated once, here.

    Attributes
    ----------
    state : np.ndarray [shape=(5, 13), dtype=float64]
        The voices' state (layout in ``chiptuner._kernels.synth``). The note methods may be
        called from another thread while ``render`` runs: each state field has one writer.
    sample_rate, block_size : int

    Notes
    -----
    A note-on on a pulse that is already sounding strikes a new note (its envelope starts
    again); on the triangle, which has no volume, it only changes the pitch: send
    ``note_off`` a frame earlier for a separate attack. Pitch is the chip's timer period's
    (``chip_model``), each note's envelope runs from its own note-on. The noise voice plays
    one-shot drums: ``pitch`` is a General MIDI drum key, and ``note_off`` does not cut the
    hit's decay. Events take effect at the start of the next block:
    ``render_events`` places them at exact samples.
    """

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, block_size: int = BLOCK_SIZE) -> None:
        self.sample_rate = _check_sample_rate(sample_rate)
        if not _is_int(block_size) or not 1 <= block_size <= 1 << 20:
            raise ParameterError(f"block_size is {block_size!r}; use 1 to 1048576 frames (512 is common)")
        self.block_size = int(block_size)
        self.state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS), dtype=np.float64)
        self._buffer = np.zeros(self.block_size, dtype=np.float32)
        self._rate = float(self.sample_rate)
        _k.init_state(self.state)

    def note_on(self, voice: int, pitch: int, velocity: int = 100) -> None:
        """Start a note on ``voice`` (0-3): ``pitch`` 0-127 (a drum key for noise), ``velocity`` 1-127."""
        if not _is_int(pitch) or not 0 <= pitch <= 127:
            raise ParameterError(f"pitch is {pitch!r}; use a MIDI key 0-127 (a General MIDI drum key for noise)")
        if not _is_int(velocity) or not 1 <= velocity <= 127:
            raise ParameterError(f"velocity is {velocity!r}; use 1-127 (call note_off to release)")
        _k.note_on(self.state, _check_voice(voice), int(pitch), int(velocity), DRUM_TABLE)

    def note_off(self, voice: int) -> None:
        """Release ``voice`` (0-3) with a short ramp; a drum rings on to the end of its decay."""
        _k.note_off(self.state, _check_voice(voice))

    def set_duty(self, voice: int, duty_index: int) -> None:
        """Set pulse ``voice`` (0 or 1) to duty ``DUTY_CYCLES[duty_index]`` (0-3: 12.5, 25, 50, 75 %)."""
        if not _is_int(voice) or voice not in (0, 1):
            raise ParameterError(f"voice is {voice!r}; only the pulses (0 = pulse1, 1 = pulse2) have a duty")
        if not _is_int(duty_index) or not 0 <= duty_index <= 3:
            raise ParameterError(f"duty_index is {duty_index!r}; use 0-3 for 12.5, 25, 50 or 75 % (CC 1 value // 32)")
        _k.set_duty(self.state, int(voice), int(duty_index))

    def render(self, n_frames: int | None = None) -> np.ndarray:
        """Render the next ``n_frames`` (default ``block_size``) and advance.

        Returns
        -------
        np.ndarray [shape=(n_frames,), dtype=float32]
            A view of the synth's buffer, about -1 to 1: the next call overwrites it, so
            copy it to keep it.
        """
        if n_frames is None:
            n_frames = self.block_size
        elif not _is_int(n_frames) or not 0 <= n_frames <= self.block_size:
            raise ParameterError(
                f"n_frames is {n_frames!r}; use 0 to {self.block_size} (the block_size this synth was made with)"
            )
        out = self._buffer[:n_frames]
        _k.render_block(self.state, out, self._rate)
        return out

    def reset(self) -> None:
        """Silence every voice at once and clear the filter: the state of a new synth."""
        _k.init_state(self.state)


def _event_array(values: object, name: str, n: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (n is not None and len(array) != n):
        shape = f"({n},) like event_sample" if n is not None else "(E,)"
        raise ParameterError(f"{name} has shape {array.shape}; it must be 1-D of shape {shape}")
    if len(array) and array.dtype.kind not in "iu":
        if array.dtype.kind == "b" or not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ParameterError(f"{name} has dtype {array.dtype} with non-integer values; pass whole numbers")
    return array.astype(np.int64)


def _check_range(array: np.ndarray, name: str, low: int, high: int, what: str, ok: np.ndarray | None = None) -> None:
    bad = (array < low) | (array > high)
    if ok is not None:
        bad &= ~ok
    if bad.any():
        i = int(np.argmax(bad))
        raise ParameterError(f"{name}[{i}] is {int(array[i])}; {what}")


def render_events(
    event_sample: np.ndarray,
    event_voice: np.ndarray,
    event_pitch: np.ndarray,
    event_velocity: np.ndarray | None = None,
    event_duty: np.ndarray | None = None,
    *,
    n_frames: int | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Render note events, each at an exact sample, from a fresh synth.

    Parameters
    ----------
    event_sample : np.ndarray [shape=(E,), dtype=int]
        Sample index of each event, ``0 <= event_sample <= n_frames``. Events are applied in
        order of sample and, on one sample, in the order given (a stable sort).
    event_voice : np.ndarray [shape=(E,), dtype=int]
        0-3: pulse1, pulse2, triangle, noise.
    event_pitch : np.ndarray [shape=(E,), dtype=int]
        A MIDI key 0-127 for a note-on (a General MIDI drum key for noise), ``NOTE_OFF``
        (-1), or ``NO_NOTE`` (-2) for an event that only sets the duty.
    event_velocity : np.ndarray [shape=(E,), dtype=int], optional
        1-127 for each note-on (other events ignore it); 100 for all when None.
    event_duty : np.ndarray [shape=(E,), dtype=int], optional
        Duty index 0-3 set by the event (pulse voices only), or -1 to leave it; all -1 when None.
    n_frames : int, keyword-only, optional
        Length of the audio; by default the last event plus ``TAIL_SEC``.
    sample_rate : int, keyword-only

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float32]
        Mono audio, about -1 to 1.

    Raises
    ------
    ParameterError
        Arrays of different lengths or non-integers, values out of range, a duty on a
        voice without one, a bad ``sample_rate`` or ``n_frames``.
    """
    rate = _check_sample_rate(sample_rate)
    sample = _event_array(event_sample, "event_sample", None)
    n = len(sample)
    voice = _event_array(event_voice, "event_voice", n)
    pitch = _event_array(event_pitch, "event_pitch", n)
    velocity = (
        np.full(n, 100, np.int64) if event_velocity is None else _event_array(event_velocity, "event_velocity", n)
    )
    duty = np.full(n, -1, np.int64) if event_duty is None else _event_array(event_duty, "event_duty", n)
    last = int(sample.max()) if n else 0
    if n_frames is None:
        n_frames = last + round(TAIL_SEC * rate)
    elif not _is_int(n_frames) or n_frames < 0:
        raise ParameterError(f"n_frames is {n_frames!r}; use a whole number of samples >= 0, or None")
    _check_range(sample, "event_sample", 0, int(n_frames), f"event samples must lie in 0-{n_frames} (n_frames)")
    _check_range(voice, "event_voice", 0, 3, "voices are 0-3 (pulse1, pulse2, triangle, noise)")
    _check_range(pitch, "event_pitch", NO_NOTE, 127, "use a MIDI key 0-127, -1 for a note-off or -2 for no note")
    is_on = pitch >= 0
    _check_range(velocity, "event_velocity", 1, 127, "note-on velocities are 1-127", ok=~is_on)
    _check_range(duty, "event_duty", -1, 3, "use a duty index 0-3, or -1 to leave the duty")
    _check_range(voice, "event_voice", 0, 1, "only the pulses (voices 0 and 1) have a duty", ok=duty < 0)
    order = np.argsort(sample, kind="stable")
    out = np.zeros(int(n_frames), dtype=np.float32)
    state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS), dtype=np.float64)
    _k.init_state(state)
    _k.render_events(
        sample[order], voice[order], pitch[order], velocity[order], duty[order], DRUM_TABLE, state, out, float(rate)
    )
    return out


def _is_monophonic(start_tick: np.ndarray, end_tick: np.ndarray) -> bool:
    """No note starts before the one before it (by onset) has ended."""
    order = np.argsort(start_tick, kind="stable")
    start, end = start_tick[order], end_tick[order]
    return bool(np.all(start[1:] >= end[:-1]))


def _contract_channels(notes: Notes, gm_drums: bool | None) -> tuple[int, int, int, int] | None:
    """The channels of pulse1, pulse2, triangle and noise if the notes follow the output contract, else None."""
    used = set(np.unique(notes.channel).tolist())
    for noise in (3, 9) if gm_drums is None else ((9,) if gm_drums else (3,)):
        if used <= {0, 1, 2, noise} and all(
            _is_monophonic(notes.start_tick[notes.channel == c], notes.end_tick[notes.channel == c]) for c in (0, 1, 2)
        ):
            return (0, 1, 2, noise)
    return None


def _voice_lines(score: Score, gm_drums: bool | None) -> tuple[list[tuple[np.ndarray, ...]], bool]:
    """Per voice (start tick, end tick, pitch, velocity) int64 arrays, and whether the song was reduced."""
    notes = score.notes
    channels = _contract_channels(notes, gm_drums)
    if channels is not None:
        lines = []
        for channel in channels:
            mask = notes.channel == channel
            lines.append(
                tuple(a[mask].astype(np.int64) for a in (notes.start_tick, notes.end_tick, notes.pitch, notes.velocity))
            )
        return lines, False
    # Not the contract: the project's own voice reduction, as for training and `arrange`.
    arrangement = reduce_voices(score, melody_notes(score))
    tpb, spb = score.ticks_per_beat, arrangement.steps_per_beat
    lines = []
    for v in range(4):
        start_step, end_step, pitch = voice_notes(arrangement, v)
        # Steps to ticks exactly as chip_midi.write_arrangement writes them.
        lines.append(
            (
                start_step * tpb // spb,
                end_step * tpb // spb,
                pitch.astype(np.int64),
                np.full(len(pitch), _REDUCED_VELOCITY[v], dtype=np.int64),
            )
        )
    return lines, True


def _score_events(
    score: Score, duty_changes: tuple[np.ndarray, np.ndarray, np.ndarray] | None, rate: int, gm_drums: bool | None
) -> tuple[tuple[np.ndarray, ...], int, bool]:
    """The sorted event arrays of a score, its length in samples, and whether it was reduced."""
    lines, reduced = _voice_lines(score, gm_drums)
    tempo, tpb = score.tempo, score.ticks_per_beat

    def to_sample(ticks: np.ndarray) -> np.ndarray:
        # On the chip model's frames, as a sound driver (and the NSF) plays them.
        frame = np.rint(ticks_to_seconds(ticks, tempo, tpb) * FRAME_RATE_HZ)
        return np.rint(frame / FRAME_RATE_HZ * rate).astype(np.int64)

    cut = max(1, round(TRIANGLE_CUT_SEC * rate))
    parts = []  # (sample, order on the sample, voice, pitch, velocity, duty)
    end_sample = 0
    for v, (start_tick, end_tick, pitch, velocity) in enumerate(lines):
        if not len(start_tick):
            continue
        order = np.argsort(start_tick, kind="stable")
        start = to_sample(start_tick[order])
        end = to_sample(end_tick[order])
        pitch, velocity = pitch[order], np.clip(velocity[order], 1, 127)
        end_sample = max(end_sample, int(end.max()))
        n = len(start)
        rank = _DRUM_RANK[pitch] if v == _k.NOISE else np.zeros(n, np.int64)
        parts.append((start, 2 + rank, np.full(n, v), pitch, velocity, np.full(n, -1)))
        if v != _k.NOISE:  # drums are one-shots: no note-offs
            next_start = np.append(start[1:], np.iinfo(np.int64).max)
            next_pitch = np.append(pitch[1:], -1)
            release = np.maximum(end, start + cut)  # a note lasts a frame at least, as in the model
            if v == _k.TRIANGLE:  # a repeat is stopped a frame early, as by the chip model
                repeat = (release >= next_start) & (next_pitch == pitch) & (next_start - cut > start)
                release = np.where(repeat, next_start - cut, release)
            # A note running into the next is not released: the next note-on strikes the envelope anew.
            keep = release < next_start
            k = int(keep.sum())
            parts.append(
                (release[keep], np.zeros(k, np.int64), np.full(k, v), np.full(k, NOTE_OFF), np.zeros(k), np.full(k, -1))
            )
    if duty_changes is not None and not reduced:
        tick, channel, value = duty_changes
        pulse = (channel == 0) | (channel == 1)
        k = int(pulse.sum())
        parts.append(
            (to_sample(tick[pulse]), np.ones(k, np.int64), channel[pulse].astype(np.int64), np.full(k, NO_NOTE),
             np.zeros(k), value[pulse].astype(np.int64) // 32)
        )  # fmt: skip
    if parts:
        sample, rank, voice, pitch, velocity, duty = (
            np.concatenate(column).astype(np.int64) for column in zip(*parts, strict=True)
        )
    else:
        sample = rank = voice = pitch = velocity = duty = np.zeros(0, np.int64)
    order = np.lexsort((rank, sample))  # stable: offs, then duty changes, then note-ons (drums by priority)
    return (sample[order], voice[order], pitch[order], velocity[order], duty[order]), end_sample, reduced


def render_score(
    score_or_path: PathOrScore, *, sample_rate: int = SAMPLE_RATE, gm_drums: bool | None = None
) -> np.ndarray:
    """Render a song through the chip synth.

    Parameters
    ----------
    score_or_path : Score, str, os.PathLike or bytes
        A ``Score``, or a MIDI file (path or bytes) read with ``read_midi``.
    sample_rate : int, keyword-only
    gm_drums : bool or None, keyword-only
        Where the noise voice of a contract file is: channel 9 (True), channel 3 (False),
        or either, whichever the file uses (None).

    Returns
    -------
    np.ndarray [shape=(N,), dtype=float32]
        Mono audio, about -1 to 1, running ``TAIL_SEC`` past the last release.

    Raises
    ------
    MidiFileError
        An unreadable file (as ``read_midi``), or a song over ``MAX_RENDER_SEC``.
    ParameterError
        A bad ``sample_rate`` or ``gm_drums``.

    Notes
    -----
    A song follows the output contract when its notes use only channels 0, 1, 2 and the
    noise channel (3 or 9) and each of channels 0-2 is monophonic (no note starts before
    the previous one ends). Its channels then play the voices directly: pulse1, pulse2,
    triangle, noise (keys through ``voices.GM_DRUM_MAP`` to the five drum sounds), and
    CC 1 on channels 0 and 1 sets the duty (``value // 32``) from its tick on; pulses start
    at ``DEFAULT_DUTY``. Any other song is reduced first, as for training:
    ``voices.reduce_voices(score, melody.melody_notes(score))`` on the 16th-note grid,
    each voice's notes from ``voices.voice_notes``, steps to ticks as
    ``chip_midi.write_arrangement`` does it, at the velocities it writes. Either way ticks
    become seconds through the tempo map, and every event moves to the nearest frame of
    the chip model (``chip_model.FRAME_RATE_HZ``), as an NSF plays it (the live
    ``ChipSynth`` plays a note at the sample it comes instead). A pulse note is struck anew by the next note-on;
    a triangle note running into the same note is released ``TRIANGLE_CUT_SEC`` (a frame)
    early, as the chip model does it; drums are one-shots.
    """
    rate = _check_sample_rate(sample_rate)
    if gm_drums is not None and not isinstance(gm_drums, bool):
        raise ParameterError(f"gm_drums is {gm_drums!r}; use True (noise on channel 10), False (channel 4) or None")
    if isinstance(score_or_path, Score):
        score, duty_changes = score_or_path, None
    elif isinstance(score_or_path, (str, os.PathLike, bytes, bytearray, memoryview)):
        score = read_midi(score_or_path)
        duty_changes = read_control_changes(score_or_path, controller=1)
    else:
        raise TypeError(f"render_score takes a Score, a path or bytes, not {type(score_or_path).__name__}")
    events, end_sample, reduced = _score_events(score, duty_changes, rate, gm_drums)
    logger.debug("%s: %d events, %s", "reduced" if reduced else "as written", len(events[0]), score.track_names)
    if end_sample > MAX_RENDER_SEC * rate:
        raise MidiFileError(
            f"the song lasts {end_sample / rate:,.0f} s, over the {MAX_RENDER_SEC:.0f} s render cap; cut it shorter "
            "(or raise chiptuner.synth.MAX_RENDER_SEC)"
        )
    out = np.zeros(end_sample + round(TAIL_SEC * rate), dtype=np.float32)
    state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS), dtype=np.float64)
    _k.init_state(state)
    _k.render_events(*events, DRUM_TABLE, state, out, float(rate))
    return out


def render_song(song: ChipSong, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Render a ``ChipSong`` exactly as the chip model plays it (the WAV of ``chiptuner export``).

    Each note starts and ends on the model's frames (``chip_model.chip_notes``), at its
    voice's level (``chip_midi.VOICE_VELOCITY``, whatever velocity a source file had), with the
    duty the model gives it; a pulse note running into the next is struck anew by it, a
    triangle note before a repeat of its period stops a frame early, drums are one-shots.

    Returns
    -------
    np.ndarray [shape=(N,), dtype=float32]
        Mono audio, about -1 to 1, running ``TAIL_SEC`` past the last frame of a note.
    """
    rate = _check_sample_rate(sample_rate)
    notes = chip_notes(song)
    cut = cut_before(notes)

    def to_sample(frame: np.ndarray) -> np.ndarray:
        return np.rint(frame / FRAME_RATE_HZ * rate).astype(np.int64)

    n = len(notes)
    on_velocity = np.array([VOICE_VELOCITY[name] for name in VOICE_NAMES], np.int64)[notes.voice]
    duty = np.where(notes.voice < 2, notes.duty, -1)
    # The note after each one of the same voice (notes come by voice, then onset).
    same_next = np.append(notes.voice[1:] == notes.voice[:-1], False) if n else np.zeros(0, bool)
    next_start = np.where(same_next, np.append(notes.start_frame[1:], 0), np.iinfo(np.int64).max // 2)
    release = notes.end_frame - np.append(cut[1:], False).astype(np.int64) if n else notes.end_frame
    off = (notes.voice != _k.NOISE) & (release < next_start)
    sample = np.concatenate((to_sample(notes.start_frame), to_sample(release[off])))
    order_on_sample = np.concatenate((np.full(n, 2), np.zeros(int(off.sum()), np.int64)))  # offs first
    voice = np.concatenate((notes.voice, notes.voice[off]))
    pitch = np.concatenate((notes.key, np.full(int(off.sum()), NOTE_OFF)))
    velocity = np.concatenate((on_velocity, np.zeros(int(off.sum()), np.int64)))
    event_duty = np.concatenate((duty, np.full(int(off.sum()), -1)))
    order = np.lexsort((order_on_sample, sample))
    last = int(np.max(np.where(notes.voice == _k.NOISE, notes.start_frame, notes.end_frame))) if n else 0
    out = np.zeros(int(to_sample(np.array(last))) + round(TAIL_SEC * rate), dtype=np.float32)
    state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS), dtype=np.float64)
    _k.init_state(state)
    _k.render_events(
        sample[order], voice[order], pitch[order], velocity[order], event_duty[order], DRUM_TABLE, state, out,
        float(rate),
    )  # fmt: skip
    return out


def write_wav(path: str | os.PathLike, audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono audio as a 16-bit PCM WAV file.

    Parameters
    ----------
    path : str or os.PathLike
    audio : np.ndarray [shape=(N,), dtype=float]
        Samples in -1 to 1; beyond is clipped, NaN written as 0.
    sample_rate : int, keyword-only

    Raises
    ------
    ParameterError
        Audio that is not 1-D floats, or a bad ``sample_rate``.
    OSError
        The file cannot be written (as the operating system says).
    """
    rate = _check_sample_rate(sample_rate)
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype.kind != "f":
        raise ParameterError(
            f"audio has shape {audio.shape} and dtype {audio.dtype}; pass mono float samples of shape (N,)"
        )
    pcm = np.rint(np.clip(np.nan_to_num(audio, nan=0.0), -1.0, 1.0) * 32767.0).astype("<i2")
    # The file is opened here, not by wave.open, whose half-made writer complains when the open fails.
    with open(path, "wb") as file, wave.open(file, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def warmup() -> None:
    """Compile (or load from numba's cache) every synth kernel on tiny arrays, before any port opens."""
    synth = ChipSynth(block_size=16)
    for voice, pitch in enumerate((72, 60, 40, 38)):
        synth.note_on(voice, pitch, 100)
    synth.set_duty(0, 1)
    synth.render(16)
    synth.note_off(0)
    synth.render(8)
    synth.reset()
    render_events(np.array([0, 8]), np.array([0, 0]), np.array([60, NOTE_OFF]), n_frames=16)
