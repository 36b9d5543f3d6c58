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
import os
import sys
import threading
import time
from collections.abc import Iterator

from chiptuner.errors import MidiSystemError

__all__ = ["Handover", "JackInbox", "JackMidi", "JackOutput", "jack_answers", "jack_ports", "quiet_stderr"]

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
        try:
            self._in_port = self._client.midi_inports.register("in")
            self._out_port = self._client.midi_outports.register("out")
            period_sec = self._client.blocksize / self._client.samplerate
            self.handover = Handover(ANSWER_WAIT * period_sec)
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
            # Sent before this cycle (the engine's steps): at its start.
            self._write(out, 0, len(outgoing))
            messages = []
            offset = 0
            for offset, data in self._in_port.incoming_midi_events():  # noqa: B007 (the last offset is kept)
                messages.append(tuple(bytes(data)))
            self.handover.deliver(messages)
            # The answers: at the time of the note they answer.
            self._write(out, offset, len(outgoing))
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
        while self.handover.outgoing and time.monotonic() < deadline and not self.server_gone:
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

    def send(self, message: tuple[int, ...]) -> None:
        """Queue one message for the output port."""
        self._client.handover.send(message)

    def close(self) -> None:
        """Close the client (both ports)."""
        self._client.close()
