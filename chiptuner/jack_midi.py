"""MIDI ports on a JACK server: one client whose process callback waits for the engine's answer.

A note that reaches ``chiptuner:in`` in a JACK cycle is answered on ``chiptuner:out`` in the
same cycle: the process callback hands the cycle's messages to the engine's thread, waits
(at most ``ANSWER_WAIT`` of a period) until the engine comes back for more, and writes what
the engine sent meanwhile into this cycle's output buffer. A client that queued its answer
for a later cycle (python-rtmidi, which also opens input and output as two clients) cannot
answer before the next period: 1.5 periods on average instead of half of one.

What the engine sends between notes (its steps, at the tempo) is queued and written at the
start of the next cycle. Each JACK MIDI event reaches the engine as one whole message, so a
sysex cut short by its sender is only that one message (rtmidi's JACK input held back all
later input after one).

The callback runs Python, so it takes the GIL: the engine's step (tens of microseconds) is
the longest it can wait for it. Closing deactivates the client through cffi, which releases
the GIL, so a callback waiting for the GIL can finish.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

from chiptuner.errors import MidiSystemError

__all__ = ["JackInbox", "JackMidi", "JackOutput", "jack_answers", "jack_ports"]

logger = logging.getLogger(__name__)

#: The longest part of a period the process callback waits for the engine's answer (which
#: takes 0.1-0.3 ms); the rest of the cycle is left for the clients after ours. An answer
#: later than that leaves in the next cycle.
ANSWER_WAIT = 0.3
#: Messages waiting for the engine beyond this are dropped (a flood faster than it can take).
MAX_BACKLOG = 4096


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence fd 2 while libjack looks for a server (the caller says it in one line instead)."""
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
        with _quiet_stderr():
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
        with _quiet_stderr():
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


class JackMidi:
    """The ``chiptuner`` JACK client: ports ``in`` and ``out`` and the hand-over to the engine.

    JACK's process thread gives the engine's thread each cycle's messages and waits for its
    answer (see the module's docstring).
    """

    def __init__(self, client_name: str = "chiptuner") -> None:
        self._client = _client(client_name)
        self._in_port = self._client.midi_inports.register("in")
        self._out_port = self._client.midi_outports.register("out")
        lock = threading.Lock()
        self._arrived = threading.Condition(lock)  # the engine waits here for messages
        self._answered = threading.Condition(lock)  # the process callback waits here for the engine
        self._incoming: collections.deque[tuple[int, ...]] = collections.deque()
        self._outgoing: collections.deque[bytes] = collections.deque()
        self._delivered = 0  # messages given to the engine's queue
        self._taken = 0  # messages the engine took
        self._handled = 0  # messages the engine finished (it came back for the next one)
        self._serving = False  # the engine is running: worth waiting for
        self._closed = False
        self.dropped = 0  # input over MAX_BACKLOG
        self.late_answers = 0  # cycles whose callback stopped waiting before the engine answered
        self.xruns = 0  # cycles the server saw overrun (any client's)
        self.server_gone = False
        period_sec = self._client.blocksize / self._client.samplerate
        self._wait_sec = ANSWER_WAIT * period_sec
        self._client.set_process_callback(self._process)
        self._client.set_shutdown_callback(self._shutdown)
        self._client.set_xrun_callback(self._xrun)
        self._client.activate()
        self.inbox = JackInbox(self, self._in_port.name)
        self.output = JackOutput(self, self._out_port.name)

    # ------------------------------------------------------------------ JACK's process thread

    def _process(self, frames: int) -> None:
        out = self._out_port
        out.clear_buffer()
        offset = 0
        new = 0
        for offset, data in self._in_port.incoming_midi_events():  # noqa: B007 (the last offset is kept)
            if len(self._incoming) >= MAX_BACKLOG:
                self.dropped += 1
                continue
            self._incoming.append(tuple(bytes(data)))
            new += 1
        if new:
            with self._arrived:
                self._delivered += new
                self._arrived.notify()
                if self._serving:
                    # Wait until the engine has handled all it was given (it asks for the
                    # next message), so that its answer leaves in this cycle.
                    if not self._answered.wait_for(self._caught_up, self._wait_sec):
                        self.late_answers += 1
        outgoing = self._outgoing
        while outgoing:
            try:
                out.write_midi_event(offset, outgoing[0])
            except Exception:  # noqa: BLE001 (the cycle's buffer is full: the rest goes in the next one)
                break
            outgoing.popleft()

    def _caught_up(self) -> bool:
        return self._handled >= self._delivered or not self._serving

    def _xrun(self, delay_usec: float) -> None:
        self.xruns += 1

    def _shutdown(self, status, reason: str) -> None:
        self.server_gone = True
        with self._arrived:
            self._arrived.notify_all()
            self._answered.notify_all()

    # ------------------------------------------------------------------ the engine's thread

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message for the engine, None after ``timeout_sec`` without one.

        Asking again means the last one is handled, which lets a waiting process callback go on.
        """
        with self._arrived:
            self._serving = True
            if self._handled != self._taken:
                self._handled = self._taken
                self._answered.notify()
            if not self._incoming:
                if self.server_gone:
                    raise MidiSystemError("the JACK server stopped; the session so far is kept")
                self._arrived.wait(max(timeout_sec, 0.0))
                if not self._incoming:
                    return None
            self._taken += 1
            return self._incoming.popleft()

    def send(self, message: tuple[int, ...]) -> None:
        """Queue a message for the output port (this cycle's, if the callback still waits)."""
        if len(self._outgoing) < MAX_BACKLOG:
            self._outgoing.append(bytes(message))

    def summary(self) -> str:
        """One line for the end of a session."""
        return (
            f"JACK: {self.xruns} xruns, {self.late_answers} answers after their cycle, "
            f"{self.dropped} input messages dropped"
        )

    def connect(self, source: str | None = None, destination: str | None = None) -> None:
        """Connect an existing port to ``chiptuner:in`` (``source``) or ``chiptuner:out`` to one (``destination``)."""
        jack = _jack()
        try:
            if source is not None:
                self._client.connect(source, self._in_port)
            if destination is not None:
                self._client.connect(self._out_port, destination)
        except jack.JackError as error:
            raise MidiSystemError(f"cannot connect {source or destination!r}: {error}") from None

    def close(self, flush_sec: float = 0.05) -> None:
        """Let the queued output leave (at most ``flush_sec``), then close the client."""
        if self._closed:
            return
        with self._arrived:
            self._serving = False
            self._answered.notify_all()
        deadline = time.monotonic() + flush_sec
        while self._outgoing and time.monotonic() < deadline and not self.server_gone:
            time.sleep(0.002)
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.deactivate()
        with contextlib.suppress(Exception):
            self._client.close()


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

    A message sent while the process callback waits leaves in that cycle, any other at the
    start of the next one.
    """

    def __init__(self, client: JackMidi, name: str) -> None:
        self._client = client
        self.name = name

    def send(self, message: tuple[int, ...]) -> None:
        """Queue one message for the output port."""
        self._client.send(message)

    def close(self) -> None:
        """Close the client (both ports)."""
        self._client.close()
