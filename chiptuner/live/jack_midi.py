"""MIDI ports on a JACK server: one client whose process callback waits for the engine's answer.

A note that reaches ``chiptuner:in`` in a JACK cycle is answered on ``chiptuner:out`` in the
same cycle: the process callback hands the cycle's messages to the engine's thread, waits
(at most ``ANSWER_WAIT`` of a period) until the engine comes back for more, and writes what
the engine sent meanwhile into this cycle's output buffer. A client that queued its answer
for a later cycle (python-rtmidi, which also opens input and output as two clients) cannot
answer before the next period: 1.5 periods on average instead of half of one.

What the engine sends between notes (its steps, at the tempo) is queued and written at the
start of the next cycle; answers at the time of the note they answer. Each JACK MIDI event
reaches the engine as one whole message, so a sysex cut short by its sender is only that
one message (rtmidi's JACK input held back all later input after one).

MIDI clock out (``JackOutput.clock_start``) is written by the process callback itself, not
queued: the engine says where its straight grid lies (in its clock, ``time.perf_counter``),
which becomes JACK frames at once; each cycle the callback writes every pulse that falls in
it at its own frame offset (``ClockPulses``), so a pulse is placed to the frame whenever the
engine's thread runs; a queued message would leave at the start of the
next cycle, up to a period (5.3 ms at 256 frames) off.

The callback runs Python, so it takes the GIL: while the client is open the interpreter
hands the GIL over every ``SWITCH_INTERVAL_SEC``, and the engine's step (tens of
microseconds) is the longest it waits for it otherwise. Closing deactivates the client
through cffi, which releases the GIL, so a callback waiting for the GIL can finish. The
hand-over itself (``Handover``) is plain Python and tested without JACK.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator

from chiptuner.errors import MidiSystemError

__all__ = [
    "ClockPulses",
    "Handover",
    "JackInbox",
    "JackMidi",
    "JackOutput",
    "jack_answers",
    "jack_ports",
    "quiet_stderr",
]

logger = logging.getLogger(__name__)

#: The longest part of a period the process callback waits for the engine's answer (which
#: takes 0.1-0.3 ms); the rest of the cycle is left for the clients after ours. An answer
#: later than that leaves in the next cycle.
ANSWER_WAIT = 0.3
#: Messages waiting for the engine (or for the port) beyond this are dropped and counted.
MAX_BACKLOG = 4096
#: Python hands the GIL to a waiting thread after this long; the default (5 ms) is about one
#: JACK period, so a busy thread could keep the process callback out for a whole cycle.
SWITCH_INTERVAL_SEC = 0.0005
#: Reading the engine's clock and JACK's frame time together counts only when it took less than this.
CLOCK_READ_SEC = 50e-6
#: MIDI clock: pulses per 16th-note step (24 per quarter note).
PULSES_PER_STEP = 6
_CLOCK, _START, _STOP, _SONG_POSITION = b"\xf8", b"\xfa", b"\xfc", b"\xf2\x00\x00"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence fd 2 while a C library probes for its server (libjack, ALSA).

    They print there when none answers; the caller says it in one line instead.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _jack():
    try:
        with quiet_stderr():
            import jack  # noqa: PLC0415 (optional: the `live` extra; loads libjack)
    except ImportError:
        raise MidiSystemError("JACK ports need the JACK-Client package: pip install 'chiptuner[live]'") from None
    except OSError as error:  # JACK-Client found no libjack
        raise MidiSystemError(f"libjack is not installed ({error}); Debian: apt-get install jackd2") from None
    # libjack's own messages ("Cannot read socket fd", "Server is not running") go to the
    # debug log: what matters reaches the user as one line.
    jack.set_error_function(_log_jack)
    jack.set_info_function(_log_jack)
    return jack


def _log_jack(message: str) -> None:
    logger.debug("libjack: %s", message)


def _client(name: str):
    jack = _jack()
    try:
        with quiet_stderr():
            return jack.Client(name, no_start_server=True)
    except jack.JackOpenError as error:
        raise MidiSystemError(f"no JACK server is running ({error})") from None


def jack_answers() -> bool:
    """Whether a JACK server runs that this process can connect to (never starts one)."""
    try:
        client = _client("chiptuner-probe")
    except MidiSystemError:
        return False
    client.close()
    return True


def jack_ports() -> tuple[list[str], list[str]]:
    """MIDI ports of the running server: (those one can listen to, those one can send to)."""
    client = _client("chiptuner-list")
    try:
        sources = [port.name for port in client.get_ports(is_midi=True, is_output=True)]
        sinks = [port.name for port in client.get_ports(is_midi=True, is_input=True)]
        return sources, sinks
    finally:
        client.close()


class Handover:
    """Messages from JACK's process thread to the engine's thread, and its answers back.

    Pure Python, no JACK: ``deliver`` (process thread) queues a cycle's messages and waits
    at most ``wait_sec`` until the engine has handled them all, which it shows by asking
    ``get`` for the next one; ``send`` (engine) queues an answer for the port, which the
    process thread takes with ``pop_outgoing``. One lock, two conditions; each deque has
    one consumer.
    """

    def __init__(self, wait_sec: float, max_backlog: int = MAX_BACKLOG) -> None:
        lock = threading.Lock()
        self._arrived = threading.Condition(lock)  # the engine waits here for messages
        self._answered = threading.Condition(lock)  # the process thread waits here for the engine
        self._incoming: collections.deque[tuple[int, ...]] = collections.deque()
        self.outgoing: collections.deque[bytes] = collections.deque()
        self._wait_sec = wait_sec
        self._max_backlog = max_backlog
        self._delivered = 0  # messages given to the engine's queue
        self._taken = 0  # messages the engine took
        self._handled = 0  # messages the engine finished (it came back for the next one)
        self._serving = False  # the engine asks for messages: worth waiting for
        self.dropped_in = 0
        self.dropped_out = 0
        self.late_answers = 0  # deliveries that stopped waiting before the engine was done

    # ------------------------------------------------------------------ the process thread

    def deliver(self, messages: list[tuple[int, ...]]) -> None:
        """Queue ``messages`` for the engine and wait (at most ``wait_sec``) until it handled them."""
        room = self._max_backlog - len(self._incoming)
        if len(messages) > room:
            self.dropped_in += len(messages) - max(room, 0)
            messages = messages[: max(room, 0)]
        if not messages:
            return
        with self._arrived:
            self._incoming.extend(messages)
            self._delivered += len(messages)
            self._arrived.notify()
            if self._serving and not self._answered.wait_for(self._caught_up, self._wait_sec):
                self.late_answers += 1

    def _caught_up(self) -> bool:
        return self._handled >= self._delivered or not self._serving

    # ------------------------------------------------------------------ the engine's thread

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message for the engine, None after ``timeout_sec`` without one.

        Asking again means the last one is handled, which lets a waiting delivery go on.
        """
        with self._arrived:
            self._serving = True
            if self._handled != self._taken:
                self._handled = self._taken
                self._answered.notify()
            if not self._incoming:
                self._arrived.wait(max(timeout_sec, 0.0))
                if not self._incoming:
                    return None
            message = self._incoming.popleft()
            self._taken += 1
            return message

    def send(self, message: tuple[int, ...]) -> None:
        """Queue a message for the port (this cycle's, if a delivery still waits)."""
        if len(self.outgoing) < self._max_backlog:
            self.outgoing.append(bytes(message))
        else:
            self.dropped_out += 1

    def stop_serving(self) -> None:
        """The engine no longer asks: deliveries stop waiting for it (at once, a waiting one too)."""
        with self._arrived:
            self._serving = False
            self._answered.notify_all()


class ClockPulses:
    """When the MIDI clock pulses fall, in JACK frames: plain Python, no JACK (the process callback asks it).

    The engine's thread gives the straight grid in its own clock (``start``, ``schedule``,
    ``stop``), turned into frames at once by ``to_frames``; the process thread asks
    ``due(cycle_start, frames, out)`` for the messages of its cycle with their frame
    offsets. A pulse every ``step_sec / PULSES_PER_STEP`` from the grid's step.

    The engine gives the grid again after every step, about a step ahead, and its clock
    and JACK's frame clock drift apart (a sound card's crystal, or a dummy driver on a busy
    machine: 0.5% measured); rather than jump to a new grid, the pulses before its step
    share the difference (a new period until then), so every pulse moves by a fraction of
    it and the clock stays on the engine's steps. Each change is one tuple assigned, so
    the process thread never sees half of one.

    Parameters
    ----------
    to_frames : callable
        Seconds of the engine's clock -> JACK's frame time (float, not wrapped).
    sample_rate : int
    """

    def __init__(self, to_frames, sample_rate: int) -> None:
        self._to_frames = to_frames
        self._sample_rate = sample_rate
        self._grid: tuple[float, float] | None = None  # (a step's frame, frames per pulse)
        self._start_grid: tuple[float, float] | None = None  # the grid ``start`` gave (``schedule`` moves _grid)
        self._starting = False
        self._stopping = False
        self._start_pulse = 0  # song position and start go before this pulse (0: the first)
        self._grid_used: tuple[float, float] | None = None  # the process thread's from here on
        self._start_pending = False
        self._next_frame = 0.0
        self._period = 0.0  # frames between the pulses now
        self._catch_up = 0  # pulses left at ``_period`` before the grid's own period
        self.pulses = 0

    # ------------------------------------------------------------------ the engine's thread

    def _grid_of(self, grid_sec: float, step_sec: float) -> tuple[float, float]:
        return float(self._to_frames(grid_sec)), step_sec * self._sample_rate / PULSES_PER_STEP

    def start(self, grid_sec: float, step_sec: float, start_sec: float | None = None) -> None:
        """Pulses from ``grid_sec``; song position 0 and start just before the pulse at ``start_sec``.

        Pulses before the start (a count-in) let the gear that follows lock to the tempo
        first, as a DAW's pre-roll does; the start comes with the band's first downbeat
        (``start_sec`` None: with the first pulse).
        """
        pulse_sec = step_sec / PULSES_PER_STEP
        self._start_pulse = 0 if start_sec is None else max(round((start_sec - grid_sec) / pulse_sec), 0)
        self._grid = self._start_grid = self._grid_of(grid_sec, step_sec)
        self._stopping = False
        self._starting = True

    def schedule(self, grid_sec: float, step_sec: float) -> None:
        """The grid from here on: a step at ``grid_sec``, steps of ``step_sec``."""
        self._grid = self._grid_of(grid_sec, step_sec)

    def stop(self) -> None:
        """Stop, in the next cycle; no pulses after it."""
        self._stopping = True

    @property
    def pending(self) -> bool:
        """A stop not written yet (closing waits for it)."""
        return self._stopping

    # ------------------------------------------------------------------ the process thread

    def due(self, cycle_start: int, frames: int, out: list[tuple[int, bytes]]) -> None:
        """Append (offset, message) of everything due in the cycle of ``frames`` from ``cycle_start``, in order.

        ``cycle_start`` is JACK's (wrapping) frame time of the cycle; a message already late
        goes at offset 0.
        """
        if self._stopping:
            if self._grid_used is not None:
                out.append((0, _STOP))
            self._grid_used = self._grid = None
            self._stopping = self._starting = False
            return
        grid = self._grid
        if grid is None:
            return
        if self._starting:
            first = self._start_grid
            if _offset(first[0], cycle_start) >= frames:  # the pulses begin in their own cycle
                return
            self._starting = False
            self._start_pending = True
            self.pulses = 0
            self._grid_used = first
            self._next_frame = first[0]
            self._period, self._catch_up = first[1], 0
        elif self._grid_used is None:  # stopped: nothing until the next start
            return
        if grid is not self._grid_used:
            self._follow(grid)
        while (offset := _offset(self._next_frame, cycle_start)) < frames:
            if self._start_pending and self.pulses == self._start_pulse:
                self._start_pending = False
                out.append((max(offset, 0), _SONG_POSITION))
                out.append((max(offset, 0), _START))
            out.append((max(offset, 0), _CLOCK))
            self.pulses += 1
            if self._catch_up > 0:
                self._catch_up -= 1
                if self._catch_up == 0:  # that was the grid's step: its own period from here
                    self._period = self._grid_used[1]
            self._next_frame += self._period

    def _follow(self, grid: tuple[float, float]) -> None:
        """Move the pulses onto a new grid: those left before its step share the difference."""
        origin, pulse = grid
        last = self._next_frame - self._period  # the last pulse written
        count = round((origin - last) / self._grid_used[1])  # pulses from it to the grid's step, at the old tempo
        if count >= 1:
            self._period = (origin - last) / count
            self._catch_up = count
            self._next_frame = last + self._period
        else:  # the step is already behind the pulses: go on from the grid
            self._next_frame = origin + math.ceil((last + pulse / 2 - origin) / pulse) * pulse
            self._period, self._catch_up = pulse, 0
        self._grid_used = grid


def _offset(frame: float, cycle_start: int) -> int:
    """Frames from ``cycle_start`` to ``frame`` (rounded), across the 32-bit wrap of JACK's frame time."""
    return (round(frame) - cycle_start + 2**31) % 2**32 - 2**31


class JackMidi:
    """The ``chiptuner`` JACK client: ports ``in`` and ``out``, joined to the engine by a ``Handover``.

    Raises MidiSystemError (one line) where no server answers or the ports cannot be made.
    """

    def __init__(self, client_name: str = "chiptuner") -> None:
        jack = _jack()
        self._client = _client(client_name)
        self.server_gone = False
        self.callback_error: str | None = None
        self.xruns = 0  # cycles the server saw overrun (any client's)
        self._closed = False
        self._clock_due: list[tuple[int, bytes]] = []
        try:
            self._in_port = self._client.midi_inports.register("in")
            self._out_port = self._client.midi_outports.register("out")
            period_sec = self.period_sec = self._client.blocksize / self._client.samplerate
            self.handover = Handover(ANSWER_WAIT * period_sec)
            self.clock = ClockPulses(self._frame_at, self._client.samplerate)
            self._client.set_process_callback(self._process)
            self._client.set_shutdown_callback(self._shutdown)
            self._client.set_xrun_callback(self._xrun)
            self._client.activate()
        except jack.JackError as error:
            self._client.close()
            raise MidiSystemError(f"cannot set up the JACK ports ({error})") from None
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_SEC))
        self.inbox = JackInbox(self, self._in_port.name)
        self.output = JackOutput(self, self._out_port.name)

    # ------------------------------------------------------------------ JACK's process thread

    def _process(self, frames: int) -> None:
        try:
            out = self._out_port
            out.clear_buffer()
            outgoing = self.handover.outgoing
            clock = self._clock_offsets(frames)
            # Sent before this cycle (the engine's steps): at its start.
            self._write(out, 0, len(outgoing))
            messages = []
            offset = 0
            for offset, data in self._in_port.incoming_midi_events():  # noqa: B007 (the last offset is kept)
                messages.append(tuple(bytes(data)))
            self.handover.deliver(messages)
            # Events of one buffer go in time order: the clock up to the answers, the answers
            # (at the time of the note they answer), the rest of the clock.
            written = 0
            while written < len(clock) and clock[written][0] <= offset:
                self._write_clock(out, clock[written])
                written += 1
            self._write(out, offset, len(outgoing))
            for event in clock[written:]:
                self._write_clock(out, event)
        except Exception as error:  # noqa: BLE001 (JACK would stop calling; the engine says why instead)
            self.callback_error = f"{type(error).__name__}: {error}"
            raise _jack().CallbackExit from None

    def _write(self, out, offset: int, count: int) -> None:
        outgoing = self.handover.outgoing
        for _ in range(count):
            try:
                out.write_midi_event(offset, outgoing[0])
            except _jack().JackError:  # the cycle's buffer is full: the rest goes in the next one
                return
            outgoing.popleft()

    def _frame_at(self, when_sec: float) -> float:
        """JACK's frame time at ``when_sec`` of ``time.perf_counter``: its current frame estimate, moved on."""
        # The two clocks read back to back; JACK's estimate comes from the DLL it keeps of the
        # cycles' start times, so it does not jump with when this thread happens to run. The
        # process callback may take the GIL between the two reads (a millisecond): read again
        # until both fall within CLOCK_READ_SEC.
        for _ in range(5):
            before = time.perf_counter()
            now_frame = self._client.frame_time
            after = time.perf_counter()
            if after - before < CLOCK_READ_SEC:
                break
        return now_frame + (when_sec - (before + after) / 2) * self._client.samplerate

    def _clock_offsets(self, frames: int) -> list[tuple[int, bytes]]:
        """The clock messages of the cycle, with their frame offsets (``ClockPulses``)."""
        due = self._clock_due
        due.clear()
        self.clock.due(self._client.last_frame_time, frames, due)
        return due

    def _write_clock(self, out, event: tuple[int, bytes]) -> None:
        try:
            out.write_midi_event(event[0], event[1])
        except _jack().JackError:  # the buffer is full: a clock message is worth nothing late
            self.handover.dropped_out += 1

    def _xrun(self, delay_usec: float) -> None:
        self.xruns += 1

    def _shutdown(self, status, reason: str) -> None:
        # Only a flag (a shutdown callback must not block): the engine's next ``get`` sees it.
        self.server_gone = True

    # ------------------------------------------------------------------ the engine's thread

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message for the engine (see ``Handover.get``); MidiSystemError once JACK is gone."""
        if self.server_gone:
            raise MidiSystemError("the JACK server stopped")
        if self.callback_error is not None:
            raise MidiSystemError(f"the JACK process callback failed ({self.callback_error})")
        return self.handover.get(timeout_sec)

    def summary(self) -> str:
        """One line for the end of a session."""
        handover = self.handover
        return (
            f"JACK: {self.xruns} xruns, {handover.late_answers} answers after their cycle, "
            f"{handover.dropped_in} input and {handover.dropped_out} output messages dropped"
        )

    def connect(self, source: str | None = None, destination: str | None = None) -> None:
        """Connect an existing port to ``chiptuner:in`` (``source``) and ``chiptuner:out`` to one (``destination``)."""
        jack = _jack()
        for ours, theirs in ((self._in_port, source), (self._out_port, destination)):
            if theirs is None:
                continue
            try:
                if ours is self._in_port:
                    self._client.connect(theirs, ours)
                else:
                    self._client.connect(ours, theirs)
            except jack.JackError as error:
                raise MidiSystemError(f"cannot connect {theirs!r} to {ours.name!r}: {error}") from None

    def close(self, flush_sec: float = 0.05) -> None:
        """Let the queued output leave (at most ``flush_sec``), then close the client."""
        if self._closed:
            return
        self._closed = True
        self.handover.stop_serving()
        deadline = time.monotonic() + flush_sec
        while (self.handover.outgoing or self.clock.pending) and time.monotonic() < deadline and not self.server_gone:
            time.sleep(0.002)
        with contextlib.suppress(Exception):
            self._client.deactivate()
        with contextlib.suppress(Exception):
            self._client.close()
        sys.setswitchinterval(self._switch_interval)


class JackInbox:
    """The engine's inbox on ``chiptuner:in``: ``get`` waits for the next whole MIDI message."""

    def __init__(self, client: JackMidi, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message, waiting at most ``timeout_sec``; None when none came."""
        return self.client.get(timeout_sec)

    def close(self) -> None:
        """Close the client (both ports)."""
        self.client.close()


class JackOutput:
    """The engine's output on ``chiptuner:out``.

    A message sent while the process callback waits for the engine leaves in that cycle, at
    the time of the note it answers; any other at the start of the next cycle.
    """

    def __init__(self, client: JackMidi, name: str) -> None:
        self._client = client
        self.name = name
        # A pulse is written in the cycle that holds its frame, which the callback starts
        # up to a period before that frame's time: know it two periods ahead.
        self.lead_sec = 2 * client.period_sec

    def send(self, message: tuple[int, ...]) -> None:
        """Queue one message for the output port."""
        self._client.handover.send(message)

    def clock_start(self, grid_sec: float, step_sec: float, start_sec: float) -> None:
        """Lead by MIDI clock: pulses from ``grid_sec``, song position 0 and start at ``start_sec`` (``ClockOut``)."""
        self._client.clock.start(grid_sec, step_sec, start_sec)

    def clock_schedule(self, grid_sec: float, step_sec: float) -> None:
        """The straight grid from here on (a new tempo takes over from the next pulse)."""
        self._client.clock.schedule(grid_sec, step_sec)

    def clock_stop(self) -> None:
        """Send MIDI stop in the next cycle; no pulses after it."""
        self._client.clock.stop()

    def close(self) -> None:
        """Close the client (both ports)."""
        self._client.close()
