"""The engine behind the browser page: the page's notes in, the band's events out, the take recorded.

``EngineRunner`` runs the live engine (``live.engine``) on its own thread with
``time.perf_counter`` as its clock, exactly as in the terminal mode; ``PageInbox`` queues
the page's notes as raw MIDI tuples for it and ``PageOutput`` batches what it plays back
to the page(s) as JSON events (``live.web.protocol``).
"""

from __future__ import annotations

import collections
import io
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from chiptuner.live.engine import METRONOME_CHANNEL, ButtonMap, Engine, EngineReport, FixedTempo, Recorder
from chiptuner.live.session import session_audio, session_midi
from chiptuner.live.web.protocol import LANE_NOTES, Settings
from chiptuner.model.arranger import (
    Arranger,
    ArrangerModel,
)
from chiptuner.synth import DUTY_CYCLES, write_wav
from chiptuner.types import VOICE_NAMES

__all__ = [
    "PageInbox",
    "PageOutput",
    "EngineRunner",
]

logger = logging.getLogger(__name__)

_NOTE_OFF, _NOTE_ON, _CONTROL = 0x80, 0x90, 0xB0
_CHANNEL_VOICE = {channel: name for channel, name in enumerate(VOICE_NAMES)}
_CHANNEL_VOICE[METRONOME_CHANNEL] = "click"


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
            style=settings.style, energy=settings.energy, voices=settings.voices, scale=settings.scale,
        )  # fmt: skip

    def _make(self, settings: Settings) -> Engine:
        engine = Engine(
            self._arranger(settings), clock=time.perf_counter, inbox=self.inbox, outputs=self.outputs,
            tempo=FixedTempo(settings.bpm), recorder=self.recorder if self.recording else None,
            grace_sec=self.grace_sec, buttons=ButtonMap(LANE_NOTES) if settings.mode == "buttons" else None,
            metronome=settings.metronome, swing=settings.swing,
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
        """Give the running take new ``LIVE_SETTINGS`` (style, energy, voices, scale, swing): no restart, no new take.

        The engine takes them at its next step (``Engine.set_settings``); a value the
        arranger refuses raises ``ParameterError`` and changes nothing.
        """
        with self._lock:
            if self._engine is not None:
                self._engine.set_settings(
                    style=settings.style, energy=settings.energy, voices=settings.voices, scale=settings.scale,
                    swing=settings.swing,
                )  # fmt: skip
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
