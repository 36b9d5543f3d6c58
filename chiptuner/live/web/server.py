"""The browser front end's server: the page, its WebSocket and the session downloads on one port, and ``run``.

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

import asyncio
import concurrent.futures
import contextlib
import http
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chiptuner.chip_midi import VOICE_VELOCITY
from chiptuner.errors import ChiptunerError, ParameterError
from chiptuner.live.session import write_session
from chiptuner.model.arranger import (
    ENERGY_LEVELS,
    load_model,
    style_index,
    warmup,
)
from chiptuner.scales import SCALE_MODES, TONIC_NAMES
from chiptuner.synth import DRUM_TABLE, DUTY_CYCLES
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
from chiptuner.live.web.protocol import (
    LANE_NOTES,
    LIVE_SETTINGS,
    MAX_MESSAGE_BYTES,
    MessageError,
    Settings,
    error_reply,
    parse_message,
)
from chiptuner.live.web.runner import EngineRunner, PageInbox, PageOutput

__all__ = [
    "WebServer",
    "WebOptions",
    "run",
    "DEFAULT_PORT",
    "MAX_WAITING_DOWNLOADS",
    "WS_MAX_SIZE",
    "MAX_BACKLOG",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
#: websockets' own frame limit, larger than ours so that an oversized message is answered
#: (beyond this the library closes that connection with 1009; the server goes on).
WS_MAX_SIZE = 1 << 20
#: Notes waiting for the engine beyond this are refused ("busy") instead of queued.
MAX_BACKLOG = 1024
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
ASSETS = Path(__file__).resolve().parents[1] / "webpage"
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
_NOTE_OFF, _NOTE_ON = 0x80, 0x90


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
            "scale_tonics": list(TONIC_NAMES),
            "scale_modes": list(SCALE_MODES),
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
            return error_reply(error)
        kind = message["type"]
        if kind == "note":
            if self.runner.inbox.backlog() >= MAX_BACKLOG:
                return error_reply(MessageError("busy", "too many notes waiting; slow down"))
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
                    return error_reply(MessageError("bad_value", str(error)))
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


@dataclass(frozen=True)
class WebOptions:
    """How ``run`` serves the page: the engine's first settings, where it listens, what it records.

    Attributes
    ----------
    settings : Settings
        The engine's settings until the page changes them.
    host : str
        Address to listen on ("" or "0.0.0.0": every interface).
    port : int
        0-65535; 0 takes any free port.
    open_browser : bool
        Open the page in the default browser once the server listens.
    seconds : float or None
        Stop after this many seconds (None: at Ctrl-C or SIGTERM).
    grace_ms : float
        A note this late after a step still counts for it.
    record_dir : Path or None
        Folder for session.mid (and session.wav); None records nothing.
    sound : bool
        Write session.wav beside session.mid.
    model : str or None
        Model file; None is the shipped model.
    """

    settings: Settings = Settings()
    host: str = "127.0.0.1"
    port: int = 8765
    open_browser: bool = True
    seconds: float | None = None
    grace_ms: float = 40.0
    record_dir: Path | None = Path(".")
    sound: bool = True
    model: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ParameterError(f"port {self.port!r} is not 0-65535")
        if self.seconds is not None and not self.seconds > 0:
            raise ParameterError(f"seconds is {self.seconds!r}; give a number above 0, or None to play until Ctrl-C")


def _need_websockets() -> None:
    if serve is None:
        raise ChiptunerError("the browser front end needs websockets: pip install 'chiptuner[live]'")


def run(
    options: WebOptions,
    *,
    seconds_since_start: Callable[[], float] = time.perf_counter,
    kernels_ready: Callable[[], None] | None = None,
) -> int:
    """Serve the page until Ctrl-C (or ``options.seconds``), then write the session; the exit code.

    Exit code 130 after Ctrl-C or SIGTERM, 0 after ``options.seconds``. ``kernels_ready`` is
    called once every kernel is loaded, before the server opens (``chiptuner live`` ends its
    compile notice with it).
    """
    _need_websockets()
    settings = options.settings
    if not _is_loopback(options.host):
        logger.warning(
            "listening on %s: other machines on the network can open the page and play; "
            "leave --host out to stay on 127.0.0.1", options.host or "every interface",
        )  # fmt: skip
    model = load_model(options.model)
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
        model, settings, inbox=inbox, outputs=[output], grace_sec=options.grace_ms / 1000.0,
        record=options.record_dir is not None,
    )  # fmt: skip
    server = WebServer(runner, host=options.host, port=options.port)
    interrupted = True
    try:
        interrupted = loop.run_until_complete(_serve(server, options, seconds_since_start))
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        if options.record_dir is not None and runner.reports:  # a session was played (not: the port was taken)
            files = write_session(runner.recorder, options.record_dir, bpm=runner.settings.bpm, sound=options.sound)
            logger.info("wrote %s%s (%.1f s)", files.midi, f" and {files.wav}" if files.wav else "", files.seconds)
        if runner.reports:
            logger.info("%s (%d engine runs)", runner.reports[-1].summary(), len(runner.reports))
    return 130 if interrupted else 0


async def _serve(server: WebServer, options: WebOptions, seconds_since_start: Callable[[], float]) -> bool:
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
        if options.open_browser:
            await asyncio.to_thread(webbrowser.open, url)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), options.seconds)
    finally:
        await asyncio.to_thread(server.runner.stop)
        await server.close()
        for signum in handled:
            loop.remove_signal_handler(signum)
    return interrupted
