"""The realtime engine: the player's MIDI in, one model step per 16th note, four chip voices out.

One engine serves every front end: the terminal live mode, the demo (at tempo or as fast
as it can), the browser and the tests. Everything that touches the world is injected:

- ``clock()`` returns seconds (monotonic);
- ``inbox.get(timeout_sec)`` waits at most that long for the next raw MIDI message (a
  tuple of ints) and returns it, or None: it is the engine's only way to sleep;
- each output has ``send(message)``.

So a test drives the loop on virtual time (``Timeline``) exactly as a port drives it on
the wall clock.

Timing design
-------------
The player hears their own note at once: pulse1 is the lead, and a note-on sounds it
immediately (in keys mode the played pitch folded into pulse1's range; in buttons mode
the pitch the model would choose now, ``Arranger.preview_lead``). pulse2, triangle and
noise are decided once per step, on the step's deadline. A note that starts up to
``grace_sec`` after a deadline counts for the step just played, not the next one: the
step is replayed from the state saved before it (same random draws) with the note as
its onset, and the voices whose choice changed are corrected at once. A note later than
that counts for the next step. So the band is on the grid, a player up to ``grace_sec``
late is heard on the beat they meant, and nobody waits for the lead.

The lead is the player's: pulse1 sounds while the player holds the note (last-note
priority) and stops on release; the model's own pulse1 token only feeds its next step.

Swing (``swing``, 0-0.5 of a step) moves the deadline of every off-beat 16th (an odd
position in the bar) that much of a step later (``timebase.swung_step``); the tempo
sources keep the straight grid. The input grid and the grace window follow the swung
deadlines, so a player who swings lands on the step they meant. MIDI clock out
(``clock_out``) is straight, as MIDI clock is: the engine tells it the straight grid
after every step, and the port writes the pulses at their own frame times.

Nothing in the step path allocates arrays, builds message objects or logs: messages are
tuples built once at start-up, recordings go into preallocated arrays, and figures are
reported when the run ends (``EngineReport``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from chiptuner.chip_midi import DUTY_CC, VOICE_PROGRAMS, VOICE_VELOCITY, voice_channels
from chiptuner.errors import ParameterError
from chiptuner.model.arranger import Arranger, energy_index, parse_voices, style_index
from chiptuner.rhythm import estimate_tempo
from chiptuner.scales import Scale, parse_scale
from chiptuner.timebase import check_swing
from chiptuner.types import VOICE_NAMES

__all__ = [
    "Engine",
    "EngineReport",
    "FixedTempo",
    "FollowTempo",
    "MidiClockTempo",
    "Recorder",
    "Timeline",
    "ButtonMap",
    "STEPS_PER_BEAT",
    "METRONOME_CHANNEL",
    "TRACK_INPUT",
    "TRACK_METRONOME",
]

STEPS_PER_BEAT = 4
STEPS_PER_BAR = 16
#: Metronome clicks go to General MIDI percussion: side stick, and a high wood block on the bar.
METRONOME_CHANNEL = 9
METRONOME_KEYS = (37, 76)
#: Recorder tracks: the player's input, the four voices (1-4), the metronome.
TRACK_INPUT = 0
TRACK_METRONOME = 5
#: MIDI clock: 24 pulses per quarter note, so a 16th-note step every 6 pulses.
CLOCK_PULSES_PER_STEP = 6
#: A step that starts later than this after its deadline counts as a deadline miss.
MISS_TOLERANCE_SEC = 0.002
#: How long the loop waits for input when no deadline is pending (MIDI clock stopped).
IDLE_WAIT_SEC = 0.05

_NOTE_OFF, _NOTE_ON, _CONTROL, _PROGRAM = 0x80, 0x90, 0xB0, 0xC0
_CLOCK, _START, _CONTINUE, _STOP, _SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}


class Inbox(Protocol):
    def get(self, timeout_sec: float) -> tuple[int, ...] | None: ...


class Output(Protocol):
    def send(self, message: tuple[int, ...]) -> None: ...


class ClockOut(Protocol):
    """Where the engine leads other gear by MIDI clock (``jack_midi.JackOutput``).

    ``clock_start`` starts the pulses at ``grid_sec`` and sends song position 0 and start
    just before the pulse at ``start_sec`` (the band's first step, after the count-in);
    ``clock_schedule`` says where the straight grid goes on (the step due at ``grid_sec``,
    steps of ``step_sec``: a pulse every ``step_sec / 6``); ``clock_stop`` sends stop.
    Times are the engine's clock (seconds, ``time.perf_counter``). ``lead_sec``: how far
    ahead of its time a pulse must be known to leave on its frame (the first step waits
    that long).
    """

    lead_sec: float

    def clock_start(self, grid_sec: float, step_sec: float, start_sec: float) -> None: ...

    def clock_schedule(self, grid_sec: float, step_sec: float) -> None: ...

    def clock_stop(self) -> None: ...


# ----------------------------------------------------------------------------- virtual time


class Timeline:
    """Virtual time with scheduled input: a clock and an inbox in one.

    ``get(timeout_sec)`` jumps to the next scheduled message when it is due within the
    timeout (and returns it), else jumps ``timeout_sec`` ahead and returns None. Tests drive
    the engine with it deterministically, and ``--demo --fast`` plays as fast as it can.

    Parameters
    ----------
    messages : sequence of (time_sec, message)
        Raw MIDI messages (tuples of ints) and when they arrive, in any order.
    """

    def __init__(self, messages: Sequence[tuple[float, tuple[int, ...]]] = (), *, start_sec: float = 0.0) -> None:
        ordered = sorted(messages, key=lambda item: item[0])
        self._times = [float(t) for t, _ in ordered]
        self._messages = [tuple(m) for _, m in ordered]
        self._next = 0
        self.now_sec = float(start_sec)

    def __call__(self) -> float:
        """The current virtual time, in seconds."""
        return self.now_sec

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message if due within ``timeout_sec`` (time jumps to it), else None (time jumps ahead)."""
        if self._next < len(self._times) and self._times[self._next] <= self.now_sec + max(timeout_sec, 0.0):
            self.now_sec = max(self.now_sec, self._times[self._next])
            self._next += 1
            return self._messages[self._next - 1]
        self.now_sec += max(timeout_sec, 0.0)
        return None

    def push(self, time_sec: float, message: tuple[int, ...]) -> None:
        """Schedule one more message (at or after the current time)."""
        index = len(self._times)
        while index > self._next and self._times[index - 1] > time_sec:
            index -= 1
        self._times.insert(index, float(time_sec))
        self._messages.insert(index, tuple(message))


class Replay:
    """Scheduled input on the wall clock: the demo at tempo.

    ``get`` sleeps (``sleep``, injected) until the next message is due or the timeout
    passes, whichever comes first.
    """

    def __init__(
        self,
        messages: Sequence[tuple[float, tuple[int, ...]]],
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        ordered = sorted(messages, key=lambda item: item[0])
        self._clock, self._sleep = clock, sleep
        self._start = clock()
        self._times = [self._start + float(t) for t, _ in ordered]
        self._messages = [tuple(m) for _, m in ordered]
        self._next = 0

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        until = self._clock() + max(timeout_sec, 0.0)
        if self._next < len(self._times) and self._times[self._next] <= until:
            wait = self._times[self._next] - self._clock()
            if wait > 0:
                self._sleep(wait)
            self._next += 1
            return self._messages[self._next - 1]
        wait = until - self._clock()
        if wait > 0:
            self._sleep(wait)
        return None


# ----------------------------------------------------------------------------- tempo sources


class FixedTempo:
    """Steps at a fixed tempo from ``start_sec``: step k is due at ``start_sec + k * step_sec``."""

    def __init__(self, bpm: float) -> None:
        self.bpm = _check_bpm(bpm)
        self.step_sec = 60.0 / self.bpm / STEPS_PER_BEAT
        self.next_step_sec: float | None = None
        self.position: int | None = None  # set only by sources that know the bar (MIDI clock)
        self.stopped_now = False  # set by a MIDI clock stop; the engine silences the band and clears it
        self.swing = 0.0  # of a step, on the off-beats; the engine sets it (``Engine(swing=...)``)

    def start(self, now_sec: float) -> None:
        """The first step is due now."""
        self.next_step_sec = now_sec

    def stepped(self, due_sec: float, now_sec: float) -> int:
        """Advance past the step due at ``due_sec``; returns how many whole steps were skipped."""
        following = due_sec + self.step_sec
        skipped = 0
        if now_sec - following > self.step_sec:  # more than a step behind: drop steps, keep the grid
            skipped = int((now_sec - following) // self.step_sec)
            following += skipped * self.step_sec
        self.next_step_sec = following
        return skipped

    def message(self, status: int, data: tuple[int, ...], now_sec: float) -> bool:
        """Take a clock message; False where the source has no use for it."""
        return False

    def onset(self, now_sec: float) -> None:
        """Hear one of the player's onsets (``FollowTempo`` uses them)."""


class FollowTempo(FixedTempo):
    """Follows the player's tempo: ``--bpm`` through the count-in, then their own onsets.

    Every beat after the count-in, the tempo of the onsets of the last ``window_sec`` is
    estimated with the beat autocorrelation of ``rhythm.estimate_tempo``, restricted to
    half an octave around the current tempo (so it never jumps to the double or half), and
    the tempo moves a quarter of the way there (in log tempo). Then a phase-locked loop on
    the median offset of the last beat's onsets from the grid pulls the grid half-way to
    the player and nudges the step length (the autocorrelation's 10 ms bins leave the tempo
    a percent or two off, which alone would leave the grid lagging). Runs once per beat,
    not per step.
    """

    ADAPT = 0.25
    PHASE_GAIN = 0.5
    PERIOD_GAIN = 0.25
    MIN_ONSETS = 6

    def __init__(self, bpm: float, *, count_in_steps: int = STEPS_PER_BAR, window_sec: float = 8.0) -> None:
        super().__init__(bpm)
        self.count_in_steps = int(count_in_steps)
        self.window_sec = float(window_sec)
        self._onsets = np.zeros(256, dtype=np.float64)  # ring of recent onset times
        self._n_onsets = 0
        self._steps = 0
        self._offsets = np.zeros(64, dtype=np.float64)
        self._n_offsets = 0
        self._last_due = math.nan
        self._last_odd = False  # the step due at _last_due is an off-beat 16th

    def onset(self, now_sec: float) -> None:
        """Remember an onset for the tempo, and its offset from the grid for the phase."""
        self._onsets[self._n_onsets % len(self._onsets)] = now_sec
        self._n_onsets += 1
        if math.isfinite(self._last_due) and self._n_offsets < len(self._offsets):
            # Signed offset from the nearest step boundary (late > 0), the off-beats swung:
            # a player who swings as the band does is on the grid.
            if self.swing == 0.0:
                offset = (now_sec - self._last_due) % self.step_sec
                if offset > self.step_sec / 2:
                    offset -= self.step_sec
            else:
                delay = self.swing * self.step_sec
                since = now_sec - self._last_due
                first = math.floor(since / self.step_sec) - 1
                offset = math.inf
                for k in range(first, first + 4):
                    mark = k * self.step_sec + (delay if (k % 2 == 1) != self._last_odd else 0.0)
                    if abs(since - mark) < abs(offset):
                        offset = since - mark
            self._offsets[self._n_offsets] = offset
            self._n_offsets += 1

    def stepped(self, due_sec: float, now_sec: float) -> int:
        """Advance the grid; on each beat after the count-in, follow the player."""
        self._steps += 1
        self._last_due = due_sec
        self._last_odd = self._steps % 2 == 0  # _steps counts this one: step index _steps - 1
        skipped = super().stepped(due_sec, now_sec)
        if self._steps >= self.count_in_steps and self._steps % STEPS_PER_BEAT == 0:
            self._follow(now_sec)
        return skipped

    def _follow(self, now_sec: float) -> None:
        count = min(self._n_onsets, len(self._onsets))
        recent = self._onsets[:count]
        recent = recent[recent >= now_sec - self.window_sec]
        if len(recent) >= self.MIN_ONSETS:
            lo, hi = self.bpm / math.sqrt(2.0), self.bpm * math.sqrt(2.0)
            heard = estimate_tempo(recent, min_bpm=lo, max_bpm=hi)
            if math.isfinite(heard):
                self.bpm = math.exp((1 - self.ADAPT) * math.log(self.bpm) + self.ADAPT * math.log(heard))
                self.bpm = min(max(self.bpm, 20.0), 400.0)
        old_step = self.step_sec
        self.step_sec = 60.0 / self.bpm / STEPS_PER_BEAT
        if self._n_offsets:
            # A phase-locked loop on the player's offsets from the grid: the phase moves
            # half-way to them, and a lasting offset lengthens or shortens the step.
            drift = float(np.median(self._offsets[: self._n_offsets]))
            self.next_step_sec += self.PHASE_GAIN * drift
            self.step_sec += self.PERIOD_GAIN * drift / STEPS_PER_BEAT
            self.bpm = 60.0 / (self.step_sec * STEPS_PER_BEAT)
        self._n_offsets = 0
        self.next_step_sec += self.step_sec - old_step


class MidiClockTempo(FixedTempo):
    """Steps on MIDI clock from the input: one step every 6 pulses after start or continue.

    Start resets the bar position, stop halts the steps (the engine silences the band),
    continue resumes, and song position pointers move the position in the bar (a MIDI
    beat is a 16th note, exactly one step). The tempo is measured from the pulses.
    """

    def __init__(self, bpm: float = 120.0) -> None:
        super().__init__(bpm)
        self.running = False
        self._pulses = 0
        self._step_count = 0
        self._last_pulse_sec = math.nan

    def start(self, now_sec: float) -> None:
        """Nothing is due until the clock starts."""
        self.next_step_sec = None

    def stepped(self, due_sec: float, now_sec: float) -> int:
        """The next step waits for its 6th pulse."""
        self.next_step_sec = None
        self._step_count += 1
        self.position = self._step_count % STEPS_PER_BAR
        return 0

    def message(self, status: int, data: tuple[int, ...], now_sec: float) -> bool:
        """Take clock, start, stop, continue and song position; False for anything else."""
        if status == _CLOCK:
            if math.isfinite(self._last_pulse_sec):
                interval = now_sec - self._last_pulse_sec
                if 0.0005 < interval < 0.5:
                    pulse_bpm = 60.0 / (interval * 24)
                    self.bpm = 0.9 * self.bpm + 0.1 * pulse_bpm
                    self.step_sec = 60.0 / self.bpm / STEPS_PER_BEAT
            self._last_pulse_sec = now_sec
            if self.running:
                if self._pulses % CLOCK_PULSES_PER_STEP == 0:
                    self.next_step_sec = now_sec
                self._pulses += 1
            return True
        if status == _START:
            self.running, self._pulses, self._step_count, self.position = True, 0, 0, 0
            return True
        if status == _CONTINUE:
            self.running = True
            return True
        if status == _STOP:
            self.running = False
            self.next_step_sec = None
            self.stopped_now = True
            return True
        if status == _SONG_POSITION and len(data) == 2:
            sixteenths = data[0] | (data[1] << 7)
            self._step_count = sixteenths
            self.position = sixteenths % STEPS_PER_BAR
            self._pulses = 0
            return True
        return False


def _data_ok(message: tuple[int, ...]) -> bool:
    for i in range(1, len(message)):
        if not 0 <= message[i] <= 127:
            return False
    return True


def _check_bpm(bpm: float) -> float:
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not 20.0 <= float(bpm) <= 400.0:
        raise ParameterError(f"bpm is {bpm!r}; use a tempo from 20 to 400 beats per minute")
    return float(bpm)


# ----------------------------------------------------------------------------- buttons


class ButtonMap:
    """Which five notes are the five lanes (5-button mode).

    Parameters
    ----------
    notes : sequence of 5 ints, optional
        MIDI notes of lanes 0-4. Without them the map learns: the first five distinct notes
        the player presses become lanes 0, 1, 2, 3, 4 in the order pressed.
    """

    def __init__(self, notes: Sequence[int] | None = None) -> None:
        self.lane_of = np.full(128, -1, dtype=np.int64)
        self.learned = 0
        if notes is not None:
            chosen = [int(n) for n in notes]
            if len(chosen) != 5 or len(set(chosen)) != 5 or not all(0 <= n <= 127 for n in chosen):
                raise ParameterError(f"buttons are {notes!r}; give five different MIDI notes 0-127, lanes 0 to 4")
            for lane, note in enumerate(chosen):
                self.lane_of[note] = lane
            self.learned = 5

    def lane(self, note: int) -> int:
        """The lane of ``note`` (learning it when the map is still learning), -1 for none."""
        lane = int(self.lane_of[note])
        if lane < 0 and self.learned < 5:
            lane = self.learned
            self.lane_of[note] = lane
            self.learned += 1
        return lane


# ----------------------------------------------------------------------------- recording


class Recorder:
    """Every message the session hears and plays, with its time, in preallocated arrays.

    ``record`` writes three numbers and never allocates; past ``capacity`` events it counts
    what it drops. ``session.write_session`` turns a recorder into session.mid and .wav.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.time_sec = np.zeros(capacity, dtype=np.float64)
        self.track = np.zeros(capacity, dtype=np.int8)
        self.data = np.zeros((capacity, 3), dtype=np.int16)  # status, data1, data2 (-1 when absent)
        self.count = 0
        self.dropped = 0

    def record(self, time_sec: float, track: int, message: tuple[int, ...]) -> None:
        """Keep one message (status and up to two data bytes) at ``time_sec`` on ``track``."""
        i = self.count
        if i >= len(self.time_sec):
            self.dropped += 1
            return
        self.time_sec[i] = time_sec
        self.track[i] = track
        row = self.data[i]
        row[0] = message[0]
        row[1] = message[1] if len(message) > 1 else -1
        row[2] = message[2] if len(message) > 2 else -1
        self.count = i + 1

    def events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The recorded (time_sec, track, data) so far (views)."""
        return self.time_sec[: self.count], self.track[: self.count], self.data[: self.count]


# ----------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class EngineReport:
    """What a run did, for the user and the benches.

    Attributes
    ----------
    steps : int
    deadline_misses : int
        Steps that started more than ``MISS_TOLERANCE_SEC`` after their deadline, or were
        skipped because the engine fell more than a step behind.
    max_lateness_sec : float
    notes_in : int
        Note-ons taken from the player.
    grace_replays : int
        Notes that arrived inside the grace window and replayed the step just played.
    ignored_messages : int
        Messages of no use or malformed (sysex, garbage, other channels).
    note_latency_us, step_latency_us : np.ndarray
        Per note-on: from taking the message to the lead sent; per step: from the deadline
        check to the voices sent (processing inside the engine, drivers excluded).
    final_bpm : float
    output_errors : int
        Sends that failed (an output that disappeared is dropped after its first failure).
    dropped_events : int
        Events the recorder had no room for.
    """

    steps: int
    deadline_misses: int
    max_lateness_sec: float
    notes_in: int
    grace_replays: int
    ignored_messages: int
    note_latency_us: np.ndarray
    step_latency_us: np.ndarray
    final_bpm: float
    output_errors: int
    dropped_events: int

    def summary(self) -> str:
        """One line for the terminal."""

        def p(values: np.ndarray, q: float) -> str:
            return f"{np.percentile(values, q):.0f}" if len(values) else "-"

        return (
            f"{self.steps} steps, {self.notes_in} notes in ({self.grace_replays} in the grace window), "
            f"deadline misses {self.deadline_misses} (latest {self.max_lateness_sec * 1e3:.1f} ms), "
            f"note -> lead p50/p99 {p(self.note_latency_us, 50)}/{p(self.note_latency_us, 99)} us, "
            f"step -> voices p50/p99 {p(self.step_latency_us, 50)}/{p(self.step_latency_us, 99)} us, "
            f"{self.ignored_messages} messages ignored, tempo {self.final_bpm:.1f} BPM"
            + (f", {self.output_errors} output errors" if self.output_errors else "")
            + (f", {self.dropped_events} events not recorded (recorder full)" if self.dropped_events else "")
        )


class Engine:
    """Play the arranger live: see the module notes for the timing design.

    Parameters
    ----------
    arranger : Arranger
        Its mode decides the input: keys (pitches) or buttons (lanes through ``buttons``).
    clock : callable
        Seconds, monotonic.
    inbox : Inbox
        ``get(timeout_sec)`` -> raw message or None.
    outputs : sequence of Output
        Each gets every message the band plays (``send(tuple)``).
    tempo : FixedTempo, FollowTempo or MidiClockTempo
    recorder : Recorder, optional
    grace_sec : float
        Late notes up to this long after a step count for that step (0 turns it off).
    in_channel : int, optional
        Only notes on this channel (0-15) are played; None takes every channel.
    buttons : ButtonMap, optional
        The lanes in buttons mode (a learning map by default).
    gm_drums : bool
        Noise on channel 9.
    metronome : bool
        Click every beat (an accent on the bar). The count-in clicks in any case.
    count_in_steps : int
        Steps of clicks before the band plays (the player may play along; their notes sound).
    latency_capacity : int
        Latencies kept for the report (a ring: the latest ones).
    timer : callable
        Seconds for the latency figures: the processor's own time, even when ``clock`` is
        virtual.
    swing : float
        0 (straight) to 0.5: every off-beat 16th is due this much of a step late (see the
        module notes); ``set_settings`` changes it.
    clock_out : ClockOut, optional
        Lead other gear by MIDI clock: pulses from the first step (the count-in is the
        follower's pre-roll), start with the band's first step, the straight grid after
        every step, stop at the end. Not with ``MidiClockTempo`` (that follows a clock).
    """

    def __init__(
        self,
        arranger: Arranger,
        *,
        clock: Callable[[], float],
        inbox: Inbox,
        outputs: Sequence[Output] = (),
        tempo: FixedTempo | None = None,
        recorder: Recorder | None = None,
        grace_sec: float = 0.04,
        in_channel: int | None = None,
        buttons: ButtonMap | None = None,
        gm_drums: bool = False,
        metronome: bool = False,
        count_in_steps: int = 0,
        latency_capacity: int = 200_000,
        timer: Callable[[], float] = time.perf_counter,
        swing: float = 0.0,
        clock_out: ClockOut | None = None,
    ) -> None:
        if not 0.0 <= grace_sec <= 0.25:
            raise ParameterError(f"grace window is {grace_sec!r} s; use 0 to 0.25 s (0 turns it off)")
        if in_channel is not None and not 0 <= in_channel <= 15:
            raise ParameterError(f"input channel is {in_channel + 1}; use 1 to 16")
        self.arranger = arranger
        self.clock = clock
        self.timer = timer
        self.inbox = inbox
        self.outputs = list(outputs)
        self.tempo = tempo if tempo is not None else FixedTempo(120.0)
        if clock_out is not None and isinstance(self.tempo, MidiClockTempo):
            raise ParameterError("MIDI clock out cannot lead while the tempo follows MIDI clock in; choose one")
        self.clock_out = clock_out
        self.tempo.swing = check_swing(swing)
        self.recorder = recorder
        self.grace_sec = float(grace_sec)
        self.in_channel = in_channel
        self.buttons = buttons if buttons is not None else ButtonMap()
        self.metronome = bool(metronome)
        self.count_in_steps = int(count_in_steps)
        self.channels = voice_channels(gm_drums=gm_drums)
        # Every message the engine can send, built once.
        self._on = [[(_NOTE_ON | ch, p, VOICE_VELOCITY[name]) for p in range(128)] for ch, name in
                    zip(self.channels, VOICE_NAMES, strict=True)]  # fmt: skip
        self._off = [[(_NOTE_OFF | ch, p, 0) for p in range(128)] for ch in self.channels]
        self._click_on = [(_NOTE_ON | METRONOME_CHANNEL, key, 100) for key in METRONOME_KEYS]
        self._click_off = [(_NOTE_OFF | METRONOME_CHANNEL, key, 0) for key in METRONOME_KEYS]
        self._sounding_out = np.full(4, -1, dtype=np.int64)  # what each voice's channel sounds now
        self._held = np.full(16, -1, dtype=np.int64)  # notes the player holds, oldest first
        self._n_held = 0
        self._note_latency = np.zeros(latency_capacity, dtype=np.float64)
        self._step_latency = np.zeros(latency_capacity, dtype=np.float64)
        self._failed_outputs: set[int] = set()
        self._stop = threading.Event()
        # Arranger settings waiting for the next step (``set_settings``), taken under the lock.
        self._settings_lock = threading.Lock()
        self._new_settings: dict[str, object] | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.step_index = 0
        self._pending_onset = False
        self._pending_melody = -1  # the note (pitch or lane) that started in this step's window
        self._pending_lead = -1
        self._last_step_onset = True  # no replay before the first step
        self._last_step_due = -math.inf
        self._last_position = 0
        self._click = -1
        self.notes_in = self.grace_replays = self.ignored = 0
        self.misses = 0
        self.max_late = 0.0
        self.output_errors = 0
        self._n_note_lat = self._n_step_lat = 0
        self._taken = 0.0

    # ------------------------------------------------------------------ running

    def stop(self) -> None:
        """Ask a running ``run`` to end after the current message or step (thread-safe)."""
        self._stop.set()

    def set_settings(
        self,
        *,
        style: str | None = None,
        energy: str | None = None,
        voices: str | Sequence[str] | None = None,
        scale: str | Scale | None = None,
        swing: float | None = None,
    ) -> None:
        """Change style, energy, voices, scale lock or swing (None keeps one) from the next step on.

        Thread-safe; ``scale="off"`` turns the lock off.

        The values are checked here, on the caller's thread (``ParameterError`` naming the
        choices; nothing changes); the engine's thread hands them to ``Arranger.set_settings``
        at the start of its next step, never inside one, so a step and its grace replay play
        with the same settings. The arranger's state carries over (the take goes on). Only
        the step that takes a change does any allocating (the arranger sums its settings' rows).
        """
        fields: dict[str, object] = {}
        if style is not None:
            style_index(self.arranger.model, style)
            fields["style"] = style
        if energy is not None:
            energy_index(energy)
            fields["energy"] = energy
        if voices is not None:
            fields["voices"] = parse_voices(voices)
        if scale is not None:
            fields["scale"] = parse_scale(scale) or "off"
        if swing is not None:
            fields["swing"] = check_swing(swing)
        with self._settings_lock:
            self._new_settings = {**(self._new_settings or {}), **fields}

    def _take_settings(self) -> None:
        with self._settings_lock:
            fields, self._new_settings = self._new_settings, None
        if fields and "swing" in fields:
            self.tempo.swing = fields.pop("swing")
        if fields:
            self.arranger.set_settings(**fields)

    def run(self, *, max_steps: int | None = None, until_sec: float | None = None) -> EngineReport:
        """Play until ``stop()``, ``max_steps`` steps, the clock passing ``until_sec``, or Ctrl-C.

        On the way out, whatever ended the run (KeyboardInterrupt included, which is then
        raised again), every voice is silenced on every output.
        """
        self._stop.clear()
        self._reset_counters()
        self._start_outputs()
        # Leading by clock, the first step waits until its pulse can still leave on time.
        self.tempo.start(self.clock() + (self.clock_out.lead_sec if self.clock_out is not None else 0.0))
        if self.clock_out is not None:
            first, step_sec = self.tempo.next_step_sec, self.tempo.step_sec
            self.clock_out.clock_start(first, step_sec, first + self.count_in_steps * step_sec)
        try:
            while not self._stop.is_set():
                if max_steps is not None and self.step_index >= max_steps:
                    break
                now = self.clock()
                if until_sec is not None and now >= until_sec:
                    break
                grid = self.tempo.next_step_sec
                due = grid
                if grid is not None and self._position() % 2 == 1:
                    due = grid + self.tempo.swing * self.tempo.step_sec
                if due is not None and now >= due:
                    self._step(now, due, grid)
                    continue
                wait = IDLE_WAIT_SEC if due is None else due - now
                if until_sec is not None:
                    wait = min(wait, until_sec - now)
                message = self.inbox.get(wait)
                if message is not None:
                    self._take(message)
        finally:
            if self.clock_out is not None:
                self.clock_out.clock_stop()
            self._all_off()
        return self.report()

    def report(self) -> EngineReport:
        """The figures of the run so far."""
        return EngineReport(
            steps=self.step_index,
            deadline_misses=self.misses,
            max_lateness_sec=self.max_late,
            notes_in=self.notes_in,
            grace_replays=self.grace_replays,
            ignored_messages=self.ignored,
            note_latency_us=self._note_latency[: min(self._n_note_lat, len(self._note_latency))] * 1e6,
            step_latency_us=self._step_latency[: min(self._n_step_lat, len(self._step_latency))] * 1e6,
            final_bpm=self.tempo.bpm,
            output_errors=self.output_errors,
            dropped_events=self.recorder.dropped if self.recorder is not None else 0,
        )

    # ------------------------------------------------------------------ output

    def _send(self, message: tuple[int, ...], track: int, now: float) -> None:
        for index, output in enumerate(self.outputs):
            if index in self._failed_outputs:
                continue
            try:
                output.send(message)
            except Exception:  # noqa: BLE001 (a port that vanished: keep playing to the others)
                self.output_errors += 1
                self._failed_outputs.add(index)
        if self.recorder is not None:
            self.recorder.record(now, track, message)

    def _start_outputs(self) -> None:
        now = self.clock()
        for voice, name in enumerate(VOICE_NAMES):
            channel = self.channels[voice]
            if name in VOICE_PROGRAMS:
                self._send((_PROGRAM | channel, VOICE_PROGRAMS[name]), voice + 1, now)
            if name in DUTY_CC:
                self._send((_CONTROL | channel, 1, DUTY_CC[name]), voice + 1, now)

    def _voice(self, voice: int, pitch: int, restart: bool, now: float) -> None:
        """Make ``voice`` sound ``pitch`` (-1: silence), restarting it when ``restart``."""
        current = int(self._sounding_out[voice])
        if current == pitch and not restart:
            return
        if current >= 0:
            self._send(self._off[voice][current], voice + 1, now)
        if pitch >= 0:
            self._send(self._on[voice][pitch], voice + 1, now)
        self._sounding_out[voice] = pitch

    def _all_off(self) -> None:
        now = self.clock()
        for voice in range(4):
            self._voice(voice, -1, False, now)
        if self._click >= 0:
            self._send(self._click_off[self._click], TRACK_METRONOME, now)
            self._click = -1
        for voice, channel in enumerate(self.channels):  # all notes off, for synths that missed one
            self._send((_CONTROL | channel, 123, 0), voice + 1, now)

    # ------------------------------------------------------------------ steps

    def _melody_now(self) -> int:
        """What the model hears this step.

        The newest held note (as a lane with buttons), else the note tapped and already
        released inside this step's window, else -1.
        """
        if self._n_held:
            note = int(self._held[self._n_held - 1])
            return int(self.buttons.lane_of[note]) if self.arranger.buttons else note
        return self._pending_melody if self._pending_onset else -1

    def _position(self) -> int:
        """Step in the bar of the next step."""
        return self.tempo.position if self.tempo.position is not None else self.step_index % STEPS_PER_BAR

    def _step(self, now: float, due: float, grid: float) -> None:
        """Play the step due (swung) at ``due``, whose straight grid time is ``grid``."""
        began = self.timer()
        late = now - due
        if late > MISS_TOLERANCE_SEC:
            self.misses += 1
        self.max_late = max(self.max_late, late)
        position = self._position()
        self._tick_metronome(position, now)
        if self._new_settings is not None:  # between steps: the one before played with the old ones
            self._take_settings()
        if self.step_index >= self.count_in_steps:
            onset = self._pending_onset
            melody = self._melody_now()
            self.arranger.save_state()
            self.arranger.step(melody, onset, position, self._pending_lead if onset else -1)
            self._emit(now)
            self._last_step_onset = onset
            self._last_position = position
        self._pending_onset = False
        self._pending_lead = -1
        self._last_step_due = due
        self.step_index += 1
        skipped = self.tempo.stepped(grid, now)
        if skipped:
            self.misses += skipped
            self.step_index += skipped
        if self.clock_out is not None and self.tempo.next_step_sec is not None:
            self.clock_out.clock_schedule(self.tempo.next_step_sec, self.tempo.step_sec)
        self._log_latency(self._step_latency, self._n_step_lat, self.timer() - began)
        self._n_step_lat += 1

    def _emit(self, now: float) -> None:
        sounding, started = self.arranger.sounding, self.arranger.started
        for voice in range(1, 4):
            self._voice(voice, int(sounding[voice]), bool(started[voice]), now)

    def _tick_metronome(self, position: int, now: float) -> None:
        if self._click >= 0:
            self._send(self._click_off[self._click], TRACK_METRONOME, now)
            self._click = -1
        counting_in = self.step_index < self.count_in_steps
        if (self.metronome or counting_in) and position % STEPS_PER_BEAT == 0:
            self._click = 1 if position == 0 else 0
            self._send(self._click_on[self._click], TRACK_METRONOME, now)

    @staticmethod
    def _log_latency(buffer: np.ndarray, count: int, seconds: float) -> None:
        buffer[count % len(buffer)] = seconds

    # ------------------------------------------------------------------ input

    def _take(self, message: tuple[int, ...]) -> None:
        self._taken = self.timer()
        now = self.clock()
        if not message:
            self.ignored += 1
            return
        status = message[0]
        if status >= 0xF0:
            if not self.tempo.message(status, tuple(message[1:]), now):
                self.ignored += 1
            elif self.tempo.stopped_now:
                self.tempo.stopped_now = False
                for voice in range(4):
                    self._voice(voice, -1, False, now)
            return
        kind = status & 0xF0
        if status < 0x80 or len(message) != 1 + _DATA_BYTES[kind] or not _data_ok(message):
            self.ignored += 1
            return
        if self.in_channel is not None and status & 0x0F != self.in_channel:
            self.ignored += 1
            return
        if kind == _NOTE_ON and message[2] > 0:
            self._note_on(message[1], now)
            if self.recorder is not None:
                self.recorder.record(now, TRACK_INPUT, message)
        elif kind == _NOTE_OFF or kind == _NOTE_ON:
            self._note_off(message[1], now)
            if self.recorder is not None:
                self.recorder.record(now, TRACK_INPUT, message)
        else:
            self.ignored += 1

    def _note_on(self, note: int, now: float) -> None:
        melody = note
        if self.arranger.buttons:
            melody = self.buttons.lane(note)
            if melody < 0:
                self.ignored += 1
                return
        self.notes_in += 1
        self.tempo.onset(now)
        self._release(note)
        if self._n_held == len(self._held):  # more than 16 held: forget the oldest
            self._held[:-1] = self._held[1:]
            self._n_held -= 1
        self._held[self._n_held] = note
        self._n_held += 1
        in_grace = (
            not self._last_step_onset
            and now - self._last_step_due <= self.grace_sec
            and self.step_index > self.count_in_steps
        )
        if in_grace:
            # The note belongs to the step just played: replay it with the note as its onset.
            self.grace_replays += 1
            self.arranger.restore_state()
            self.arranger.step(melody, True, self._last_position)
            self._last_step_onset = True
            self._voice(0, int(self.arranger.sounding[0]), True, now)
            self._emit(now)
        else:
            lead = self.arranger.preview_lead(melody, self._position())
            self._pending_onset = True
            self._pending_melody = melody
            self._pending_lead = lead
            self._voice(0, lead, True, now)
        self._log_latency(self._note_latency, self._n_note_lat, self.timer() - self._taken)
        self._n_note_lat += 1

    def _release(self, note: int) -> bool:
        for i in range(self._n_held):
            if self._held[i] == note:
                self._held[i : self._n_held - 1] = self._held[i + 1 : self._n_held]
                self._n_held -= 1
                return True
        return False

    def _note_off(self, note: int, now: float) -> None:
        was_top = self._n_held > 0 and self._held[self._n_held - 1] == note
        if not self._release(note) or not was_top:
            return
        if self._n_held == 0:
            self._voice(0, -1, False, now)
            return
        # Last-note priority: the lead falls back to the newest note still held.
        self._voice(0, self.arranger.preview_lead(self._melody_now(), self._position()), True, now)
