"""The browser page's WebSocket protocol: the messages, their checks, and the settings a page may change.

The WebSocket protocol (JSON text frames, UTF-8)
------------------------------------------------
Page -> server (each at most ``MAX_MESSAGE_BYTES``):

- ``{"type": "note", "pitch": 0-127, "on": true|false, "velocity": 1-127, "id": int}``
  (``velocity`` and ``id`` optional; ``id`` is the page's key-event number, echoed on the
  pulse1 note it starts, for the page's latency figure; in 5-button mode the page sends
  the lane notes ``LANE_NOTES``);
- ``{"type": "settings", "bpm": 20-400, "mode": "keys"|"buttons", "temperature": 0.05-10,
  "metronome": bool, "seed": int >= 0, "style": one of the hello's "styles", "energy":
  "low"|"mid"|"high", "voices": [any of "pulse2", "triangle", "noise"], "scale": "TONIC:MODE"
  (``chiptuner.scales``, e.g. "C:major") or "off", "swing": 0-0.5}`` (any subset): with only
  style, energy, voices, scale and swing the running engine takes them at its next step and
  the take plays on (a voice left out rests in the model); otherwise the engine restarts with them;
- ``{"type": "record", "on": bool}``: on starts a new take (a fresh recording), off stops
  recording (the take stays downloadable);
- ``{"type": "ping", "id": int}``.

Server -> page:

- ``hello`` on connect: settings, recording, voices, the model's styles, the energy levels,
  the scale lock's tonics and modes, lane notes, the synth's duty cycles and drum table, limits;
- ``notes``: ``{"type": "notes", "events": [{"voice": "pulse1"|"pulse2"|"triangle"|"noise"|
  "click", "pitch": int, "on": bool, "step": int, "time_sec": float, "key_id": int}]}``
  (``key_id`` only on a pulse1 note-on started by a page note with an ``id``; a duty change
  is ``{"voice", "duty": 0.125-0.75}``, an all-notes-off ``{"voice", "all_off": true}``);
- ``settings`` and ``record`` (to every page) after a change; ``pong``;
- ``error``: ``{"type": "error", "code": ..., "message": ...}`` for a malformed, unknown,
  out-of-range or oversized message. The connection stays open.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, get_args

from chiptuner.errors import ParameterError
from chiptuner.model.arranger import (
    ACCOMPANIMENT,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    TEMPERATURE_RANGE,
    InputMode,
    energy_index,
    parse_voices,
)
from chiptuner.scales import parse_scale
from chiptuner.timebase import MAX_SWING, SWING_RANGE

__all__ = [
    "Settings",
    "MessageError",
    "parse_message",
    "error_reply",
    "LIVE_SETTINGS",
    "LANE_NOTES",
    "MAX_MESSAGE_BYTES",
    "MAX_ID",
]

logger = logging.getLogger(__name__)

#: The notes of lanes 0-4 in 5-button mode (the page sends these; C D E F G).
LANE_NOTES = (60, 62, 64, 65, 67)
#: Largest message the server reads; a longer one gets an error reply.
MAX_MESSAGE_BYTES = 4096
#: Largest ``id`` a page may send (JavaScript's safe integers).
MAX_ID = 2**53 - 1


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
    scale: str = "off"
    swing: float = 0.0

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
            elif name == "scale":
                if not isinstance(value, str):
                    raise MessageError("bad_value", f"scale is {value!r}; give 'TONIC:MODE' (e.g. 'C:major') or 'off'")
                scale = _choice(parse_scale, value)
                values[name] = "off" if scale is None else scale.name
            elif name == "swing":
                values[name] = _number(name, value, 0.0, MAX_SWING, SWING_RANGE)
            else:
                raise MessageError("bad_value", f"unknown setting {name!r}; settings are {_SETTING_NAMES}")
        return replace(self, **values)


_SETTING_NAMES = ["bpm", "mode", "temperature", "metronome", "seed", "style", "energy", "voices", "scale", "swing"]
#: Settings the running engine takes between two steps (``Engine.set_settings``), without a restart.
LIVE_SETTINGS = frozenset({"style", "energy", "voices", "scale", "swing"})
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
    """``check(value)`` (a ``chiptuner.model.arranger`` check whose ParameterError names the choices) as a bad_value."""
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


def error_reply(error: MessageError) -> str:
    """The ``error`` message that answers a message the server could not take."""
    return json.dumps({"type": "error", "code": error.code, "message": str(error)})
