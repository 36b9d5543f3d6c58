"""``python -m chiptuner.live --web``: play in the browser, hear the band from a WebAudio chip synth.

The second front end of ``chiptuner.engine`` (the terminal one is ``chiptuner.live``). One
process serves a local page and a WebSocket on one port (so they share one origin):

- the page turns the computer keyboard (a piano layout, or five buttons), or a MIDI
  keyboard through WebMIDI, into note messages;
- the server queues them as raw MIDI tuples for the engine, which runs on its own thread
  with ``time.perf_counter`` as its clock, exactly as in the terminal mode;
- every message the engine plays goes back to the page(s) as JSON, batched per wake-up of
  the event loop; the page plays it at once on its own chip synth (pulse with duty,
  triangle, LFSR noise) and draws it on a scrolling piano roll.

The WebSocket protocol (JSON text frames, UTF-8)
------------------------------------------------
Page -> server (each at most ``MAX_MESSAGE_BYTES``):

- ``{"type": "note", "pitch": 0-127, "on": true|false, "velocity": 1-127, "id": int}``
  (``velocity`` and ``id`` optional; ``id`` is the page's key-event number, echoed on the
  pulse1 note it starts, for the page's latency figure; in 5-button mode the page sends
  the lane notes ``LANE_NOTES``);
- ``{"type": "settings", "bpm": 20-400, "mode": "keys"|"buttons", "temperature": 0.05-10,
  "metronome": bool, "seed": int >= 0, "style": one of the hello's "styles", "energy":
  "low"|"mid"|"high", "voices": [any of "pulse2", "triangle", "noise"]}`` (any subset): with
  only style, energy and voices the running arranger takes them at its next step and the
  take plays on (a voice left out rests in the model); otherwise the engine restarts with them;
- ``{"type": "record", "on": bool}``: on starts a new take (a fresh recording), off stops
  recording (the take stays downloadable);
- ``{"type": "ping", "id": int}``.

Server -> page:

- ``hello`` on connect: settings, recording, voices, the model's styles, the energy levels,
  lane notes, the synth's duty cycles and drum table, limits;
- ``notes``: ``{"type": "notes", "events": [{"voice": "pulse1"|"pulse2"|"triangle"|"noise"|
  "click", "pitch": int, "on": bool, "step": int, "time_sec": float, "key_id": int}]}``
  (``key_id`` only on a pulse1 note-on started by a page note with an ``id``; a duty change
  is ``{"voice", "duty": 0.125-0.75}``, an all-notes-off ``{"voice", "all_off": true}``);
- ``settings`` and ``record`` (to every page) after a change; ``pong``;
- ``error``: ``{"type": "error", "code": ..., "message": ...}`` for a malformed, unknown,
  out-of-range or oversized message. The connection stays open.

HTTP: ``/`` (the page), ``/app.js``, ``/roll.js``, ``/style.css``, ``/session.mid``, ``/session.wav``.
Each download is made once per state of the take (on one render thread of its own, never
the threads that settings changes use) and kept until the take changes; at most
``MAX_WAITING_DOWNLOADS`` requests wait for it, more get 503 with Retry-After.

Security: the server listens on 127.0.0.1 unless ``--host`` says otherwise. Every request
must name an allowed Host (loopback names, the bound host, or with a wildcard bind an IP
literal), which defeats DNS rebinding; the WebSocket handshake must come with the Origin
of that same host (``http://HOST:PORT``), else it is refused with 403 before it opens, so a
page the user visits elsewhere can neither drive nor read the session. The downloads are
refused with 403 (before anything is made) to a request whose ``Sec-Fetch-Site`` is not
``OWN_SITES``: an ``<audio src>`` on another site's page, another port of 127.0.0.1 included,
cannot play the recording. Every response also carries ``Cross-Origin-Resource-Policy:
same-origin``, so a browser hands none of them to another origin's page.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import http
import io
import ipaddress
import json
import logging
import math
import queue
import signal
import socket
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, get_args

from chiptuner.chip_midi import VOICE_VELOCITY
from chiptuner.engine import METRONOME_CHANNEL, ButtonMap, Engine, EngineReport, FixedTempo, Recorder
from chiptuner.errors import ChiptunerError, ParameterError
from chiptuner.model import (
    ACCOMPANIMENT,
    ENERGY_LEVELS,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    TEMPERATURE_RANGE,
    Arranger,
    ArrangerModel,
    InputMode,
    energy_index,
    load_model,
    parse_voices,
    style_index,
    warmup,
)
from chiptuner.session import session_audio, session_midi, write_session
from chiptuner.synth import DRUM_TABLE, DUTY_CYCLES, write_wav
from chiptuner.synth import warmup as synth_warmup
from chiptuner.types import VOICE_NAMES
from chiptuner.voices import DRUM_KEYS

try:  # optional: the `live` extra
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response
except ImportError:
    serve = None

__all__ = [
    "Settings",
    "MessageError",
    "PageInbox",
    "PageOutput",
    "EngineRunner",
    "WebServer",
    "parse_message",
    "run",
    "LANE_NOTES",
    "MAX_MESSAGE_BYTES",
    "MAX_WAITING_DOWNLOADS",
    "DEFAULT_PORT",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
#: The notes of lanes 0-4 in 5-button mode (the page sends these; C D E F G).
LANE_NOTES = (60, 62, 64, 65, 67)
#: Largest message the server reads; a longer one gets an error reply.
MAX_MESSAGE_BYTES = 4096
#: websockets' own frame limit, larger than ours so that an oversized message is answered
#: (beyond this the library closes that connection with 1009; the server goes on).
WS_MAX_SIZE = 1 << 20
#: Notes waiting for the engine beyond this are refused ("busy") instead of queued.
MAX_BACKLOG = 1024
#: Largest ``id`` a page may send (JavaScript's safe integers).
MAX_ID = 2**53 - 1
#: Downloads that may wait for a session file to be made (one at a time); more get 503 with
#: Retry-After, so a burst of requests holds neither memory nor threads.
MAX_WAITING_DOWNLOADS = 4
#: ``Sec-Fetch-Site`` values that may read the session: the page itself ("same-origin") and
#: the user's own address bar or bookmark ("none"). Browsers send the header with every
#: request, so one without it comes from no browser (curl, a script on this machine: the
#: Host check still applies) and is served too; another site's page gets 403, another port
#: of 127.0.0.1 included ("same-site").
OWN_SITES = ("same-origin", "none")
#: Download path -> content type.
SESSION_FILES = {"/session.mid": "audio/midi", "/session.wav": "audio/wav"}
ASSETS = Path(__file__).resolve().parent / "webpage"
#: Path -> (file in ASSETS, content type).
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/roll.js": ("roll.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
#: The page loads nothing from anywhere else and cannot be framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

_NOTE_OFF, _NOTE_ON, _CONTROL = 0x80, 0x90, 0xB0
_CHANNEL_VOICE = {channel: name for channel, name in enumerate(VOICE_NAMES)}
_CHANNEL_VOICE[METRONOME_CHANNEL] = "click"


# ----------------------------------------------------------------------------- messages


class MessageError(ParameterError):
    """A page's message that cannot be taken; ``code`` names the kind for the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    """What the page can change.

    A change of ``LIVE_SETTINGS`` alone reaches the running arranger between two steps;
    any other restarts the engine with them all. ``style`` None is the model's default
    (``EngineRunner`` names it); whether a style is the model's is checked by the arranger,
    the rest here.
    """

    bpm: float = 120.0
    mode: InputMode = "keys"
    temperature: float = 1.0
    metronome: bool = False
    seed: int = 0
    style: str | None = None
    energy: str = "mid"
    voices: tuple[str, ...] = ACCOMPANIMENT

    def changed(self, fields: dict[str, Any]) -> Settings:
        """These settings with ``fields`` changed, each checked; MessageError names a bad one."""
        values = {}
        for name, value in fields.items():
            if name == "bpm":
                values[name] = _number(name, value, 20.0, 400.0, "a tempo from 20 to 400 BPM")
            elif name == "temperature":
                values[name] = _number(
                    name, value, MIN_TEMPERATURE, MAX_TEMPERATURE, f"a temperature {TEMPERATURE_RANGE}"
                )
            elif name == "mode":
                if value not in get_args(InputMode):
                    raise MessageError("bad_value", f"mode is {value!r}; use one of {list(get_args(InputMode))}")
                values[name] = value
            elif name == "metronome":
                values[name] = _flag(name, value)
            elif name == "seed":
                values[name] = _integer(name, value, 0, 2**31 - 1)
            elif name == "style":
                if not isinstance(value, str) or not value:
                    raise MessageError("bad_value", f"style is {value!r}; give the name of one of the model's styles")
                values[name] = value
            elif name == "energy":
                _choice(energy_index, value)
                values[name] = value
            elif name == "voices":
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise MessageError("bad_value", f"voices is {value!r}; give a list of {list(ACCOMPANIMENT)}")
                values[name] = _choice(parse_voices, value)
            else:
                raise MessageError("bad_value", f"unknown setting {name!r}; settings are {_SETTING_NAMES}")
        return replace(self, **values)


_SETTING_NAMES = ["bpm", "mode", "temperature", "metronome", "seed", "style", "energy", "voices"]
#: Settings the running arranger takes between two steps (``Engine.set_settings``), without a restart.
LIVE_SETTINGS = frozenset({"style", "energy", "voices"})
#: Fields of each message type (besides "type"), and which are required.
_FIELDS = {
    "note": ({"pitch", "on"}, {"velocity", "id"}),
    "settings": (set(), set(_SETTING_NAMES)),
    "record": ({"on"}, set()),
    "ping": (set(), {"id"}),
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(name: str, value: object, low: float, high: float, what: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or value > high or value < low:
        raise MessageError("bad_value", f"{name} is {value!r}; give {what}")
    return float(value)


def _integer(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MessageError("bad_value", f"{name} is {value!r}; give a whole number from {low} to {high}")
    return value


def _choice(check: Callable[[Any], Any], value: object) -> Any:
    """``check(value)`` (a ``chiptuner.model`` check whose ParameterError names the choices) as a bad_value."""
    try:
        return check(value)
    except ParameterError as error:
        raise MessageError("bad_value", str(error)) from None


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise MessageError("bad_value", f"{name} is {value!r}; give true or false")
    return value


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_message(data: str | bytes) -> dict[str, Any]:
    """Check one message from a page and return it as a dict with checked values.

    Parameters
    ----------
    data : str or bytes
        A WebSocket frame as received (bytes for a binary frame).

    Returns
    -------
    dict
        ``type`` and the fields of that type (see the module notes), ``note`` with
        ``velocity`` (default 100) and ``id`` (default -1) filled in.

    Raises
    ------
    MessageError
        With ``code`` ``"binary"``, ``"too_big"``, ``"bad_json"``, ``"unknown_type"`` or
        ``"bad_value"``, and a message naming the bad value.
    """
    if not isinstance(data, str):
        raise MessageError("binary", "binary frames are not part of the protocol; send JSON text")
    if len(data) > MAX_MESSAGE_BYTES or len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise MessageError("too_big", f"message of {len(data.encode('utf-8', 'surrogatepass'))} bytes; "
                                      f"the limit is {MAX_MESSAGE_BYTES}")  # fmt: skip
    try:
        message = json.loads(data, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:
        raise MessageError("bad_json", f"not JSON ({str(error)[:80]})") from None
    if not isinstance(message, dict):
        raise MessageError("bad_json", f"a message is a JSON object with a 'type', not {type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise MessageError("unknown_type", f"message type {kind!r}; use one of {sorted(_FIELDS)}")
    required, optional = _FIELDS[kind]
    fields = {key: value for key, value in message.items() if key != "type"}
    missing = required - fields.keys()
    if missing:
        raise MessageError("bad_value", f"{kind} message without {sorted(missing)}")
    unknown = fields.keys() - required - optional
    if unknown:
        raise MessageError("bad_value", f"{kind} message with unknown fields {sorted(unknown)}")
    if kind == "note":
        return {
            "type": kind,
            "pitch": _integer("pitch", fields["pitch"], 0, 127),
            "on": _flag("on", fields["on"]),
            "velocity": _integer("velocity", fields.get("velocity", 100), 1, 127),
            "id": _integer("id", fields.get("id", -1), -1, MAX_ID),
        }
    if kind == "settings":
        Settings().changed(fields)  # checks every field
        return {"type": kind, **fields}
    if kind == "record":
        return {"type": kind, "on": _flag("on", fields["on"])}
    return {"type": kind, "id": _integer("id", fields.get("id", 0), 0, MAX_ID)}


def _error_reply(error: MessageError) -> str:
    return json.dumps({"type": "error", "code": error.code, "message": str(error)})


# ----------------------------------------------------------------------------- engine side


class PageInbox:
    """The engine's inbox: the pages' notes, queued by the server's thread (as ``ports.PortInbox``).

    Each queued message carries the page's key-event id; ``key_id`` is the id of the message
    the engine took last (-1 for none), which ``PageOutput`` attaches to the lead it starts.
    Only the engine's thread calls ``get`` and reads ``key_id``.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[tuple[int, ...], int]] = queue.SimpleQueue()
        self.key_id = -1

    def put(self, message: tuple[int, ...], key_id: int = -1) -> None:
        """Queue one raw MIDI message (any thread)."""
        self._queue.put((message, key_id))

    def wake(self) -> None:
        """Wake a waiting ``get`` (an empty message, which the engine ignores)."""
        self._queue.put(((), -1))

    def backlog(self) -> int:
        """Messages waiting."""
        return self._queue.qsize()

    def get(self, timeout_sec: float) -> tuple[int, ...] | None:
        """The next message, waiting at most ``timeout_sec``; None when none came."""
        try:
            if timeout_sec <= 0:
                message, self.key_id = self._queue.get_nowait()
            else:
                message, self.key_id = self._queue.get(timeout=timeout_sec)
        except queue.Empty:
            self.key_id = -1
            return None
        return message


class PageOutput:
    """An engine output that sends what the band plays to the pages.

    ``send`` runs on the engine's thread: it queues the message with the step, the time and
    the key id, and asks ``schedule`` (``loop.call_soon_threadsafe``) once per batch for a
    flush. The flush runs on the event loop: it turns the batch into JSON events and hands
    them to ``deliver``.

    Parameters
    ----------
    schedule : callable
        ``schedule(callback)`` runs ``callback()`` soon on the event loop's thread.
    deliver : callable
        ``deliver(events)`` with a list of JSON-ready dicts, on the event loop's thread.
    inbox : PageInbox
        Where the key id of the message being played comes from.
    clock : callable
        Seconds, the engine's clock; ``time_sec`` counts from ``origin_sec``.
    """

    def __init__(
        self,
        schedule: Callable[[Callable[[], None]], object],
        deliver: Callable[[list[dict[str, Any]]], None],
        inbox: PageInbox,
        *,
        clock: Callable[[], float] = time.perf_counter,
        origin_sec: float = 0.0,
    ) -> None:
        self._schedule = schedule
        self._deliver = deliver
        self._inbox = inbox
        self._clock = clock
        self.origin_sec = origin_sec
        self._pending: collections.deque[tuple[tuple[int, ...], int, float, int]] = collections.deque()
        self._scheduled = False
        self.engine: Engine | None = None

    def send(self, message: tuple[int, ...]) -> None:
        """Queue one message for the pages (the engine's thread)."""
        key_id = -1
        if message[0] == _NOTE_ON and self._inbox.key_id >= 0:  # pulse1's note-on: the lead of that key
            key_id, self._inbox.key_id = self._inbox.key_id, -1
        step = self.engine.step_index if self.engine is not None else 0
        self._pending.append((message, step, self._clock() - self.origin_sec, key_id))
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self._flush)

    def _flush(self) -> None:
        # Cleared before draining: whatever is queued after the drain schedules a new flush.
        self._scheduled = False
        events = []
        while self._pending:
            event = _event(*self._pending.popleft())
            if event is not None:
                events.append(event)
        if events:
            self._deliver(events)


def _event(message: tuple[int, ...], step: int, time_sec: float, key_id: int) -> dict[str, Any] | None:
    """One engine message as the page's event (None for what the page has no use for)."""
    status = message[0]
    kind, channel = status & 0xF0, status & 0x0F
    voice = _CHANNEL_VOICE.get(channel)
    if voice is None:
        return None
    event: dict[str, Any] = {"voice": voice, "step": step, "time_sec": round(time_sec, 6)}
    if kind == _NOTE_ON and message[2] > 0:
        event.update(pitch=message[1], on=True)
        if key_id >= 0:
            event["key_id"] = key_id
    elif kind in (_NOTE_ON, _NOTE_OFF):
        event.update(pitch=message[1], on=False)
    elif kind == _CONTROL and message[1] == 1:
        event["duty"] = DUTY_CYCLES[min(message[2] // 32, 3)]
    elif kind == _CONTROL and message[1] == 123:
        event["all_off"] = True
    else:
        return None
    return event


class EngineRunner:
    """The engine on its own thread, restarted with new settings; the session's recording.

    Parameters
    ----------
    model : ArrangerModel
        Loaded once; each (re)start makes a fresh ``Arranger`` from it.
    settings : Settings
        Kept as ``settings``, a ``style`` of None named (the model's default).
    outputs : sequence
        The engine's outputs (a ``PageOutput``; its ``engine`` is kept pointing at the
        running engine).
    inbox : PageInbox
    grace_sec : float
    record : bool
        Record from the start (the page can start a new take or stop).
    """

    def __init__(
        self,
        model: ArrangerModel,
        settings: Settings,
        *,
        inbox: PageInbox,
        outputs: Iterable[Any] = (),
        grace_sec: float = 0.04,
        record: bool = True,
    ) -> None:
        self.model = model
        self.settings = settings
        self.inbox = inbox
        self.outputs = list(outputs)
        self.grace_sec = grace_sec
        self.recording = record
        # The take's number and its recording, swapped as one so that a reader never pairs
        # one take's number with another's recording.
        self._take = (0, Recorder())
        # "mid" / "wav" -> ((take, events recorded, tempo), the file): one copy per kind.
        self._files: dict[str, tuple[tuple[int, int, float], bytes]] = {}
        self.reports: list[EngineReport] = []
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        arranger = self._make(settings).arranger  # bad settings fail here, before anything runs
        self.settings = replace(settings, style=arranger.style, voices=arranger.voices)

    @property
    def recorder(self) -> Recorder:
        """The current take's recording."""
        return self._take[1]

    def _arranger(self, settings: Settings) -> Arranger:
        return Arranger(
            self.model, mode=settings.mode, temperature=settings.temperature, seed=settings.seed,
            style=settings.style, energy=settings.energy, voices=settings.voices,
        )  # fmt: skip

    def _make(self, settings: Settings) -> Engine:
        engine = Engine(
            self._arranger(settings), clock=time.perf_counter, inbox=self.inbox, outputs=self.outputs,
            tempo=FixedTempo(settings.bpm), recorder=self.recorder if self.recording else None,
            grace_sec=self.grace_sec, buttons=ButtonMap(LANE_NOTES) if settings.mode == "buttons" else None,
            metronome=settings.metronome,
        )  # fmt: skip
        for output in self.outputs:
            if isinstance(output, PageOutput):
                output.engine = engine
        return engine

    @property
    def running(self) -> bool:
        """Whether the engine's thread is playing."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the engine with the current settings (any thread; no-op when running)."""
        with self._lock:
            if not self.running:
                self._start()

    def _start(self) -> None:
        engine = self._make(self.settings)
        self._engine = engine
        self._thread = threading.Thread(target=self._play, args=(engine,), name="chiptuner-engine", daemon=True)
        self._thread.start()

    def _play(self, engine: Engine) -> None:
        self.reports.append(engine.run())

    def _stop(self) -> None:
        if self._engine is not None and self._thread is not None:
            self._engine.stop()
            self.inbox.wake()
            self._thread.join()
        self._engine = self._thread = None

    def stop(self) -> EngineReport | None:
        """Stop the engine (it silences the band first); the last run's report."""
        with self._lock:
            self._stop()
        return self.reports[-1] if self.reports else None

    def restart(self, settings: Settings | None = None, *, new_take: bool = False, record: bool | None = None) -> None:
        """Play on with new settings, a fresh recording (``new_take``) or recording on/off.

        Settings the arranger refuses raise ``ParameterError`` before the engine stops.
        """
        if settings is not None:
            self._arranger(settings)
        with self._lock:
            was_running = self.running
            self._stop()
            if settings is not None:
                self.settings = settings
            if new_take:
                self._take = (self._take[0] + 1, Recorder())
                self._files = {}  # the old take's files go with it
            if record is not None:
                self.recording = record
            if was_running:
                self._start()

    def apply(self, settings: Settings) -> None:
        """Give the running take's arranger new ``LIVE_SETTINGS`` (style, energy, voices): no restart, no new take.

        The engine takes them at its next step (``Engine.set_settings``); a value the
        arranger refuses raises ``ParameterError`` and changes nothing.
        """
        with self._lock:
            if self._engine is not None:
                self._engine.set_settings(style=settings.style, energy=settings.energy, voices=settings.voices)
            else:
                self._arranger(settings)  # checks them for the next start
            self.settings = settings

    def _file_key(self, kind: str) -> tuple[tuple[int, int, float], Recorder]:
        number, recorder = self._take
        return (number, recorder.count, self.settings.bpm if kind == "mid" else 0.0), recorder

    def kept_session_file(self, kind: str) -> bytes | None:
        """The ``session_file`` already made for the recording as it is now, else None (any thread)."""
        key, _ = self._file_key(kind)
        kept = self._files.get(kind)
        return kept[1] if kept is not None and kept[0] == key else None

    def session_file(self, kind: str) -> bytes:
        """The recording as session.mid (``"mid"``, ``session.session_midi``) or session.wav (``"wav"``).

        Made once and kept until the take changes (a new take, more recorded, or for the MIDI
        file another tempo): one copy of each, however many pages ask. The web server calls
        this on its one render thread, so two never render at once.
        """
        kept = self.kept_session_file(kind)
        if kept is not None:
            return kept
        key, recorder = self._file_key(kind)
        body = _midi_bytes(recorder, bpm=key[2]) if kind == "mid" else _wav_bytes(recorder)
        if self._take[1] is recorder:  # else a new take began meanwhile: keep nothing of the old one
            self._files[kind] = (key, body)
        return body


def _midi_bytes(recorder: Recorder, *, bpm: float) -> bytes:
    buffer = io.BytesIO()
    session_midi(recorder, bpm=bpm).save(file=buffer)
    return buffer.getvalue()


def _wav_bytes(recorder: Recorder) -> bytes:
    """The recording through the chip synth as a 16-bit WAV file (``session.session_audio``)."""
    audio = session_audio(recorder)
    with tempfile.TemporaryDirectory(prefix="chiptuner-web-") as folder:
        path = Path(folder) / "session.wav"
        write_wav(path, audio)
        return path.read_bytes()


# ----------------------------------------------------------------------------- server side


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def _split_host(hostport: str) -> tuple[str, int | None]:
    """``"127.0.0.1:8765"`` -> ("127.0.0.1", 8765); ``"[::1]:80"`` -> ("[::1]", 80); port None if absent."""
    host, _, port = hostport.rpartition(":")
    if not host or (hostport.startswith("[") and not host.endswith("]")):
        return hostport.lower(), None
    try:
        return host.lower(), int(port)
    except ValueError:
        return hostport.lower(), None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class WebServer:
    """The page, its assets, the downloads and the WebSocket on one port.

    Parameters
    ----------
    runner : EngineRunner
    host : str
        Where to listen (127.0.0.1 by default; anything else can be reached by others).
    port : int
        0 picks a free port (``port`` holds the chosen one after ``start``).
    """

    def __init__(self, runner: EngineRunner, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.clients: set[ServerConnection] = set()
        self._server: Any = None
        self._settings_lock: asyncio.Lock | None = None
        self._assets = {path: ((ASSETS / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}
        # Downloads are made here, one at a time, not on the default executor: settings
        # changes run there and must not queue behind renders of a long take (seconds each),
        # and renders side by side would each hold a copy of the audio.
        self._renders = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="chiptuner-render")
        self._waiting_downloads = 0  # requests waiting for a render (the event loop's thread only)

    @property
    def url(self) -> str:
        """The page's address."""
        host = self.host if not _is_wildcard(self.host) else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def start(self) -> str:
        """Listen; returns the page's URL."""
        _need_websockets()
        self._settings_lock = asyncio.Lock()
        try:
            self._server = await serve(
                self._handler, self.host or None, self.port, process_request=self._process_request,
                max_size=WS_MAX_SIZE, compression=None, ping_interval=20, server_header=None,
            )  # fmt: skip
        except OSError as error:
            raise ParameterError(
                f"cannot listen on {self.host}:{self.port} ({error.strerror or error}); "
                "pick another --port (0 takes any free one)"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._renders.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ origin

    def host_allowed(self, hostport: str) -> bool:
        """Whether a request's Host header names this server (a foreign name is DNS rebinding)."""
        host, port = _split_host(hostport.strip())
        if port != self.port:
            return False
        bound = self.host.lower()
        if _is_wildcard(bound):
            return host in LOOPBACK_NAMES or _is_ip_literal(host) or host == socket.gethostname().lower()
        if host == bound or (":" in bound and host == f"[{bound}]"):
            return True
        return _is_loopback(bound) and host in LOOPBACK_NAMES

    def origin_allowed(self, origin: str | None, hostport: str) -> bool:
        """Whether a WebSocket handshake comes from this server's own page."""
        return origin is not None and self.host_allowed(hostport) and origin.lower() == f"http://{hostport.lower()}"

    # ------------------------------------------------------------------ HTTP

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        hosts = request.headers.get_all("Host")
        if len(hosts) != 1 or not self.host_allowed(hosts[0]):
            return _response(http.HTTPStatus.FORBIDDEN, b"unknown Host\n")
        hostport = hosts[0]
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            origins = request.headers.get_all("Origin")
            origin = origins[0] if len(origins) == 1 else None
            if not self.origin_allowed(origin, hostport):
                logger.warning("refused a WebSocket from origin %r", ", ".join(origins) if origins else None)
                return _response(http.HTTPStatus.FORBIDDEN, b"this session only talks to its own page\n")
            return None  # the handshake goes on
        if path in self._assets:
            body, kind = self._assets[path]
            return _response(http.HTTPStatus.OK, body, kind)
        if path in SESSION_FILES:
            return await self._download(request, path)
        return _response(http.HTTPStatus.NOT_FOUND, b"not found\n")

    async def _download(self, request: Request, path: str) -> Response:
        """session.mid or .wav for this page or the address bar only; made at most once per state of the take."""
        sites = request.headers.get_all("Sec-Fetch-Site")
        if len(sites) > 1 or (sites and sites[0] not in OWN_SITES):
            logger.warning("refused %s to a %s request", path, ", ".join(sites))
            return _response(http.HTTPStatus.FORBIDDEN, b"the session is only for this page and your address bar\n")
        kind = path.rsplit(".", 1)[1]
        body = self.runner.kept_session_file(kind)
        if body is None:
            if self._waiting_downloads >= MAX_WAITING_DOWNLOADS:
                busy = _response(http.HTTPStatus.SERVICE_UNAVAILABLE, b"busy making the session file; try again\n")
                busy.headers["Retry-After"] = "1"
                return busy
            self._waiting_downloads += 1
            try:
                body = await asyncio.get_running_loop().run_in_executor(self._renders, self.runner.session_file, kind)
            finally:
                self._waiting_downloads -= 1
        return _response(http.HTTPStatus.OK, body, SESSION_FILES[path], attachment=path[1:])

    # ------------------------------------------------------------------ WebSocket

    def hello(self) -> dict[str, Any]:
        """The first message to a page: the state and what its synth needs."""
        drums = {str(int(key)): [float(x) for x in DRUM_TABLE[int(key)]] for key in DRUM_KEYS}
        return {
            "type": "hello",
            "settings": asdict(self.runner.settings),
            "recording": self.runner.recording,
            "voices": list(VOICE_NAMES),
            "styles": list(self.runner.model.styles),
            "energy_levels": list(ENERGY_LEVELS),
            "velocity": VOICE_VELOCITY,
            "lane_notes": list(LANE_NOTES),
            "duty_cycles": list(DUTY_CYCLES),
            "drums": drums,  # key -> [LFSR clock Hz, short mode, decay s to -60 dB, gain]
            "max_message_bytes": MAX_MESSAGE_BYTES,
        }

    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Send a batch of the band's events to every page (the event loop's thread)."""
        if self.clients:
            broadcast(self.clients, json.dumps({"type": "notes", "events": events}, separators=(",", ":")))

    def _tell_all(self, message: dict[str, Any]) -> None:
        broadcast(self.clients, json.dumps(message))

    async def _handler(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        try:
            await connection.send(json.dumps(self.hello()))
            async for data in connection:
                reply = await self._take(data)
                if reply is not None:
                    await connection.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(connection)

    async def _take(self, data: str | bytes) -> str | None:
        """Act on one page message; the reply for that page (None for none)."""
        try:
            message = parse_message(data)
        except MessageError as error:
            return _error_reply(error)
        kind = message["type"]
        if kind == "note":
            if self.runner.inbox.backlog() >= MAX_BACKLOG:
                return _error_reply(MessageError("busy", "too many notes waiting; slow down"))
            pitch = message["pitch"]
            raw = (_NOTE_ON, pitch, message["velocity"]) if message["on"] else (_NOTE_OFF, pitch, 0)
            self.runner.inbox.put(raw, message["id"] if message["on"] else -1)
            return None
        if kind == "ping":
            return json.dumps({"type": "pong", "id": message["id"]})
        assert self._settings_lock is not None
        async with self._settings_lock:
            if kind == "settings":
                fields = {k: v for k, v in message.items() if k != "type"}
                try:
                    settings = self.runner.settings.changed(fields)
                    if fields.keys() <= LIVE_SETTINGS:  # the take plays on; the arranger takes them between steps
                        await asyncio.to_thread(self.runner.apply, settings)
                    else:
                        await asyncio.to_thread(self.runner.restart, settings)
                except ParameterError as error:  # a value the arranger refuses: the engine plays on as it was
                    return _error_reply(MessageError("bad_value", str(error)))
                logger.info("settings: %s", ", ".join(f"{k} {v}" for k, v in asdict(settings).items()))
                self._tell_all({"type": "settings", "settings": asdict(settings)})
            else:
                on = message["on"]
                await asyncio.to_thread(self.runner.restart, new_take=on, record=on)
                logger.info("recording %s", "a new take" if on else "stopped")
                self._tell_all({"type": "record", "on": on})
        return None


def _response(
    status: http.HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8", *, attachment: str = ""
) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-store"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Content-Security-Policy"] = CSP
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"  # no <audio>, <img> or <script> of another origin
    headers["Connection"] = "close"
    if attachment:
        headers["Content-Disposition"] = f'attachment; filename="{attachment}"'
    return Response(status.value, status.phrase, headers, body)


# ----------------------------------------------------------------------------- the command

#: Options of ``chiptuner.live`` that have no meaning in the browser, with their defaults.
_NOT_FOR_WEB = {
    "demo": False, "fast": False, "list_ports": False, "in_port": None, "out": None, "midi_api": "auto",
    "in_channel": None, "gm_drums": False, "follow": False, "clock": False, "count_in": None, "lanes": None,
}  # fmt: skip


def _need_websockets() -> None:
    if serve is None:
        raise ChiptunerError("the browser front end needs websockets: pip install 'chiptuner[live]'")


def run(
    args: argparse.Namespace,
    *,
    seconds_since_start: Callable[[], float] = time.perf_counter,
    kernels_ready: Callable[[], None] | None = None,
) -> int:
    """Serve the page until Ctrl-C (or ``--seconds``), then write the session; the exit code.

    ``args`` are ``chiptuner.live``'s options (``--web`` and those that apply to it):
    the engine's settings (``--bpm``, ``--buttons``, ``--temperature``, ``--seed``,
    ``--style``, ``--energy``, ``--voices``, ``--metronome``, ``--grace``, ``--model``), the
    recording (``--record``, ``--no-record``, ``--no-sound`` for no session.wav),
    ``--seconds``, and ``--host``, ``--port``, ``--no-browser``. Exit code 130 after Ctrl-C
    or SIGTERM, 0 after ``--seconds``. ``kernels_ready`` is called once every kernel is
    loaded, before the server opens (``chiptuner.live`` ends its compile notice with it).
    """
    clashing = [name for name, default in _NOT_FOR_WEB.items() if getattr(args, name, default) != default]
    if clashing:
        options = ", ".join("--" + name.replace("_", "-").replace("in-port", "in") for name in clashing)
        raise ParameterError(f"{options} cannot be used with --web (the page picks the input and tempo)")
    if not 0 <= args.port <= 65535:
        raise ParameterError(f"port {args.port} is not 0-65535")
    _need_websockets()
    settings = Settings(
        bpm=args.bpm, mode="buttons" if args.buttons else "keys", temperature=args.temperature,
        metronome=args.metronome, seed=args.seed, style=args.style, energy=args.energy,
        voices=parse_voices(args.voices),
    )  # fmt: skip
    if not _is_loopback(args.host):
        logger.warning(
            "listening on %s: other machines on the network can open the page and play; "
            "leave --host out to stay on 127.0.0.1", args.host or "every interface",
        )  # fmt: skip
    model = load_model(args.model)
    if settings.style is not None:
        style_index(model, settings.style)  # refused before the kernels warm up
    warmup(model)  # compile or load every kernel before the server opens
    synth_warmup()  # the downloads render the session
    if kernels_ready is not None:
        kernels_ready()
    loop = asyncio.new_event_loop()
    inbox = PageInbox()
    output = PageOutput(loop.call_soon_threadsafe, lambda events: server.deliver(events), inbox,
                        origin_sec=time.perf_counter())  # fmt: skip
    runner = EngineRunner(
        model, settings, inbox=inbox, outputs=[output], grace_sec=args.grace / 1000.0, record=not args.no_record
    )
    server = WebServer(runner, host=args.host, port=args.port)
    interrupted = True
    try:
        interrupted = loop.run_until_complete(_serve(server, args, seconds_since_start))
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        if not args.no_record and runner.reports:  # a session was played (not: the port was taken)
            files = write_session(runner.recorder, Path(args.record), bpm=runner.settings.bpm, sound=not args.no_sound)
            logger.info("wrote %s%s (%.1f s)", files.midi, f" and {files.wav}" if files.wav else "", files.seconds)
        if runner.reports:
            logger.info("%s (%d engine runs)", runner.reports[-1].summary(), len(runner.reports))
    return 130 if interrupted else 0


async def _serve(server: WebServer, args: argparse.Namespace, seconds_since_start: Callable[[], float]) -> bool:
    """Serve until Ctrl-C / SIGTERM (True) or ``--seconds`` (False); the engine plays meanwhile."""
    loop = asyncio.get_running_loop()
    url = await server.start()
    stop = asyncio.Event()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    handled = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, interrupt)
                handled.append(signum)
    try:
        server.runner.start()
        print(f"chiptuner: play at {url}", flush=True)  # noqa: T201 (the address on stdout, even with -q)
        settings = server.runner.settings
        logger.info(
            "ready in %.2f s: %s mode, %g BPM; open %s in a browser; Ctrl-C stops",
            seconds_since_start(), settings.mode, settings.bpm, url,
        )  # fmt: skip
        if not args.no_browser:
            await asyncio.to_thread(webbrowser.open, url)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.seconds)
    finally:
        await asyncio.to_thread(server.runner.stop)
        await server.close()
        for signum in handled:
            loop.remove_signal_handler(signum)
    return interrupted
