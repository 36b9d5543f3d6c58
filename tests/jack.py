"""Real MIDI ports for the tests and benches: a private JACK server, the engine as a process, a player.

Not a test module. ``jack_server()`` starts ``jackd`` with the dummy driver (no sound card),
a 256-frame period at 48 kHz and a name of its own, waits until a client can connect, and
points this process's JACK clients at it (``JACK_DEFAULT_SERVER``); it skips the test with
the reason where jackd, python-rtmidi or its JACK API is missing, or the server does not come
up. ``start_live`` runs ``python -m chiptuner.live`` and waits for its "ready" line;
``Player`` is the keyboard and the ears of a test: an rtmidi output into the engine's input
and an rtmidi input on its output, every message heard kept with its time.

Run as a script it is the other process a test needs::

    python -m tests.jack echo SECONDS          # a bare echo inside one JACK client's process callback
    python -m tests.jack flood RATE SECONDS    # notes, sysex and garbage into the engine, RATE a second
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import tomllib

from chiptuner.live.jack_midi import quiet_stderr

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "bench" / "targets.toml"
SAMPLE_RATE = 48_000
PERIOD_FRAMES = 256
PERIOD_SEC = PERIOD_FRAMES / SAMPLE_RATE
#: The engine's JACK client (ports chiptuner:in and chiptuner:out).
ENGINE_CLIENT = "chiptuner"
#: Pitch classes the flood never plays, so a probe note of one of them is told apart from the flood.
PROBE_PITCH_CLASSES = (1, 6)
#: The jackd process of each private server running, by server name (a test may kill one).
SERVERS: dict[str, subprocess.Popen] = {}


def live_budget() -> dict:
    """The ``[live]`` budgets of bench/targets.toml (shared by the tests and the benches)."""
    with TARGETS.open("rb") as f:
        return tomllib.load(f)["live"]


def skip_reason() -> str | None:
    """Why real-port tests cannot run here, or None."""
    if shutil.which("jackd") is None:
        return "jackd is not installed (Debian: apt-get install jackd2); real-port tests need a JACK server"
    try:
        import rtmidi  # noqa: PLC0415 (optional: the `live` extra)
    except ImportError:
        return "python-rtmidi is not installed (pip install 'chiptuner[live]')"
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return "this python-rtmidi was built without the JACK API"
    try:
        import jack  # noqa: F401, PLC0415 (JACK-Client: the engine's own JACK ports)
    except (ImportError, OSError) as error:
        return f"JACK-Client cannot load libjack ({error}); pip install 'chiptuner[live]'"
    return None


def _client_answers() -> bool:
    import rtmidi  # noqa: PLC0415

    try:
        with quiet_stderr():
            client = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="chiptuner-test-probe")
    except (SystemError, RuntimeError, rtmidi.RtMidiError):
        return False
    client.delete()
    return True


@contextlib.contextmanager
def jack_server(*, period_frames: int = PERIOD_FRAMES, timeout_sec: float = 10.0) -> Iterator[dict[str, str]]:
    """A private JACK server (dummy driver) for the duration of the block.

    Yields the environment for the processes that should use it; this process's own JACK
    clients use it too while the block runs. The server is stopped at the end.

    Names come from a pool of ``SERVER_NAMES``, tried in turn: JACK's shared registry holds
    eight servers and frees the entry of a dead one only when a server of the same name
    starts, so unique names would let servers that were killed (a test run cut short) use
    the registry up for good.
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    why_not = []
    for name in SERVER_NAMES:
        if name in SERVERS:  # ours, still running
            continue
        server, log, env = _start_server(name, period_frames, timeout_sec)
        if server is not None:
            break
        why_not.append(f"{name}: {log}")
    else:
        pytest.skip(f"no private JACK server came up ({'; '.join(why_not[-2:]) or 'all names in use'})")
    settings = {key: env[key] for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    saved = {key: os.environ.get(key) for key in settings}
    SERVERS[name] = server
    os.environ.update(settings)
    try:
        yield env
    finally:
        SERVERS.pop(name, None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        for leftover in [*Path("/dev/shm").glob(f"jack_{name}_*"), *Path("/dev/shm").glob(f"jack_sem.*_{name}_*")]:
            leftover.unlink(missing_ok=True)  # a server that had to be killed leaves these


#: See ``jack_server``: at most eight can run at once anyway.
SERVER_NAMES = tuple(f"chiptuner-test-{k}" for k in range(8))


def _start_server(name: str, period_frames: int, timeout_sec: float):
    """(jackd process, None, environment) once a client can connect; (None, why, None) if it cannot start."""
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    command = ["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", str(SAMPLE_RATE), "-p", str(period_frames)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        previous = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = name  # the probe connects to this server
        try:
            deadline = time.monotonic() + timeout_sec
            while not _client_answers():
                if server.poll() is not None or time.monotonic() > deadline:
                    if server.poll() is None:
                        server.kill()
                    server.wait(5)
                    log.seek(0)
                    lines = log.read().decode(errors="replace").strip().splitlines()
                    # jackd's last lines are its banner; the reason comes before it.
                    reason = next((line for line in lines if "server" in line.lower() and "jackdmp" not in line), "")
                    return None, reason or (lines[-1] if lines else "no output"), None
                time.sleep(0.05)
        finally:
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous
    return server, None, env


def list_jack_ports() -> tuple[list[str], list[str]]:
    """Ports of the running server: (inputs one can send to, outputs one can listen to)."""
    import rtmidi  # noqa: PLC0415

    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="chiptuner-test-lister")
    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="chiptuner-test-lister")
    try:
        return list(midi_out.get_ports()), list(midi_in.get_ports())
    finally:
        midi_out.delete()
        midi_in.delete()


def find_port(names: Sequence[str], *parts: str) -> int:
    """Index of the one name containing every substring of ``parts``; ValueError for none or several."""
    matches = [i for i, name in enumerate(names) if all(part in name for part in parts)]
    if len(matches) != 1:
        raise ValueError(f"{len(matches)} ports contain {parts!r}: {list(names)}")
    return matches[0]


def engine_ports(*, timeout_sec: float = 5.0) -> tuple[str, str]:
    """The engine's input and output (``chiptuner:in``, ``chiptuner:out``), once both exist."""
    deadline = time.monotonic() + timeout_sec
    while True:
        inputs, outputs = list_jack_ports()
        try:
            return inputs[find_port(inputs, ENGINE_CLIENT, ":in")], outputs[find_port(outputs, ENGINE_CLIENT, ":out")]
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ----------------------------------------------------------------------------- the engine as a process


class LiveProcess:
    """``python -m chiptuner.live`` (or ``python -m tests.jack ...``) running, its stderr read as it comes.

    ``ready_sec`` is the time from the spawn to its "ready" line on stderr.
    """

    def __init__(self, command: Sequence[str], env: dict[str, str] | None) -> None:
        self.began = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.ready_sec = math.nan
        self._ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr_lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            if not self._ready.is_set() and line.startswith("ready in"):
                self.ready_sec = time.perf_counter() - self.began
                self._ready.set()
            lines.append(line)
        if stream is self.process.stderr:
            self._ready.set()  # ended without "ready"

    def wait_ready(self, timeout_sec: float = 60.0) -> LiveProcess:
        if not self._ready.wait(timeout_sec) or math.isnan(self.ready_sec):
            self.stop()
            raise AssertionError(f"{self.process.args[1:4]} never said ready; stderr: {self.stderr!r}")
        return self

    def wait(self, timeout_sec: float) -> int:
        """Its exit code (killed, and TimeoutExpired raised, after ``timeout_sec``)."""
        try:
            code = self.process.wait(timeout_sec)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        for reader in self._readers:
            reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self) -> None:
        """Kill it if it still runs (for a ``finally``)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def start_live(args: Sequence[str], env: dict[str, str] | None, *, timeout_sec: float = 60.0) -> LiveProcess:
    """``python -m chiptuner.live ARGS``, returned once it logged "ready" (AssertionError if it never does)."""
    return LiveProcess([sys.executable, "-m", "chiptuner.live", *args], env).wait_ready(timeout_sec)


# ----------------------------------------------------------------------------- the player


@contextlib.contextmanager
def steady_ears() -> Iterator[None]:
    """No garbage collection, and a 0.5 ms GIL switch interval, in this process for the block.

    A Player's ears are an rtmidi callback that runs in the ears' JACK process thread and
    takes the GIL for every message. A full collection in this process (21-34 ms measured,
    with a flood's messages kept in ``received``), or another thread keeping the GIL for the
    default 5 ms, holds that thread past its cycle, and whatever the engine sent in the cycles
    it missed is never heard: 61 and 93 of a flood run's pulse1 note-ons were lost that way,
    each at a collection. The engine sets the same switch interval for its own JACK thread.
    """
    was_enabled, interval = gc.isenabled(), sys.getswitchinterval()
    gc.collect()
    gc.disable()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if was_enabled:
            gc.enable()


class Player:
    """A keyboard into the engine's input and ears on its output, in this process.

    ``send`` returns the ``time.perf_counter()`` just before the message left; every message
    heard is kept as (perf_counter in rtmidi's callback, message tuple) in ``received``, and
    ``heard`` is set on each note-on of ``watch_channel``.
    """

    def __init__(self, in_port: str, out_port: str, *, name: str = "player", watch_channel: int = 0) -> None:
        import rtmidi  # noqa: PLC0415

        self._out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{name}-keys")
        self._in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{name}-ears")
        self.received: list[tuple[float, tuple[int, ...]]] = []
        self.heard = threading.Event()
        self._watch = 0x90 | watch_channel
        self._in.ignore_types(sysex=False, timing=False, active_sense=False)
        self._in.set_callback(self._arrived)
        self._in.open_port(find_port(self._in.get_ports(), out_port))
        self._out.open_port(find_port(self._out.get_ports(), in_port))
        self._keys_open = True

    def _arrived(self, event, _data=None) -> None:
        message = tuple(event[0])
        self.received.append((time.perf_counter(), message))
        if message[0] == self._watch and len(message) == 3 and message[2] > 0:
            self.heard.set()

    def send(self, message: Sequence[int]) -> float:
        sent = time.perf_counter()
        self._out.send_message(message)
        return sent

    def close_keys(self) -> None:
        """Close the keyboard only: its port disappears, the ears stay."""
        if self._keys_open:
            self._keys_open = False
            self._out.close_port()
            self._out.delete()

    def close(self) -> None:
        """Close both; only once nothing is sent to the ears any more (stop the engine first).

        python-rtmidi closes a JACK client holding the GIL while rtmidi's JACK thread may be
        waiting for the GIL to deliver a message: with traffic, closing can deadlock (see
        ``chiptuner.live.ports.PortInbox``). Cancelling the callback and letting a delivery on its
        way finish narrows that, it does not close it.
        """
        self.close_keys()
        self._in.cancel_callback()
        time.sleep(0.02)
        self._in.close_port()
        self._in.delete()

    def note_ons(
        self, channel: int, since_sec: float = -math.inf, until_sec: float = math.inf
    ) -> list[tuple[float, int]]:
        """(time, pitch) of the note-ons heard on ``channel`` in [since_sec, until_sec)."""
        return [
            (t, m[1])
            for t, m in list(self.received)
            if since_sec <= t < until_sec and len(m) == 3 and m[0] == 0x90 | channel and m[2] > 0
        ]


def answers(
    sent: Sequence[tuple[float, int]],
    heard: Sequence[tuple[float, int]],
    *,
    same_pitch_class: bool = True,
    pitch_range: tuple[int, int] = (0, 127),
) -> list[float]:
    """Per sent (time, pitch): seconds to the first note heard after it (same pitch class, or any
    pitch in ``pitch_range``), before the next note was sent; nan where none came."""
    out = []
    for k, (t, pitch) in enumerate(sent):
        end = sent[k + 1][0] if k + 1 < len(sent) else math.inf
        match = [
            h
            for h, p in heard
            if t <= h < end and (p % 12 == pitch % 12 if same_pitch_class else pitch_range[0] <= p <= pitch_range[1])
        ]
        out.append(match[0] - t if match else math.nan)
    return out


def play_melody(
    player: Player,
    pitches: Sequence[int],
    *,
    start_sec: float | None = None,
    beat_sec: float = 0.5,
    gate: float = 0.8,
    jitter_sec: float = 0.0,
    seed: int = 0,
) -> list[tuple[float, int]]:
    """Play ``pitches`` one a beat from ``start_sec`` (perf_counter; default: now), each a uniform
    ``±jitter_sec`` off the beat, released after ``gate`` of a beat; returns (sent time, pitch)."""
    rng = random.Random(seed)
    start = time.perf_counter() + 0.05 if start_sec is None else start_sec
    sent = []
    for k, pitch in enumerate(pitches):
        sleep_until(start + k * beat_sec + rng.uniform(-jitter_sec, jitter_sec))
        sent.append((player.send((0x90, pitch, 100)), pitch))
        sleep_until(start + (k + gate) * beat_sec)
        player.send((0x80, pitch, 0))
    return sent


def sleep_until(when_sec: float) -> None:
    wait = when_sec - time.perf_counter()
    if wait > 0:
        time.sleep(wait)


def twice_on_a_shared_host(scenario, *args) -> None:
    """Run a timing scenario ``scenario(*args, attempt)``; when an assertion fails, once more (attempt 1).

    Fails only if both runs fail. The dummy JACK driver and PortAudio keep time on a shared
    two-core host, where another process can stall a cycle (an xrun: a pulse lost in
    transit, an audio buffer late). What keeps bad time fails every run; one stall fails one.
    """
    try:
        scenario(*args, 0)
    except AssertionError as first:
        try:
            scenario(*args, 1)
        except AssertionError as second:
            raise AssertionError(f"failed in two runs in a row:\n1: {first}\n2: {second}") from second


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of the finite values; nan for none."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return math.nan
    return finite[min(len(finite) - 1, max(0, math.ceil(q / 100 * len(finite)) - 1))]


# ----------------------------------------------------------------------------- the other processes


def _echo(seconds: float) -> None:
    """The floor of a round trip: one JACK client (``chiptuner:in`` / ``chiptuner:out``) that
    writes each note back, on channel 0, inside the process callback it came in."""
    import jack  # noqa: PLC0415 (the `live` extra)

    client = jack.Client(ENGINE_CLIENT, no_start_server=True)
    inport = client.midi_inports.register("in")
    outport = client.midi_outports.register("out")

    @client.set_process_callback
    def process(frames: int) -> None:
        outport.clear_buffer()
        for offset, buffer in inport.incoming_midi_events():
            data = bytes(buffer)
            if len(data) == 3 and data[0] & 0xF0 in (0x80, 0x90):
                outport.write_midi_event(offset, (data[0] & 0xF0, data[1], data[2]))

    with client:
        print("ready in 0.00 s: bare echo", file=sys.stderr, flush=True)
        time.sleep(seconds)


#: What the flood sends besides notes: malformed, unused and system messages.
GARBAGE = (
    (0x45,),  # a lone data byte
    (0x90,),  # a note-on status without its data
    (0x90, 60),  # half a note-on
    (0xB0, 7),  # half a control change
    (0x93, 200, 100),  # a data byte over 127
    (0xF0, 0x43, 0x99, 0xF7),  # sysex with a status byte inside
    (0xF0, 0x43, 0x10, 0x4C),  # sysex cut short (no 0xF7)
    (0xF7,),  # end of sysex without a start
    (0xF4,),  # undefined system common
    (0xFD,),  # undefined realtime
    (0xFE,),  # active sensing
    (0xF8,),  # clock
    (0xFF,),  # reset
    (0xF2, 5, 0),  # song position
    (0xE0, 0, 64),  # pitch bend (well formed, unused)
    (0xD0, 100),  # channel pressure (well formed, unused)
    (0xB0, 123, 0),  # all notes off (well formed, unused)
)


def _flood(rate: float, seconds: float) -> None:
    """Send ``rate`` messages a second into the engine's input for ``seconds``; print the count each second.

    Of every 20 messages: 14 notes (on and off, random channel, pitch and velocity, never a
    pitch class of ``PROBE_PITCH_CLASSES``), 4 garbage, 2 sysex (6 and 122 bytes).
    """
    import rtmidi  # noqa: PLC0415

    in_port, _ = engine_ports()
    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="flood")
    midi_out.open_port(find_port(midi_out.get_ports(), in_port))
    rng = random.Random(0)
    pitches = [p for p in range(36, 96) if p % 12 not in PROBE_PITCH_CLASSES]
    sysex = ((0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7), (0xF0, 0x43, *(rng.randrange(128) for _ in range(120)), 0xF7))
    batch = max(1, round(rate / 1000))  # a batch every millisecond
    sent, start = 0, time.perf_counter()
    next_report = start + 1.0
    while (now := time.perf_counter()) - start < seconds:
        for k in range(sent, sent + batch):
            kind = k % 20
            if kind < 14:
                channel, pitch = rng.randrange(16), rng.choice(pitches)
                message = (0x90 | channel, pitch, rng.randrange(1, 128)) if kind % 2 else (0x80 | channel, pitch, 0)
            elif kind < 18:
                message = GARBAGE[rng.randrange(len(GARBAGE))]
            else:
                message = sysex[kind & 1]
            midi_out.send_message(message)
        sent += batch
        if now >= next_report:
            print(f"sent {sent} in {now - start:.2f} s", flush=True)
            next_report += 1.0
        sleep_until(start + sent / rate)
    print(f"sent {sent} in {time.perf_counter() - start:.2f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "echo":
        _echo(float(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "flood":
        _flood(float(sys.argv[2]), float(sys.argv[3]))
    else:
        raise SystemExit(f"usage: python -m tests.jack echo SECONDS | flood RATE SECONDS (not {sys.argv[1:]})")


class FrameEars:
    """A JACK client of its own that hears a port with JACK's frame times: the receiving end of MIDI clock.

    Its process callback keeps every event as (frame time of the event, message bytes):
    the cycle's first frame plus the event's offset in it, the time the sender gave the
    event, to the frame. Timing read this way has nothing of Python's scheduling in it.
    """

    def __init__(self, source: str | None = None, *, name: str = "frame-ears") -> None:
        import jack  # noqa: PLC0415

        self.received: list[tuple[int, bytes]] = []
        self._client = jack.Client(name, no_start_server=True)
        self.sample_rate = self._client.samplerate
        self._port = self._client.midi_inports.register("in")
        self._client.set_process_callback(self._process)
        self._client.activate()
        self.port_name = self._port.name
        if source is not None:
            self.connect(source)

    def connect(self, source: str) -> None:
        """Listen to ``source`` too (an output port's full name)."""
        self._client.connect(source, self._port)

    def _process(self, frames: int) -> None:
        start = self._client.last_frame_time
        for offset, data in self._port.incoming_midi_events():
            self.received.append((start + offset, bytes(data)))

    def frames_of(self, status: int) -> list[int]:
        """Frame times of the one-byte-status messages ``status`` (0xF8 clock, 0xFA start, ...) heard."""
        return [frame for frame, data in list(self.received) if data and data[0] == status]

    def close(self) -> None:
        self._client.deactivate()
        self._client.close()
