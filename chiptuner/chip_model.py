"""The chip model: what the NES's 2A03 is told, frame by frame, to play an arrangement.

Every chip output reads this one model (the NSF driver's register writes, the FamiTracker
rows, the synth's pitch and envelopes), so a note sounds the same everywhere.

- Time: frames at ``FRAME_RATE_HZ``, the NTSC rate (1789773 / 29780.5 = 60.0988 Hz) that an
  NSF header's play speed of ``NSF_PLAY_SPEED_US`` (16639 us) stands for in players. A step
  (16th note) starts on the frame nearest its time from the tempo map, so 3 minutes do not
  drift: frame ``f`` is at ``f / FRAME_RATE_HZ`` seconds everywhere.
- Pitch: pulse timer period ``t = round(CPU_HZ / (16 f) - 1)`` (f = CPU_HZ / (16 (t + 1))),
  triangle ``t = round(CPU_HZ / (32 f) - 1)``, from the note's equal-tempered frequency.
  A note the chip cannot play (a pulse period under 8 or over $7FF, a triangle period under
  2 or over $7FF) is folded by whole octaves into range: up while the period is too long,
  down while it is too short. The pitch heard is then the period's, not the MIDI key's.
- Volume: a per-note envelope of 4-bit levels, one per frame from the onset (``ENVELOPES``):
  the pulses strike at their voice's level (``chip_midi.VOICE_VELOCITY`` as 4 bits) and fall
  one level every ``PULSE_DECAY_FRAMES`` frames by ``PULSE_DECAY_LEVELS`` levels, then
  hold; a note ends with volume 0. The triangle has no volume: its linear counter is
  reloaded with 127 while a note sounds ($4008 = $FF) and with 0 to stop it ($80); a
  note followed at once by the same period is stopped for its last frame so the two are
  heard. The drums are one-shots: a hit falls from its class's level to 0 in about the
  class's decay time (``DRUM_SOUNDS``), whatever the note's length.
- Registers: pulses in constant-volume mode with the length counter halted
  (``$4000 = duty << 6 | $30 | volume``), the sweep disabled the way games do it
  (``$4001 = $08``: negate on, so the sweep unit never mutes a low note), the timer in
  ``$4002``/``$4003`` (length index 1); the same for pulse2 at $4004-$4007; the triangle
  at $4008/$400A/$400B; the noise at $400C (``$30 | volume``), $400E (``mode << 7 |
  period index``), $400F; $4015 = $0F enables the four. A register is written on the
  first frame and then only when its value changes, $4015 first (a length counter loads
  only while its channel is enabled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from chiptuner._kernels import chip_model as _k
from chiptuner.chip_midi import DUTY_CC, VOICE_VELOCITY, voice_channels
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.midi_io import read_control_changes, read_midi
from chiptuner.timebase import check_swing, swung_ticks, swung_ticks_to_steps, ticks_to_seconds
from chiptuner.types import DEFAULT_US_PER_BEAT, VOICE_NAMES, Arrangement, TempoMap
from chiptuner.voices import DRUM_KEYS, DRUM_NAMES, GM_DRUM_MAP, voice_notes

__all__ = [
    "CPU_HZ",
    "CPU_CYCLES_PER_FRAME",
    "FRAME_RATE_HZ",
    "NSF_PLAY_SPEED_US",
    "NOISE_PERIODS",
    "DRUM_SOUNDS",
    "DEFAULT_DRUM_SOUND",
    "DEFAULT_DUTY",
    "ENVELOPES",
    "ENVELOPE_LENGTH",
    "REGISTER_ORDER",
    "ChipSong",
    "ChipNotes",
    "ChipFrames",
    "song_from_arrangement",
    "read_song",
    "chip_notes",
    "cut_before",
    "play",
    "frame_writes",
    "period_hz",
    "pitch_period",
    "velocity_volume",
]

#: The NTSC 2A03's CPU clock (Hz), cycles per frame, frames per second: the one rate every chip output uses.
CPU_HZ = _k.CPU_HZ
CPU_CYCLES_PER_FRAME = _k.CPU_CYCLES_PER_FRAME
FRAME_RATE_HZ = _k.FRAME_RATE_HZ
#: The NSF header's NTSC play speed, microseconds: players take it for the rate above.
NSF_PLAY_SPEED_US = 16639
#: Noise timer periods (CPU cycles) of the period indices 0-15, NTSC.
NOISE_PERIODS = tuple(_k.NOISE_PERIODS.tolist())
#: Timer period ranges the chip plays: (shortest, longest), inclusive.
PULSE_PERIOD_RANGE = (_k.PULSE_PERIOD_MIN, _k.PULSE_PERIOD_MAX)
TRIANGLE_PERIOD_RANGE = (_k.TRIANGLE_PERIOD_MIN, _k.TRIANGLE_PERIOD_MAX)
#: Duty index (12.5, 25, 50, 75 %) of pulse1 and pulse2 when the song sets none: as ``chip_midi.DUTY_CC``.
DEFAULT_DUTY = (DUTY_CC["pulse1"] // 32, DUTY_CC["pulse2"] // 32)
#: The five drum classes on the noise channel: (period index 0-15, short mode, seconds to
#: fall by 60 dB, level gain). Low indices clock the shift register fast (bright, white);
#: high ones slowly (a dull rumble).
DRUM_SOUNDS = {
    "kick": (13, False, 0.15, 1.0),
    "snare": (6, False, 0.25, 0.9),
    "closed_hat": (1, False, 0.06, 0.6),
    "open_hat": (2, False, 0.45, 0.6),
    "crash": (3, False, 1.0, 0.7),
}
#: A key that ``voices.GM_DRUM_MAP`` does not know: a mid noise, snare-like.
DEFAULT_DRUM_SOUND = (5, False, 0.2, 0.8)
#: Pulse envelope: down ``PULSE_DECAY_LEVELS`` levels from the strike, one every ``PULSE_DECAY_FRAMES``.
PULSE_DECAY_LEVELS = _k.PULSE_DECAY_LEVELS
PULSE_DECAY_FRAMES = _k.PULSE_DECAY_FRAMES
#: Registers (offsets from $4000) in the order a frame writes them; $4009 and $400D do nothing.
REGISTER_ORDER = (0x15, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0A, 0x0B, 0x0C, 0x0E, 0x0F)
N_REGISTERS = 0x18
SWEEP_OFF = 0x08
LENGTH_INDEX_1 = 0x08  # bits 7-3 of $4003/$4007/$400B/$400F: length index 1 (254 half-frames), halted anyway
CONSTANT_VOLUME_HALT = 0x30
TRIANGLE_ON = 0xFF  # control (halt) + linear counter reload 127
TRIANGLE_OFF = 0x80  # control + reload 0: the counter empties on the next quarter frame
ENABLE_FOUR = 0x0F


def velocity_volume(velocity: int) -> int:
    """The 4-bit level (1-15) of a MIDI velocity 1-127, as the synth maps it."""
    return min(15, max(1, (int(velocity) * 15 + 63) // 127))


# The tables are made at import from the kernels' own Python code (``py_func``): the very
# functions the synth compiles, without compiling them here. With NUMBA_DISABLE_JIT the
# kernels are plain functions already.
_pulse_level = getattr(_k.pulse_level, "py_func", _k.pulse_level)
_drum_level = getattr(_k.drum_level, "py_func", _k.drum_level)


def _pulse_envelope(peak: int) -> list[int]:
    # Up to the first frame of the held level.
    return [_pulse_level(peak, f) for f in range(PULSE_DECAY_LEVELS * PULSE_DECAY_FRAMES + 1)]


def _drum_envelope(peak: int, decay_sec: float) -> list[int]:
    # Exponential fall to -60 dB over decay_sec, on the 4-bit grid, up to its first 0.
    levels = [_drum_level(peak, decay_sec, 0)]
    while levels[-1] > 0:
        levels.append(_drum_level(peak, decay_sec, len(levels)))
    return levels


def _envelopes() -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    rows: dict[str, list[int]] = {
        "pulse1": _pulse_envelope(velocity_volume(VOICE_VELOCITY["pulse1"])),
        "pulse2": _pulse_envelope(velocity_volume(VOICE_VELOCITY["pulse2"])),
        "triangle": [1],
    }
    noise_peak = velocity_volume(VOICE_VELOCITY["noise"])
    for name, (_, _, decay_sec, gain) in (*DRUM_SOUNDS.items(), ("other_drum", DEFAULT_DRUM_SOUND)):
        peak = min(15, max(1, int(np.floor(noise_peak * gain + 0.5))))
        rows[name] = _drum_envelope(peak, decay_sec)
    width = max(len(r) for r in rows.values())
    table = np.zeros((len(rows), width), dtype=np.int64)
    length = np.zeros(len(rows), dtype=np.int64)
    for i, levels in enumerate(rows.values()):
        table[i, : len(levels)] = levels
        length[i] = len(levels)
    table.setflags(write=False)
    length.setflags(write=False)
    return table, length, {name: i for i, name in enumerate(rows)}


#: int64 (R, L): 4-bit volume per frame from the onset, per envelope row; ``ENVELOPE_ROWS`` names the rows
#: (pulse1, pulse2, triangle, the five drum classes, other_drum).
ENVELOPES, ENVELOPE_LENGTH, ENVELOPE_ROWS = _envelopes()


def _drum_row_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per drum key 0-127: envelope row, noise period index, short mode."""
    by_key = {int(key): name for key, name in zip(DRUM_KEYS.tolist(), DRUM_NAMES, strict=True)}
    row = np.empty(128, np.int64)
    index = np.empty(128, np.int64)
    short = np.empty(128, np.int64)
    for key in range(128):
        name = by_key.get(int(GM_DRUM_MAP[key]))
        sound = DRUM_SOUNDS[name] if name else DEFAULT_DRUM_SOUND
        row[key] = ENVELOPE_ROWS[name or "other_drum"]
        index[key], short[key] = sound[0], int(sound[1])
    for a in (row, index, short):
        a.setflags(write=False)
    return row, index, short


#: Per General MIDI drum key: the envelope row, noise period index and short mode of its class.
DRUM_ENVELOPE_ROW, DRUM_PERIOD_INDEX, DRUM_SHORT_MODE = _drum_row_table()


def pitch_period(voice: int, pitch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timer periods of MIDI keys on a pitched voice, folded by octaves into what the chip plays.

    Parameters
    ----------
    voice : int
        0 or 1 (a pulse) or 2 (the triangle).
    pitch : np.ndarray [shape=(N,), dtype=int]

    Returns
    -------
    period : np.ndarray [shape=(N,), dtype=int64]
    folded_pitch : np.ndarray [shape=(N,), dtype=int64]
        The key after folding (the key itself where it fits).
    """
    key = np.ascontiguousarray(pitch, dtype=np.int64).reshape(-1)
    period, folded = np.empty_like(key), np.empty_like(key)
    _k.timer_periods(int(voice), key, period, folded)
    return period, folded


def period_hz(voice: int, period: np.ndarray) -> np.ndarray:
    """Frequency the chip plays for timer periods of a pitched voice (0, 1 pulse; 2 triangle)."""
    return CPU_HZ / ((16.0 if voice < 2 else 32.0) * (np.asarray(period, dtype=np.float64) + 1.0))


@dataclass(frozen=True, eq=False)
class ChipSong:
    """An arrangement with the times of its steps and the pulses' duty.

    Attributes
    ----------
    arrangement : Arrangement
        The four voices on the step grid (T steps).
    step_sec : np.ndarray [shape=(T + 1,), dtype=float64]
        Start of each step in seconds, then the end of the last.
    duty : np.ndarray [shape=(T, 2), dtype=int64]
        Duty index (0-3: 12.5, 25, 50, 75 %) of pulse1 and pulse2 in force at each step.
    title : str
    """

    arrangement: Arrangement
    step_sec: np.ndarray
    duty: np.ndarray
    title: str = ""

    def __post_init__(self) -> None:
        n = len(self.arrangement)
        if self.step_sec.shape != (n + 1,) or self.duty.shape != (n, 2):
            raise ParameterError(
                f"step_sec {self.step_sec.shape} and duty {self.duty.shape} do not fit {n} steps; "
                f"give ({n + 1},) and ({n}, 2)"
            )
        if n and np.any(np.diff(self.step_sec) <= 0):
            raise ParameterError("step_sec must rise step by step; build it from a tempo map with positive tempos")
        if np.any((self.duty < 0) | (self.duty > 3)):
            raise ParameterError("duty indices must be 0-3 (12.5, 25, 50, 75 %: a CC 1 value // 32)")

    def steps_per_minute(self) -> np.ndarray:
        """float64 (T,): the tempo at each step in steps per minute."""
        return 60.0 / np.diff(self.step_sec)


def song_from_arrangement(
    arrangement: Arrangement,
    *,
    tempo: TempoMap | None = None,
    ticks_per_beat: int = 480,
    duty: np.ndarray | None = None,
    title: str = "",
) -> ChipSong:
    """A ``ChipSong`` of an arrangement, its steps timed by a tempo map (120 BPM when None).

    Steps become ticks exactly as ``chip_midi.write_arrangement`` writes them. ``duty``
    (T, 2) defaults to ``DEFAULT_DUTY`` throughout, as the MIDI output's CC 1 says.
    """
    if tempo is None:
        tempo = TempoMap(np.zeros(1, np.int64), np.array([DEFAULT_US_PER_BEAT], np.int64))
    spb = arrangement.steps_per_beat
    ticks = (np.arange(len(arrangement) + 1, dtype=np.int64) * ticks_per_beat) // spb
    step_sec = ticks_to_seconds(ticks, tempo, ticks_per_beat)
    if duty is None:
        duty = np.tile(np.array(DEFAULT_DUTY, np.int64), (len(arrangement), 1))
    return ChipSong(arrangement, step_sec, np.asarray(duty, np.int64), title)


def read_song(path: str | os.PathLike, *, swing: float = 0.0) -> ChipSong:
    """Read a four-voice arrangement file (the output contract) as a ``ChipSong``.

    Notes are put on the 16th-note grid (``timebase.ticks_to_steps``, every note at least a step); on each of pulse1,
    pulse2 and triangle a later onset cuts the note before it. CC 1 on channels 0 and 1 sets
    the duty (``value // 32``) from its tick on. A file written with ``swing``
    (``chiptuner arrange --swing``) is read back onto its straight steps
    (``timebase.swung_ticks_to_steps``) and each off-beat step starts ``swing`` of a step
    late, so the chip plays the swing (to the nearest frame).

    Raises
    ------
    MidiFileError
        An unreadable file, or one with notes on other channels than the contract's
        (0-2, and 3 or 9 for the noise voice): it is not an arrangement.
    ParameterError
        ``swing`` outside 0 to ``timebase.MAX_SWING``.
    """
    swing = check_swing(swing)
    score = read_midi(path)
    notes = score.notes
    used = set(np.unique(notes.channel).tolist())
    noise_channel = 9 if 9 in used else 3
    channels = voice_channels(gm_drums=noise_channel == 9)
    extra = used - set(channels)
    if extra or not len(notes):
        what = f"notes on channels {sorted(c + 1 for c in extra)}" if extra else "no notes"
        raise MidiFileError(
            f"{os.fspath(path)} has {what}; a four-voice arrangement uses channels 1-4 (or 10 for drums): "
            "make one with `chiptuner arrange`"
        )
    tpb = score.ticks_per_beat
    start_step = swung_ticks_to_steps(notes.start_tick, tpb, swing)
    end_step = np.maximum(swung_ticks_to_steps(notes.end_tick, tpb, swing), start_step + 1)
    n_steps = int(end_step.max())
    pitch = np.full((n_steps, 4), -1, np.int16)
    onset = np.zeros((n_steps, 4), bool)
    for v, channel in enumerate(channels):
        mine = np.flatnonzero(notes.channel == channel)
        mine = mine[np.argsort(start_step[mine], kind="stable")]
        for i in mine.tolist():
            s, e = int(start_step[i]), int(end_step[i])
            pitch[s:e, v] = notes.pitch[i]
            onset[s, v] = True
            onset[s + 1 : e, v] = False
    duty = np.tile(np.array(DEFAULT_DUTY, np.int64), (n_steps, 1))
    cc_tick, cc_channel, cc_value = read_control_changes(path, controller=1)
    # Each step's start tick, then the end's: where the duty in force is read, and the timing.
    step_tick = swung_ticks(np.arange(n_steps + 1, dtype=np.int64), tpb, swing)
    for v in (0, 1):
        mine = cc_channel == channels[v]
        if mine.any():
            order = np.argsort(cc_tick[mine], kind="stable")
            ticks, values = cc_tick[mine][order], cc_value[mine][order]
            last = np.searchsorted(ticks, step_tick[:-1], side="right") - 1
            duty[:, v] = np.where(last >= 0, values[np.maximum(last, 0)] // 32, DEFAULT_DUTY[v])
    arrangement = Arrangement(pitch, onset)
    title = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return ChipSong(arrangement, ticks_to_seconds(step_tick, score.tempo, tpb), duty, title)


@dataclass(frozen=True, eq=False)
class ChipNotes:
    """The notes as the chip plays them, by voice then onset.

    Attributes
    ----------
    voice : np.ndarray [shape=(N,), dtype=int64]
        0-3 (``VOICE_NAMES``).
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
    start_frame, end_frame : np.ndarray [shape=(N,), dtype=int64]
        ``end_frame > start_frame``.
    key : np.ndarray [shape=(N,), dtype=int64]
        The arrangement's MIDI key (a drum key on the noise voice).
    chip_key : np.ndarray [shape=(N,), dtype=int64]
        The key after folding into the chip's range (the drum key for noise).
    period : np.ndarray [shape=(N,), dtype=int64]
        Timer period (pulses, triangle) or noise period index 0-15.
    duty : np.ndarray [shape=(N,), dtype=int64]
        Duty index on the pulses; the short mode (0/1) on the noise; 0 on the triangle.
    envelope_row : np.ndarray [shape=(N,), dtype=int64]
        Row of ``ENVELOPES``.
    """

    voice: np.ndarray
    start_step: np.ndarray
    end_step: np.ndarray
    start_frame: np.ndarray
    end_frame: np.ndarray
    key: np.ndarray
    chip_key: np.ndarray
    period: np.ndarray
    duty: np.ndarray
    envelope_row: np.ndarray

    def __len__(self) -> int:
        return len(self.voice)

    def hz(self) -> np.ndarray:
        """float64 (N,): the frequency the chip plays for each pitched note (NaN on the noise)."""
        out = np.full(len(self), np.nan)
        for v in (0, 1, 2):
            mine = self.voice == v
            out[mine] = period_hz(v, self.period[mine])
        return out


def cut_before(notes: ChipNotes) -> np.ndarray:
    """Which notes (bool (N,)) follow a triangle note the model stops for its last frame: a repeat of its period.

    The same rule as ``_kernels.chip_model.voice_frames``: the note before runs up to this
    one's onset frame (or past it, and is cut there), has the same period and lasts at least
    two frames.
    """
    out = np.zeros(len(notes), bool)
    tri = np.flatnonzero(notes.voice == 2)
    before, after = tri[:-1], tri[1:]
    end = np.minimum(notes.end_frame[before], notes.start_frame[after])
    out[after] = (
        (end == notes.start_frame[after])
        & (notes.period[before] == notes.period[after])
        & (end - notes.start_frame[before] >= 2)
    )
    return out


def step_frames(song: ChipSong) -> np.ndarray:
    """int64 (T + 1,): the frame each step starts on (the nearest), then the end's."""
    return np.rint(song.step_sec * FRAME_RATE_HZ).astype(np.int64)


def chip_notes(song: ChipSong) -> ChipNotes:
    """The song's notes with their frames, periods, duties and envelopes."""
    frames = step_frames(song)
    columns: list[list[np.ndarray]] = [[] for _ in range(10)]
    for v in range(4):
        start_step, end_step, key = voice_notes(song.arrangement, v)
        key = key.astype(np.int64)
        if v < 3:
            period, chip_key = pitch_period(v, key)
            duty = song.duty[start_step, v] if v < 2 else np.zeros(len(key), np.int64)
            row = np.full(len(key), ENVELOPE_ROWS[VOICE_NAMES[v]], np.int64)
        else:
            chip_key = key.copy()
            period = DRUM_PERIOD_INDEX[key]
            duty = DRUM_SHORT_MODE[key]
            row = DRUM_ENVELOPE_ROW[key]
        start_frame = frames[start_step]
        end_frame = np.maximum(frames[end_step], start_frame + 1)
        for column, values in zip(
            columns,
            (np.full(len(key), v), start_step, end_step, start_frame, end_frame, key, chip_key, period, duty, row),
            strict=True,
        ):
            column.append(np.asarray(values, np.int64))
    return ChipNotes(*(np.concatenate(c) for c in columns))


@dataclass(frozen=True, eq=False)
class ChipFrames:
    """What the chip is told, frame by frame.

    Attributes
    ----------
    registers : np.ndarray [shape=(F, 24), dtype=uint8]
        The value of each register $4000-$4017 on each frame (those never written stay 0).
    written : np.ndarray [shape=(F, 24), dtype=bool]
        Registers written on each frame: all of ``REGISTER_ORDER`` on frame 0, then those
        whose value changed.
    period, volume : np.ndarray [shape=(F, 4), dtype=int64]
        Per voice: timer period (noise: period index) and 4-bit volume (triangle: 0/1).
    duty : np.ndarray [shape=(F, 4), dtype=int64]
    notes : ChipNotes
    """

    registers: np.ndarray
    written: np.ndarray
    period: np.ndarray
    volume: np.ndarray
    duty: np.ndarray
    notes: ChipNotes

    def __len__(self) -> int:
        return len(self.registers)


def play(song: ChipSong) -> ChipFrames:
    """Run the chip model over a song: per-frame registers and what they mean.

    The song lasts to its last frame of sound (a drum's ring included) plus one silent frame.
    """
    notes = chip_notes(song)
    one_shot_end = notes.start_frame + ENVELOPE_LENGTH[notes.envelope_row]
    last = np.where(notes.voice == 3, one_shot_end, notes.end_frame)
    n_frames = int(last.max()) + 1 if len(notes) else 1
    period = np.zeros((n_frames, 4), np.int64)
    volume = np.zeros((n_frames, 4), np.int64)
    duty = np.zeros((n_frames, 4), np.int64)
    for v in range(4):
        mine = notes.voice == v
        p, d, vol = np.empty(n_frames, np.int64), np.empty(n_frames, np.int64), np.empty(n_frames, np.int64)
        _k.voice_frames(
            notes.start_frame[mine], notes.end_frame[mine], notes.period[mine], notes.duty[mine],
            notes.envelope_row[mine], ENVELOPES, ENVELOPE_LENGTH, v == 3, v == 2, p, d, vol,
        )  # fmt: skip
        period[:, v], duty[:, v], volume[:, v] = p, d, vol
    registers = np.zeros((n_frames, N_REGISTERS), np.int64)
    for v, base in ((0, 0x00), (1, 0x04)):
        registers[:, base] = duty[:, v] << 6 | CONSTANT_VOLUME_HALT | volume[:, v]
        registers[:, base + 1] = SWEEP_OFF
        registers[:, base + 2] = period[:, v] & 0xFF
        registers[:, base + 3] = LENGTH_INDEX_1 | (period[:, v] >> 8)
    registers[:, 0x08] = np.where(volume[:, 2] > 0, TRIANGLE_ON, TRIANGLE_OFF)
    registers[:, 0x0A] = period[:, 2] & 0xFF
    registers[:, 0x0B] = LENGTH_INDEX_1 | (period[:, 2] >> 8)
    registers[:, 0x0C] = CONSTANT_VOLUME_HALT | volume[:, 3]
    registers[:, 0x0E] = duty[:, 3] << 7 | period[:, 3]
    registers[:, 0x0F] = LENGTH_INDEX_1
    registers[:, 0x15] = ENABLE_FOUR
    written = np.zeros((n_frames, N_REGISTERS), bool)
    used = list(REGISTER_ORDER)
    written[0, used] = True
    written[1:, used] = registers[1:, used] != registers[:-1, used]
    return ChipFrames(registers.astype(np.uint8), written, period, volume, duty, notes)


def frame_writes(frames: ChipFrames) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every register write, in the order the chip gets them.

    Returns
    -------
    frame, register, value : np.ndarray [shape=(W,), dtype=int64]
        By frame, then in ``REGISTER_ORDER``; ``register`` is the offset from $4000.
    """
    order = np.array(REGISTER_ORDER, np.int64)
    mask = frames.written[:, order]
    frame, column = np.nonzero(mask)  # row-major: by frame, then by position in REGISTER_ORDER
    register = order[column]
    return frame.astype(np.int64), register, frames.registers[frame, register].astype(np.int64)
