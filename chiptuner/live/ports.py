"""MIDI ports: listing, opening by name or as virtual ports, clear errors.

Messages cross as raw byte tuples, so the engine never waits for a message object to be
parsed or built. Backends ("APIs"): ``jack`` (a running JACK server, also where there is
no sound hardware: ``jackd -d dummy``) through a JACK client of our own
(``chiptuner.live.jack_midi``, which answers a note in the JACK cycle it came in), and through
python-rtmidi ``alsa`` (Linux desktops), ``coremidi`` (macOS) and ``winmm`` (Windows),
whose input is queued by rtmidi's own thread and polled by ``PortInbox.get``. ``auto``
takes JACK when a JACK server answers, else the platform's own system. Where none works,
as in a container with no ALSA sequencer, ``MidiSystemError`` says so in one line and
names what to use instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass

from chiptuner.errors import MidiSystemError, ParameterError
from chiptuner.live import jack_midi

__all__ = ["MidiSystemError", "PortInbox", "PortOutput", "MidiPorts", "list_ports", "open_ports", "API_CHOICES"]

API_CHOICES = ("auto", "alsa", "jack", "coremidi", "winmm")
#: Name of the JACK/ALSA client the engine's ports belong to.
CLIENT_NAME = "chiptuner"
INSTEAD = (
    "play without MIDI devices with `python -m chiptuner.live --demo`, start a JACK server "
    "(`jackd -d dummy`, then `--midi-api jack`), or load the ALSA sequencer (`modprobe snd-seq`)"
)


def _rtmidi():
    try:
        import rtmidi  # noqa: PLC0415 (optional: the `live` extra)
    except ImportError:
        raise MidiSystemError("MIDI ports need python-rtmidi: pip install 'chiptuner[live]'; or " + INSTEAD) from None
    return rtmidi


def _api_ids(rtmidi) -> dict[str, int]:
    return {
        "alsa": rtmidi.API_LINUX_ALSA,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM,
    }


def _native_api() -> str:
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "winmm"
    return "alsa"


def _make(kind: str, api: str, client: str):
    """An rtmidi MidiIn/MidiOut on ``api``; MidiSystemError when that system does not answer."""
    rtmidi = _rtmidi()
    if api not in API_CHOICES or api in ("auto", "jack"):
        raise ParameterError(f"MIDI API is {api!r}; use one of {', '.join(API_CHOICES)}")
    api_id = _api_ids(rtmidi)[api]
    if api_id not in rtmidi.get_compiled_api():
        raise MidiSystemError(f"this python-rtmidi was built without {api} support; " + INSTEAD)
    try:
        with jack_midi.quiet_stderr():
            if kind == "in":
                return rtmidi.MidiIn(api_id, name=client, queue_size_limit=4096)
            return rtmidi.MidiOut(api_id, name=client)
    except (SystemError, RuntimeError, rtmidi.RtMidiError) as error:
        raise MidiSystemError(f"the {api} MIDI system is not available ({str(error).strip()}); " + INSTEAD) from None


def _resolve_api(api: str) -> str:
    if api != "auto":
        return api
    if os.environ.get("JACK_DEFAULT_SERVER") or _jack_answers():
        return "jack"
    return _native_api()


def _jack_answers() -> bool:
    previous = os.environ.get("JACK_NO_START_SERVER")
    os.environ["JACK_NO_START_SERVER"] = "1"  # probing must not start a server
    try:
        return jack_midi.jack_answers()
    except MidiSystemError:  # no JACK-Client or no libjack: no JACK here
        return False
    finally:
        if previous is None:
            os.environ.pop("JACK_NO_START_SERVER", None)
        else:
            os.environ["JACK_NO_START_SERVER"] = previous


def _jack(call, *args):
    """A call into chiptuner.live.jack_midi, its MidiSystemError completed with what to do instead."""
    try:
        return call(*args)
    except MidiSystemError as error:
        raise MidiSystemError(f"{error}; " + INSTEAD) from None


def list_ports(api: str = "auto") -> tuple[str, list[str], list[str]]:
    """The API used, and the names of the input and output ports it offers."""
    chosen = _resolve_api(api)
    if chosen == "jack":
        return (chosen, *_jack(jack_midi.jack_ports))
    midi_in, midi_out = _make("in", chosen, f"{CLIENT_NAME}-list"), _make("out", chosen, f"{CLIENT_NAME}-list")
    try:
        return chosen, list(midi_in.get_ports()), list(midi_out.get_ports())
    finally:
        midi_in.delete()
        midi_out.delete()


def _find(names: list[str], wanted: str, direction: str, api: str) -> int:
    matches = [i for i, name in enumerate(names) if wanted.lower() in name.lower()]
    if not matches:
        offered = ", ".join(repr(n) for n in names) or "none"
        raise MidiSystemError(f"no {api} MIDI {direction} port matches {wanted!r} (ports: {offered}); see --list-ports")
    return matches[0]


class PortInbox:
    """An input port, polled: ``get`` takes the next message from rtmidi's own queue.

    Polling, not rtmidi's callback: closing a JACK client while its thread waits for the
    GIL to deliver a callback deadlocks (python-rtmidi closes with the GIL held), which a
    flood of input at exit made happen one time in three. A poll every half millisecond
    costs about 5% of a core and no latency (an answer leaves on the next JACK period).
    """

    POLL_SEC = 0.0005

    def __init__(self, midi_in, name: str) -> None:
        self._midi_in = midi_in
        self.name = name
        midi_in.ignore_types(sysex=False, timing=False, active_sense=True)

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message, waiting at most ``timeout_sec``; None when none came."""
        deadline = time.perf_counter() + max(timeout_sec, 0.0)
        while True:
            event = self._midi_in.get_message()
            if event is not None:
                return tuple(event[0])
            now = time.perf_counter()
            if now >= deadline:
                return None
            time.sleep(min(self.POLL_SEC, deadline - now))

    def close(self) -> None:
        """Close the port."""
        self._midi_in.close_port()
        self._midi_in.delete()


def _new_port(before: set[str], after: list[str], fallback: str) -> str:
    """The name the system gave the port just opened (JACK may rename the client), else ``fallback``."""
    new = [name for name in after if name not in before]
    return new[0] if len(new) == 1 else fallback


class PortOutput:
    """An output port; ``send`` takes a raw message tuple."""

    def __init__(self, midi_out, name: str) -> None:
        self._midi_out = midi_out
        self.name = name

    def send(self, message: tuple[int, ...]) -> None:
        """Send one message now."""
        self._midi_out.send_message(message)

    def close(self) -> None:
        """Close the port."""
        self._midi_out.close_port()
        self._midi_out.delete()


@dataclass
class MidiPorts:
    """The engine's open input and output, and the API they are on."""

    api: str
    inbox: PortInbox | jack_midi.JackInbox
    output: PortOutput | jack_midi.JackOutput

    def summary(self) -> str | None:
        """A line about the ports' health for the end of a session (JACK: xruns, late answers), or None."""
        return self.inbox.client.summary() if isinstance(self.inbox, jack_midi.JackInbox) else None

    def close(self) -> None:
        """Close both ports (idempotent enough for a ``finally``)."""
        for port in (self.inbox, self.output):
            with contextlib.suppress(Exception):
                port.close()


def open_ports(in_name: str | None = None, out_name: str | None = None, *, api: str = "auto") -> MidiPorts:
    """Open the engine's input and output.

    Parameters
    ----------
    in_name, out_name : str, optional
        Substring of an existing port's name (case-insensitive, first match); None opens
        a virtual port, ``chiptuner:in`` / ``chiptuner:out``. On JACK both always exist
        (one client) and a named port is connected to them.
    api : {"auto", "alsa", "jack", "coremidi", "winmm"}

    Raises
    ------
    MidiSystemError
        No MIDI system, or no port of that name: one line, with what to do instead.
    """
    if api not in API_CHOICES:
        raise ParameterError(f"MIDI API is {api!r}; use one of {', '.join(API_CHOICES)}")
    chosen = _resolve_api(api)
    if chosen == "jack":
        return _open_jack(in_name, out_name)
    midi_in = _make("in", chosen, CLIENT_NAME)
    midi_out = _make("out", chosen, CLIENT_NAME)
    try:
        if in_name is None:
            before = set(midi_out.get_ports())
            midi_in.open_virtual_port("in")
            inbox_name = _new_port(before, midi_out.get_ports(), f"{CLIENT_NAME}:in")
        else:
            index = _find(midi_in.get_ports(), in_name, "input", chosen)
            inbox_name = midi_in.get_ports()[index]
            midi_in.open_port(index, name="in")
        if out_name is None:
            before = set(midi_in.get_ports())
            midi_out.open_virtual_port("out")
            output_name = _new_port(before, midi_in.get_ports(), f"{CLIENT_NAME}:out")
        else:
            index = _find(midi_out.get_ports(), out_name, "output", chosen)
            output_name = midi_out.get_ports()[index]
            midi_out.open_port(index, name="out")
    except MidiSystemError:
        midi_in.delete()
        midi_out.delete()
        raise
    except NotImplementedError:
        midi_in.delete()
        midi_out.delete()
        raise MidiSystemError(f"{chosen} has no virtual ports; name existing ones with --in and --out") from None
    return MidiPorts(chosen, PortInbox(midi_in, inbox_name), PortOutput(midi_out, output_name))


def _open_jack(in_name: str | None, out_name: str | None) -> MidiPorts:
    sources, sinks = _jack(jack_midi.jack_ports)
    # Looked up before our own ports exist, so a name never matches them. (A second chiptuner
    # gets a client name of JACK's choosing, "chiptuner-01"; the port names kept are the real ones.)
    source = sources[_find(sources, in_name, "input", "jack")] if in_name is not None else None
    sink = sinks[_find(sinks, out_name, "output", "jack")] if out_name is not None else None
    client = _jack(jack_midi.JackMidi, CLIENT_NAME)
    try:
        client.connect(source, sink)
    except MidiSystemError:
        client.close()
        raise
    if source is not None:
        client.inbox.name = source
    if sink is not None:
        client.output.name = sink
    return MidiPorts("jack", client.inbox, client.output)
