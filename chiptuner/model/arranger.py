"""The arranger model: its token vocabulary, its weights file, and the numba step that plays it.

The model is causal, one 16th-note step at a time. At step t it sees the player's input at
t (a MIDI pitch in ``"keys"`` mode or one of five lanes in ``"buttons"`` mode, plus an
onset flag), the position in the bar, and the four tokens it produced at t-1. Per voice
it outputs one token: rest, hold, or a new note (a pitch inside the voice's range, or a
drum class for the noise voice). It never sees a future input step.

Weights live in a versioned ``.npz`` of plain arrays (written by ``chiptuner train``,
read without pickle and without torch). ``Arranger`` is the stepping state used live and
offline alike: ``Arranger.run`` is a loop over the same kernel as ``Arranger.step``.

Lead policy (``follow_lead=True``, the default): the player's note is heard at once, so on
every input onset pulse1 starts a note on that same step; in keys mode it is the played
pitch folded into pulse1's range, in buttons mode the model picks the pitch. Between the
player's onsets the model decides (ornaments, rests, holds). In buttons mode the picked
pitch follows the player's contour (``follow_contour=True``, the default): when the lane
moves up (down) from the last onset's, the lead moves up (down) from the pitch it sounded
there.
"""

from __future__ import annotations

import json
import logging
import lzma
import math
import os
import typing
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from chiptuner._kernels import arranger as _k
from chiptuner.errors import ModelFileError, ParameterError
from chiptuner.scales import Scale, parse_scale, scale_bits
from chiptuner.types import VOICE_NAMES, Arrangement
from chiptuner.voices import DRUM_KEYS, VOICE_RANGES

__all__ = [
    "InputMode",
    "ArrangerModel",
    "Arranger",
    "load_model",
    "default_model_path",
    "voices_to_tokens",
    "tokens_to_arrangement",
    "FORMAT_VERSION",
    "MIN_TEMPERATURE",
    "MAX_TEMPERATURE",
    "N_TOKENS",
    "TOKEN_OFFSET",
    "INPUT_SIZES",
    "ROW_OFFSET",
    "PAIR_OFFSET",
    "MAX_POSITION",
    "MAX_STYLES",
    "ENERGY_LEVELS",
    "ACCOMPANIMENT",
    "condition_rows",
    "bar_voice_flags",
    "REST",
    "HOLD",
    "FIRST_NOTE",
]

logger = logging.getLogger(__name__)

InputMode = Literal["keys", "buttons"]

#: Version of the ``.npz`` layout; a file of another version is refused.
FORMAT_VERSION = 2
REST, HOLD, FIRST_NOTE = _k.REST, _k.HOLD, _k.FIRST_NOTE
#: Lowest and highest pitch of pulse1, pulse2, triangle (docs/targets.md ranges).
VOICE_LOW = np.array([VOICE_RANGES[name][0] for name in VOICE_NAMES[:3]], dtype=np.int64)
VOICE_HIGH = np.array([VOICE_RANGES[name][1] for name in VOICE_NAMES[:3]], dtype=np.int64)
_DRUM_KEYS = DRUM_KEYS.astype(np.int64)
#: Tokens per voice: rest, hold, then one per pitch of the range (or per drum class).
N_TOKENS = (
    *(int(h - lo + 1 + FIRST_NOTE) for lo, h in zip(VOICE_LOW, VOICE_HIGH, strict=True)),
    FIRST_NOTE + len(DRUM_KEYS),
)
#: Voice v's logits are ``TOKEN_OFFSET[v]:TOKEN_OFFSET[v + 1]`` of the concatenated output.
TOKEN_OFFSET = np.concatenate(([0], np.cumsum(N_TOKENS))).astype(np.int64)
#: Positions in the bar beyond this one share its input row (bars of over 2 x 4/4 are rare).
MAX_POSITION = 31
#: Most styles one model can hold (rows of the style block; the model file names its own).
MAX_STYLES = 8
#: ``energy`` settings, from the sparsest band to the busiest (terciles of accompaniment onsets per bar).
ENERGY_LEVELS = ("low", "mid", "high")
#: The voices a player can turn off (``voices``); pulse1 carries the melody and always plays.
ACCOMPANIMENT = VOICE_NAMES[1:]
#: Rows per input block of the folded input table, in the kernel's order: the step's inputs,
#: then the settings (style, energy, each accompaniment voice off/on).
INPUT_SIZES = {
    "pitch": 129,  # rest, then MIDI 0-127
    "lane": 6,  # none, then lanes 0-4
    "onset": 2,
    "mode": 2,  # keys, buttons
    "position": MAX_POSITION + 1,
    **{f"previous_{name}": n for name, n in zip(VOICE_NAMES, N_TOKENS, strict=True)},
    "style": MAX_STYLES,
    "energy": len(ENERGY_LEVELS),
    **{f"{name}_on": 2 for name in ACCOMPANIMENT},
}
ROW_OFFSET = np.concatenate(([0], np.cumsum(list(INPUT_SIZES.values())))).astype(np.int64)
#: Index in ``ROW_OFFSET`` of the first setting block (style).
CONDITION_BLOCK = 9
#: First ``pair_table`` row of pulse1, pulse2 and the triangle, then the row count: per voice
#: one row per token, then one per note it can hold (``_kernels.arranger.pair_row``).
PAIR_OFFSET = np.concatenate(([0], np.cumsum([2 * n - FIRST_NOTE for n in N_TOKENS[:3]]))).astype(np.int64)
_WEIGHTS = ("in_table", "b_ih", "b_hh", "w_hh_t", "w_out_t", "b_out", "pair_table")
_DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.npz"
#: Most array data a model file may hold, all arrays together (the shipped model holds
#: about 1.6 MB). Sizes come from the .npy headers, so a small file that claims gigabytes
#: (a crafted header, a zip bomb) is refused before anything is allocated.
MAX_MODEL_BYTES = 256 * 2**20
_EXPORT_HINT = "pass a .npz written by `chiptuner train`"
#: What reading a damaged archive member can raise (zip, deflate, bzip2 and lzma errors, cut data).
_DAMAGED = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error,
            lzma.LZMAError)  # fmt: skip

for _array in (VOICE_LOW, VOICE_HIGH, _DRUM_KEYS, TOKEN_OFFSET, ROW_OFFSET, PAIR_OFFSET):
    _array.flags.writeable = False


def default_model_path() -> Path:
    """The model that ships inside the package (``chiptuner/models/default.npz``)."""
    return _DEFAULT_MODEL


def _check_mode(mode: str) -> bool:
    if mode not in typing.get_args(InputMode):
        raise ParameterError(f"input mode is {mode!r}; use one of {typing.get_args(InputMode)}")
    return mode == "buttons"


#: Lowest and highest sampling temperature. Below the floor, logits / temperature overflow
#: to inf (1e-320 gives inf and NaN) and sampling falls through to the last token, the
#: highest pitch; every place a temperature enters (the CLI, live, the page) checks this range.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 10.0
#: The range in words, for every message that refuses a temperature.
TEMPERATURE_RANGE = f"from {MIN_TEMPERATURE} to {MAX_TEMPERATURE:g} (1.0 samples as trained)"


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)):
        raise ParameterError(f"temperature is {temperature!r}; give a number {TEMPERATURE_RANGE}")
    value = float(temperature)
    if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:  # NaN fails this too
        raise ParameterError(f"temperature is {temperature!r}; give a number {TEMPERATURE_RANGE}")
    return value


def _check_steering(name: str, value: object, default: float) -> float:
    chosen = default if value is None else value
    if isinstance(chosen, bool) or not isinstance(chosen, (int, float, np.floating)) or not 0.0 <= chosen <= 20.0:
        raise ParameterError(f"{name} is {value!r}; give a number from 0 (sample as trained) to 20")
    return float(chosen)


def parse_voices(voices: str | typing.Iterable[str] | None) -> tuple[str, ...]:
    """The accompaniment voices to play, from ``"pulse2,triangle,noise"`` or a list of names.

    None means all three; ``"none"`` (or an empty list) only the lead. Raises
    ``ParameterError`` naming the choices for any other name.
    """
    if voices is None:
        return ACCOMPANIMENT
    names = voices.split(",") if isinstance(voices, str) else list(voices)
    names = [str(name).strip() for name in names if str(name).strip()]
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in ACCOMPANIMENT]
    if unknown:
        raise ParameterError(
            f"voices {', '.join(map(repr, unknown))}: choose any of {', '.join(ACCOMPANIMENT)} "
            "(comma-separated), or none for the lead alone"
        )
    return tuple(name for name in ACCOMPANIMENT if name in names)


def style_index(model: ArrangerModel, style: str) -> int:
    """The row of ``style`` among the model's styles; ``ParameterError`` naming them for another."""
    if style not in model.styles:
        raise ParameterError(f"style {style!r}: this model plays {', '.join(model.styles)}")
    return model.styles.index(style)


def energy_index(energy: str) -> int:
    """The row of an ``ENERGY_LEVELS`` name; ``ParameterError`` naming them for another."""
    if energy not in ENERGY_LEVELS:
        raise ParameterError(f"energy {energy!r}: choose {', '.join(ENERGY_LEVELS)}")
    return ENERGY_LEVELS.index(energy)


def condition_rows(style: np.ndarray | int, energy: np.ndarray | int, voice_on: np.ndarray) -> np.ndarray:
    """The ``in_table`` rows of the settings, per step: style, energy, then each accompaniment voice off/on.

    Parameters
    ----------
    style, energy : int or np.ndarray [shape=(...)]
        Row within the style block and the energy block.
    voice_on : np.ndarray [shape=(..., 3), dtype=bool]
        Whether pulse2, the triangle and the noise voice play.

    Returns
    -------
    np.ndarray [shape=(..., N_CONDITIONS), dtype=int64]
    """
    on = np.asarray(voice_on, dtype=np.int64)
    shape = on.shape[:-1]
    out = np.empty((*shape, _k.N_CONDITIONS), dtype=np.int64)
    block = CONDITION_BLOCK
    out[..., 0] = ROW_OFFSET[block] + np.broadcast_to(style, shape)
    out[..., 1] = ROW_OFFSET[block + 1] + np.broadcast_to(energy, shape)
    out[..., 2:] = ROW_OFFSET[block + 2 : block + 5] + on
    return out


def bar_voice_flags(tokens: np.ndarray, position: np.ndarray, song_start: np.ndarray | None = None) -> np.ndarray:
    """Whether pulse2, the triangle and the noise voice sound anywhere in each step's bar.

    The per-bar voice settings a model is trained with: a bar where the arrangement leaves a
    voice silent trains with that voice off. Bars start where ``position`` is 0 and where
    ``song_start`` is set (the first step of each song when many are concatenated).

    Returns
    -------
    np.ndarray [shape=(T, 3), dtype=bool]
    """
    tokens = np.asarray(tokens)
    starts = np.asarray(position) == 0
    if song_start is not None:
        starts = starts | np.asarray(song_start, dtype=bool)
    if len(starts):
        starts = starts.copy()
        starts[0] = True
    bar = np.cumsum(starts) - 1
    out = np.empty((len(tokens), 3), dtype=bool)
    for v in range(3):
        sounding = np.bincount(bar, weights=tokens[:, v + 1] != REST, minlength=int(bar[-1]) + 1 if len(bar) else 0)
        out[:, v] = sounding[bar] > 0
    return out


def _copy_all(sources: tuple[np.ndarray, ...], targets: tuple[np.ndarray, ...]) -> None:
    for source, target in zip(sources, targets, strict=True):
        np.copyto(target, source)


def _seed_state(seed: int) -> np.ndarray:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed is {seed!r}; it must be a whole number >= 0")
    # splitmix64 of the seed: nearby seeds give unrelated streams, and the state is never 0.
    z = (int(seed) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return np.array([z or 1], dtype=np.uint64)


@dataclass(frozen=True, eq=False)
class ArrangerModel:
    """The exported weights of an arranger network, folded for the numba step.

    Attributes
    ----------
    in_table : np.ndarray [shape=(R, 3H + V), dtype=float32]
        One row per input value (see ``INPUT_SIZES``): its GRU input and its direct
        contribution to the output logits.
    b_ih, b_hh : np.ndarray [shape=(3H,), dtype=float32]
        GRU biases, gates in torch's order (reset, update, new).
    w_hh_t : np.ndarray [shape=(H, 3H), dtype=float32]
        Recurrent weights, transposed.
    w_out_t : np.ndarray [shape=(H, V), dtype=float32]
        Output weights of the four heads, transposed; V = ``TOKEN_OFFSET[-1]``.
    b_out : np.ndarray [shape=(V,), dtype=float32]
    pair_table : np.ndarray [shape=(P, V), dtype=float32]
        What each voice's token of a step adds to the logits of the voices drawn after it
        (``PAIR_OFFSET`` rows; ``_kernels.arranger.pair_row``).
    metadata : dict
        How the model was trained (data, split, time, validation figures), and ``styles``:
        the style names, in the order of their rows.
    extras : dict of str to np.ndarray
        Other arrays stored with the model (the baselines fitted on the same training split).
    """

    in_table: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    w_hh_t: np.ndarray
    w_out_t: np.ndarray
    b_out: np.ndarray
    pair_table: np.ndarray
    metadata: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _WEIGHTS:
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        hidden = self.w_hh_t.shape[0] if self.w_hh_t.ndim == 2 else -1
        _check_weight_shapes({name: getattr(self, name).shape for name in _WEIGHTS}, hidden)
        for name in _WEIGHTS:
            if not np.isfinite(getattr(self, name)).all():
                raise ModelFileError(
                    f"model weight {name} holds NaN or infinite values; the training diverged: train again"
                )

    @property
    def hidden(self) -> int:
        """Size of the GRU state."""
        return int(self.w_hh_t.shape[0])

    @property
    def styles(self) -> tuple[str, ...]:
        """The style names this model was trained with (``--style``), in the order of their rows."""
        return tuple(self.metadata.get("styles", ("chip",)))

    @property
    def n_parameters(self) -> int:
        """Floats stored in the folded weights."""
        return int(sum(getattr(self, name).size for name in _WEIGHTS))

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as a versioned ``.npz`` of plain arrays (no pickle), atomically."""
        path = Path(path)
        arrays = {name: getattr(self, name) for name in _WEIGHTS}
        arrays.update({f"extra_{name}": np.asarray(value) for name, value in self.extras.items()})
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                format_version=np.array(FORMAT_VERSION),
                row_offset=ROW_OFFSET,
                tok_offset=TOKEN_OFFSET,
                metadata_json=np.array(json.dumps(self.metadata, sort_keys=True)),
                **arrays,
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArrangerModel:
        """Read a model written by ``save``.

        Every array's shape and dtype is checked from its .npy header before any data is
        read (numbers only, no pickle; at most ``MAX_MODEL_BYTES`` in all), then the
        format version, the layout and the metadata fields chiptuner reads back.

        Raises
        ------
        ModelFileError
            Missing file, not an arranger export (a MIDI file, another archive), another
            format version, a damaged file, or a bad field (named in the message).
        """
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file; train one with `chiptuner train` or leave --model out")
        arrays = _read_arrays(path)
        # The format version was checked in _read_arrays, before the layout.
        if not (
            np.array_equal(arrays["row_offset"], ROW_OFFSET) and np.array_equal(arrays["tok_offset"], TOKEN_OFFSET)
        ):
            raise ModelFileError(
                f"{path}: the model's input or token layout differs from this chiptuner's; train it again"
            )
        metadata = _read_metadata(path, arrays["metadata_json"]) if "metadata_json" in arrays else {}
        extras = {name[len("extra_") :]: arrays[name] for name in arrays if name.startswith("extra_")}
        try:
            return cls(**{name: arrays[name] for name in _WEIGHTS}, metadata=metadata, extras=extras)
        except ModelFileError as error:  # NaN weights: name the file too
            raise ModelFileError(f"{path}: {error}") from None


def _weight_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """The shape of each weight array of a model with ``hidden`` GRU units."""
    n_out = int(TOKEN_OFFSET[-1])
    return {
        "in_table": (int(ROW_OFFSET[-1]), 3 * hidden + n_out),
        "b_ih": (3 * hidden,),
        "b_hh": (3 * hidden,),
        "w_hh_t": (hidden, 3 * hidden),
        "w_out_t": (hidden, n_out),
        "b_out": (n_out,),
        "pair_table": (int(PAIR_OFFSET[-1]), n_out),
    }


def _check_weight_shapes(shapes: dict[str, tuple[int, ...]], hidden: int, where: str = "") -> None:
    """ModelFileError naming the first weight whose shape is not that of ``hidden`` units (w_hh_t first)."""
    expected = _weight_shapes(hidden)
    for name in ("w_hh_t", *expected):
        if tuple(shapes[name]) != expected[name]:
            raise ModelFileError(
                f"{where}model weight {name} has shape {tuple(shapes[name])}, expected {expected[name]} "
                f"(hidden size {hidden}); export the model again with `chiptuner train`"
            )


#: dtype kinds each array may have (b bool, i/u integers, f floats, U text); others are extras.
_ARRAY_KINDS = {
    "format_version": ("iu", "a whole number"),
    "row_offset": ("iu", "whole numbers"),
    "tok_offset": ("iu", "whole numbers"),
    "metadata_json": ("U", "JSON text"),
    **{name: ("f", "floating-point numbers") for name in _WEIGHTS},
}
_OTHER_KINDS = ("biuf", "numbers")
_DTYPE_WORDS = {"U": "text", "S": "bytes", "O": "pickled objects", "V": "records", "c": "complex numbers",
                "M": "dates", "m": "time spans", "b": "true/false values", "f": "floating-point numbers",
                "i": "whole numbers", "u": "whole numbers"}  # fmt: skip


def _brief(error: BaseException) -> str:
    """An error's message on one line, cut to 80 characters (a crafted header can be long)."""
    return " ".join(str(error).split())[:80]


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a model .npz, read only after every header passed its checks."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read the model file ({error.strerror or error})") from None
    if start in (b"MThd", b"RIFF"):
        raise ModelFileError(
            f"{path}: a MIDI file, not a chiptuner model file; {_EXPORT_HINT}, or leave --model out for the shipped one"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        if start.startswith(b"PK"):  # a zip cut short or damaged, as an interrupted copy leaves it
            raise ModelFileError(
                f"{path}: a damaged or incomplete .npz ({_brief(error)}); copy or export it again"
            ) from None
        raise ModelFileError(f"{path}: not a chiptuner model file (not a .npz archive); {_EXPORT_HINT}") from None
    with archive:
        headers = _array_headers(path, archive)
        _check_version(path, archive, headers)
        _check_headers(path, headers)
        arrays = {}
        for name, (info, _, _) in headers.items():
            try:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
            except _DAMAGED as error:
                raise ModelFileError(
                    f"{path}: array {name} is damaged or cut short ({_brief(error)}); copy or export it again"
                ) from None
    return arrays


def _check_version(path: Path, archive: zipfile.ZipFile, headers: dict) -> None:
    """Refuse a file of another format by its version, before its arrays are held to this format's layout."""
    if "format_version" not in headers:
        return
    info, shape, dtype = headers["format_version"]
    if shape != () or dtype.kind not in "iu":
        return  # _check_headers names the field
    try:
        with archive.open(info) as member:
            version = int(np.lib.format.read_array(member, allow_pickle=False))
    except _DAMAGED:
        return  # read again, and named, with the other arrays
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format {version}, this chiptuner reads format {FORMAT_VERSION} (models that take "
            "--style, --energy and --voices); train a current one with `chiptuner train`, or leave --model out "
            "for the shipped one"
        )


def _array_headers(path: Path, archive: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, tuple, np.dtype]]:
    """Each member's name, shape and dtype from its .npy header (its data is not read)."""
    headers: dict[str, tuple[zipfile.ZipInfo, tuple, np.dtype]] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name == info.filename or name in headers:
            what = "not an array" if name == info.filename else "a second array of that name"
            raise ModelFileError(f"{path}: not a chiptuner model file ({info.filename!r} is {what}); {_EXPORT_HINT}")
        try:
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:  # 3.0 only holds structured dtypes with non-ASCII field names: never numbers
                    raise ValueError(f".npy format {version[0]}.{version[1]}")
        except _DAMAGED as error:
            raise ModelFileError(
                f"{path}: array {name} has no readable .npy header ({_brief(error)}); {_EXPORT_HINT}"
            ) from None
        headers[name] = (info, shape, dtype)
    return headers


def _check_headers(path: Path, headers: dict[str, tuple[zipfile.ZipInfo, tuple, np.dtype]]) -> None:
    """The arrays' total size, presence, dtypes and weight shapes, all from their headers."""
    for name, (_, shape, _) in headers.items():
        if any(n < 0 for n in shape):
            raise ModelFileError(f"{path}: array {name} has shape {shape}; {_EXPORT_HINT}")
    total = sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in headers.values())
    if total > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"{path}: its arrays claim {total / 2**20:.0f} MB, more than the {MAX_MODEL_BYTES >> 20} MB a model "
            f"file may hold; {_EXPORT_HINT}"
        )
    missing = [name for name in ("format_version", "row_offset", "tok_offset", *_WEIGHTS) if name not in headers]
    if missing:
        raise ModelFileError(f"{path}: not an arranger model (missing {', '.join(missing)}); {_EXPORT_HINT}")
    for name, (_, _, dtype) in headers.items():
        kinds, what = _ARRAY_KINDS.get(name, _OTHER_KINDS)
        # Plain dtypes only: object (pickle), structured and subarray dtypes are never numbers.
        if dtype.kind not in kinds or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            held = _DTYPE_WORDS.get(dtype.kind if dtype.fields is None else "V", "numbers")
            raise ModelFileError(f"{path}: {name} holds {held} ({dtype}), expected {what}; {_EXPORT_HINT}")
    for name in ("format_version", "metadata_json"):
        if name in headers and headers[name][1] != ():
            raise ModelFileError(f"{path}: {name} has shape {headers[name][1]}, expected one value; {_EXPORT_HINT}")
    shapes = {name: headers[name][1] for name in _WEIGHTS}
    hidden = shapes["w_hh_t"][0] if len(shapes["w_hh_t"]) == 2 else -1
    _check_weight_shapes(shapes, hidden, where=f"{path}: ")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_fraction(value: object) -> bool:
    return _is_number(value) and 0.0 < value < 1.0


#: Metadata fields chiptuner reads back, each with its check and what it must be (``config.``: in "config").
_METADATA_FIELDS = {
    "rest_bias": (
        lambda v: isinstance(v, list) and len(v) == 4 and all(_is_number(x) and abs(x) <= 20 for x in v),
        "a list of 4 numbers within +-20",
    ),
    "clash_bias": (lambda v: _is_number(v) and 0 <= v <= 20, "a number from 0 to 20"),
    "key_bias": (lambda v: _is_number(v) and 0 <= v <= 20, "a number from 0 to 20"),
    "config": (lambda v: isinstance(v, dict), "a JSON object"),
    "styles": (
        lambda v: (
            isinstance(v, list)
            and 1 <= len(v) <= MAX_STYLES
            and len(set(v)) == len(v)
            and all(isinstance(x, str) and x for x in v)
        ),
        f"a list of 1 to {MAX_STYLES} distinct style names",
    ),
    "energy_edges": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and v[0] <= v[1],
        "two rising numbers (accompaniment onsets per bar)",
    ),
    "config.seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
    "config.test_size": (_is_fraction, "a fraction between 0 and 1"),
    "config.val_size": (_is_fraction, "a fraction between 0 and 1"),
}
_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}  # fmt: skip


def _read_metadata(path: Path, array: np.ndarray) -> dict:
    """The metadata object, with every field chiptuner reads back checked."""
    try:
        metadata = json.loads(str(array[()]))
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{path}: metadata_json is not JSON ({_brief(error)}); {_EXPORT_HINT}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(
            f"{path}: metadata_json holds {_JSON_KINDS[type(metadata)]}, expected a JSON object; {_EXPORT_HINT}"
        )
    for name, (valid, what) in _METADATA_FIELDS.items():
        group, _, key = name.rpartition(".")
        holder = metadata.get(group) if group else metadata
        if isinstance(holder, dict) and key in holder and not valid(holder[key]):
            shown = json.dumps(holder[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ModelFileError(f"{path}: metadata {name} is {shown}, expected {what}; {_EXPORT_HINT}")
    return metadata


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> ArrangerModel:
    return ArrangerModel.load(path)


def load_model(path: str | os.PathLike | None = None) -> ArrangerModel:
    """Load a model file, or the shipped default when ``path`` is None (cached while unchanged)."""
    target = Path(path) if path is not None else _DEFAULT_MODEL
    if not target.is_file():
        if path is None:
            raise ModelFileError(f"the default model {target} is missing from this installation; reinstall chiptuner")
        raise ModelFileError(f"{target}: no such model file; train one with `chiptuner train` or leave --model out")
    return _load_cached(os.fspath(target), target.stat().st_mtime_ns)


class Arranger:
    """The stepping state of one arrangement: feed the player's input step by step.

    Parameters
    ----------
    model : ArrangerModel
    mode : {"keys", "buttons"}
        ``"keys"``: the input is a MIDI pitch; ``"buttons"``: a lane 0-4.
    temperature : float
        ``MIN_TEMPERATURE`` (0.05) to ``MAX_TEMPERATURE`` (10): sharpens (< 1) or flattens
        (> 1) the choice of each new note's pitch. When a note starts, holds or rests is
        always sampled as trained (see ``_kernels.arranger.sample_voice``: a colder rhythm
        is a silent one).
    seed : int
        Seed of the sampling generator: equal seeds give equal arrangements.
    follow_lead : bool
        pulse1 starts a note on every input onset (see the module notes).
    follow_contour : bool
        Buttons mode: the pitch the model picks for pulse1 on an input onset lies strictly
        above the last onset's lead pitch when the lane goes up, strictly below when it
        goes down, sampled from the model's note distribution renormalised over those
        pitches; where pulse1's range leaves none, its top or bottom pitch
        (``_kernels.arranger.contour_tokens``). False samples the pitch as trained (for
        measurement); keys mode never changes the player's pitch either way.
    rest_bias : sequence of 4 floats, optional
        Subtracted from each voice's rest logit when sampling (never when scoring). By
        default the model file's calibrated values (``metadata["rest_bias"]``, fitted on
        validation songs so that free-running accompaniment matches the real density; see
        ``calibration.calibrate_rest_bias``), zeros where it has none.
    clash_bias : float, optional
        When pulse1 starts a note, subtracted from the log-weight of every pulse2 and
        triangle token that would sound a dissonance against it (any interval but unison,
        3rds, 4th, 5th and 6ths; ``_kernels.arranger.sample_voice``). 0 samples as
        trained. By default the model file's ``metadata["clash_bias"]`` (see
        ``calibration.calibrate_steering``), 0 where it has none.
    key_bias : float, optional
        Subtracted from the log-weight of every new pulse2 and triangle note outside the
        key of the melody so far (Krumhansl-Kessler on its pitch-class durations, from its
        8th note on; in buttons mode the melody is pulse1's). Default
        ``metadata["key_bias"]``, 0 where it has none. Neither bias changes how often a
        voice rests, nor any score.
    style : str, optional
        Which band to be: one of ``model.styles`` (``chip``, ``pop``, ``chorale`` for the
        shipped model); default ``chip`` where the model has it, else its first style.
    energy : {"low", "mid", "high"}
        How busy the accompaniment is (terciles of the chip corpus's accompaniment onsets
        per bar, learned in training).
    voices : str or sequence of str, optional
        The accompaniment voices that play (``"pulse2,triangle,noise"``, any subset, or
        ``"none"``); default all. A voice left out rests on every step, inside the kernel,
        and the model knows it is out (its setting row), so the others play as a band
        without it. ``set_settings`` changes all three between steps.
    scale : str or Scale, optional
        The scale lock (``"C:major"``, ``"A:minor"``, ``"D:dorian"``; see
        ``chiptuner.scales``): a hard mask at sampling, so every note the model picks for
        pulse1, pulse2 and the triangle is in the scale. The player's own note (keys mode)
        is never changed. In buttons mode, where the contour and the scale leave pulse1 no
        pitch, it takes the nearest scale pitch in the contour's direction, else the
        nearest at all (``_kernels.arranger.scale_window``). None (default): no lock, and
        the arrangement is the same as before the lock existed. ``set_settings`` changes it.

    Notes
    -----
    Every buffer is allocated here, none per step. ``step`` returns views of internal
    arrays that the next step overwrites.
    """

    def __init__(
        self,
        model: ArrangerModel,
        *,
        mode: InputMode = "keys",
        temperature: float = 1.0,
        seed: int = 0,
        follow_lead: bool = True,
        follow_contour: bool = True,
        rest_bias: typing.Sequence[float] | None = None,
        clash_bias: float | None = None,
        key_bias: float | None = None,
        style: str | None = None,
        energy: str = "mid",
        voices: str | typing.Iterable[str] | None = None,
        scale: str | Scale | None = None,
    ) -> None:
        self.model = model
        self.buttons = _check_mode(mode)
        self.mode = mode
        self.temperature = _check_temperature(temperature)
        bias = rest_bias if rest_bias is not None else model.metadata.get("rest_bias", (0.0, 0.0, 0.0, 0.0))
        bias_arr = np.asarray(bias, dtype=np.float64)
        if bias_arr.shape != (4,) or not np.isfinite(bias_arr).all() or (np.abs(bias_arr) > 20).any():
            raise ParameterError(f"rest_bias is {bias!r}; give 4 finite numbers within +-20, one per voice")
        self.clash_bias = _check_steering("clash_bias", clash_bias, model.metadata.get("clash_bias", 0.0))
        self.key_bias = _check_steering("key_bias", key_bias, model.metadata.get("key_bias", 0.0))
        self._sampling = np.concatenate(([self.temperature], bias_arr, [self.clash_bias, self.key_bias]))
        self._sampling.flags.writeable = False
        self.follow_lead = bool(follow_lead)
        self.follow_contour = bool(follow_contour)
        hidden = model.hidden
        self._h = np.zeros(hidden, dtype=np.float32)
        self._acc = np.zeros(model.in_table.shape[1], dtype=np.float32)
        self._gh = np.zeros(3 * hidden, dtype=np.float32)
        self._logits = np.zeros(int(TOKEN_OFFSET[-1]), dtype=np.float32)
        self._rows = np.zeros(_k.N_ROWS, dtype=np.int64)
        self._tokens = np.zeros(4, dtype=np.int64)
        self._sounding = np.full(4, -1, dtype=np.int64)
        self._started = np.zeros(4, dtype=np.bool_)
        self._key_state = np.zeros(_k.KEY_STATE_SIZE, dtype=np.float64)
        self._contour = np.zeros(_k.CONTOUR_STATE_SIZE, dtype=np.int64)
        self._rng = _seed_state(seed)
        self._condition = np.zeros(model.in_table.shape[1], dtype=np.float32)
        self._voice_on = np.ones(4, dtype=np.bool_)
        self.style, self.energy, self.voices = "", "", ACCOMPANIMENT
        self.scale: Scale | None = parse_scale(scale)
        self._scale_bits = scale_bits(self.scale)
        default_style = "chip" if "chip" in model.styles else model.styles[0]
        self.set_settings(style=default_style if style is None else style, energy=energy, voices=voices)
        # Everything a step changes, and copies for save_state/restore_state and preview_lead.
        self._state = (self._h, self._tokens, self._sounding, self._started, self._key_state, self._contour, self._rng)
        self._saved = tuple(np.copy(a) for a in self._state)
        self._before_preview = tuple(np.copy(a) for a in self._state)
        self.reset(seed)

    def set_settings(
        self,
        *,
        style: str | None = None,
        energy: str | None = None,
        voices: str | typing.Iterable[str] | None = None,
        scale: str | Scale | None = None,
    ) -> None:
        """Change the style, energy, voices or scale lock (None keeps the current one), from the next step on.

        ``scale="off"`` turns the lock off. The state carries over, so a live take goes on
        with the new band. Raises ``ParameterError`` (naming the choices) and changes
        nothing for a bad value.
        """
        new_scale = self.scale if scale is None else parse_scale(scale)
        new_style = self.style if style is None else style
        new_energy = self.energy if energy is None else energy
        new_voices = self.voices if voices is None else parse_voices(voices)
        on = np.array([name in new_voices for name in ACCOMPANIMENT])
        rows = condition_rows(style_index(self.model, new_style), energy_index(new_energy), on)
        self._condition[:] = self.model.in_table[rows].sum(axis=0, dtype=np.float32)
        self._voice_on[1:] = on
        self.style, self.energy, self.voices = new_style, new_energy, new_voices
        self.scale, self._scale_bits = new_scale, scale_bits(new_scale)

    def save_state(self) -> None:
        """Remember the current state (hidden state, tokens, key, contour, random generator); no allocation."""
        _copy_all(self._state, self._saved)

    def restore_state(self) -> None:
        """Go back to the state of the last ``save_state``: the next step replays as if never left."""
        _copy_all(self._saved, self._state)

    def reset(self, seed: int | None = None) -> None:
        """Forget the past: silent voices, zero state; reseed when ``seed`` is given."""
        self._h[:] = 0.0
        self._tokens[:] = REST
        self._sounding[:] = -1
        self._started[:] = False
        self._key_state[:] = 0.0
        self._key_state[_k.KEY_INDEX] = -1.0
        self._contour[:] = -1
        if seed is not None:
            self._rng[:] = _seed_state(seed)

    @property
    def tokens(self) -> np.ndarray:
        """The last step's tokens [shape=(4,), dtype=int64]."""
        return self._tokens

    @property
    def sounding(self) -> np.ndarray:
        """Each voice's sounding pitch or drum key after the last step, -1 when silent [shape=(4,), dtype=int64]."""
        return self._sounding

    @property
    def started(self) -> np.ndarray:
        """Which voices started a note on the last step [shape=(4,), dtype=bool]."""
        return self._started

    @property
    def logits(self) -> np.ndarray:
        """The last step's output logits before masking and temperature [shape=(V,), dtype=float32]."""
        return self._logits

    def step(self, melody: int, onset: bool, position: int, lead_pitch: int = -1) -> np.ndarray:
        """Play one step and return the four voices' tokens.

        Parameters
        ----------
        melody : int
            The pitch (keys mode, 0-127) or lane (buttons mode, 0-4) sounding now, -1 for none.
        onset : bool
            The player started that note on this step.
        position : int
            Step in the bar (0 on a downbeat).
        lead_pitch : int
            With a pitch (0-127), pulse1 starts that pitch (folded into its range) on this
            step, in either mode: a live engine passes the lead it already sounded (see
            ``preview_lead``). -1 (default): the lead policy of ``follow_lead``.

        Returns
        -------
        np.ndarray [shape=(4,), dtype=int64]
            Tokens (see ``sounding`` and ``started`` for the decoded voices).
        """
        m = self.model
        _k.play_step(
            m.in_table, m.b_ih, m.b_hh, m.w_hh_t, m.w_out_t, m.b_out, TOKEN_OFFSET, ROW_OFFSET, MAX_POSITION,
            self._condition, m.pair_table, PAIR_OFFSET, self._voice_on, self.buttons, int(melody), bool(onset),
            int(position), VOICE_LOW, VOICE_HIGH, _DRUM_KEYS,
            self.follow_lead, self.follow_contour, self._sampling, self._rng, self._h, self._acc, self._gh,
            self._logits, self._rows, self._tokens, self._sounding, self._started, self._key_state, self._contour,
            int(lead_pitch), self._scale_bits,
        )  # fmt: skip
        return self._tokens

    def preview_lead(self, melody: int, position: int) -> int:
        """The pitch pulse1 would start if the player's note ``melody`` began on this step.

        Runs the step on the current state and then puts the state back, so nothing is
        consumed: a live engine sounds the player's note at once with this pitch (in buttons
        mode the model picks it) and passes it as ``lead_pitch`` when the step comes.
        Returns -1 when the model would not start a note (``follow_lead`` off).
        """
        if not self.buttons and self.follow_lead:
            token = _k.lead_token(False, int(melody), True, VOICE_LOW[0], VOICE_HIGH[0])
            return int(VOICE_LOW[0]) + token - FIRST_NOTE
        _copy_all(self._state, self._before_preview)
        self.step(melody, True, position)
        pitch = int(self._sounding[0]) if self._started[0] else -1
        _copy_all(self._before_preview, self._state)
        return pitch

    def run(self, melody: np.ndarray, onset: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Play many steps at once, continuing from the current state (same result as ``step`` in a loop).

        Parameters
        ----------
        melody : np.ndarray [shape=(T,), dtype=int]
        onset : np.ndarray [shape=(T,), dtype=bool]
        position : np.ndarray [shape=(T,), dtype=int]

        Returns
        -------
        np.ndarray [shape=(T, 4), dtype=int64]
            Tokens per step and voice.
        """
        melody_arr = np.ascontiguousarray(melody, dtype=np.int64)
        onset_arr = np.ascontiguousarray(onset, dtype=np.bool_)
        position_arr = np.ascontiguousarray(position, dtype=np.int64)
        if melody_arr.ndim != 1 or onset_arr.shape != melody_arr.shape or position_arr.shape != melody_arr.shape:
            raise ParameterError(
                f"melody {melody_arr.shape}, onset {onset_arr.shape} and position {position_arr.shape} "
                "must be 1-D of one length"
            )
        out = np.zeros((len(melody_arr), 4), dtype=np.int64)
        m = self.model
        _k.run(
            m.in_table, m.b_ih, m.b_hh, m.w_hh_t, m.w_out_t, m.b_out, TOKEN_OFFSET, ROW_OFFSET, MAX_POSITION,
            self._condition, m.pair_table, PAIR_OFFSET, self._voice_on, self.buttons, melody_arr, onset_arr,
            position_arr, VOICE_LOW, VOICE_HIGH, _DRUM_KEYS,
            self.follow_lead, self.follow_contour, self._sampling, self._rng, self._h, self._tokens, self._sounding,
            self._key_state, self._contour, self._scale_bits, out,
        )  # fmt: skip
        if len(out):
            self._started[:] = out[-1] >= FIRST_NOTE
        return out


def teacher_forced_log_prob(
    model: ArrangerModel,
    melody: np.ndarray,
    onset: np.ndarray,
    position: np.ndarray,
    tokens: np.ndarray,
    *,
    mode: InputMode = "keys",
    style: str | None = None,
    energy: str = "mid",
    scale: str | Scale | None = None,
    scale_voices: typing.Iterable[str] = ("pulse2", "triangle"),
) -> np.ndarray:
    """Log p of each real token given the real past (teacher forcing), per step and voice.

    Each voice is scored given the real tokens of the voices drawn before it on the same
    step (``SAMPLING_ORDER``), so a row sums to the step's joint log-probability. The
    voices' settings are the real arrangement's, bar by bar (``bar_voice_flags``), as in
    training; ``style`` (default as ``Arranger``'s) and ``energy`` are the given ones.

    Parameters
    ----------
    melody, onset, position : np.ndarray [shape=(T,)]
        The input, as for ``Arranger.run``.
    tokens : np.ndarray [shape=(T, 4), dtype=int]
        The real arrangement's tokens (``voices_to_tokens``).
    mode : {"keys", "buttons"}
    scale : str or Scale, optional
        A scale lock (``Arranger``'s): the voices named in ``scale_voices`` (any of pulse1,
        pulse2, triangle) are scored over the tokens the lock allows, renormalised, as the
        lock samples them; a real token the lock forbids scores -inf.

    Returns
    -------
    np.ndarray [shape=(T, 4), dtype=float64]
        Natural-log probabilities (hold is impossible after a rest, as when sampling).
    """
    buttons = _check_mode(mode)
    melody_arr = np.ascontiguousarray(melody, dtype=np.int64)
    target = np.ascontiguousarray(tokens, dtype=np.int64)
    if target.shape != (len(melody_arr), 4):
        raise ParameterError(f"tokens have shape {target.shape}; expected ({len(melody_arr)}, 4)")
    if (target < 0).any() or (target >= np.array(N_TOKENS)).any():
        raise ParameterError("tokens hold values outside each voice's vocabulary; make them with voices_to_tokens")
    out = np.zeros((len(melody_arr), 4), dtype=np.float64)
    m = model
    position_arr = np.ascontiguousarray(position, dtype=np.int64)
    chosen = style if style is not None else ("chip" if "chip" in m.styles else m.styles[0])
    settings = condition_rows(style_index(m, chosen), energy_index(energy), bar_voice_flags(target, position_arr))
    _k.teacher_forced_log_prob(
        m.in_table, m.b_ih, m.b_hh, m.w_hh_t, m.w_out_t, m.b_out, TOKEN_OFFSET, ROW_OFFSET, MAX_POSITION,
        m.pair_table, PAIR_OFFSET, VOICE_LOW, buttons, melody_arr, np.ascontiguousarray(onset, dtype=np.bool_),
        position_arr, settings, target, np.zeros(m.hidden, dtype=np.float32), out, scale_bits(parse_scale(scale)),
        _voice_bits(scale_voices),
    )  # fmt: skip
    return out


def _voice_bits(names: typing.Iterable[str]) -> int:
    chosen = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in chosen if name not in VOICE_NAMES[:3]]
    if unknown:
        raise ParameterError(f"scale voices {unknown!r}: choose any of {', '.join(VOICE_NAMES[:3])}")
    return sum(1 << VOICE_NAMES.index(name) for name in chosen)


def voices_to_tokens(pitch: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """Encode four voices (``Arrangement.pitch``/``onset`` or ``song_arrays``' ``voice_*``) as tokens.

    Parameters
    ----------
    pitch : np.ndarray [shape=(T, 4), dtype=int]
        -1 for silence; drum keys for the noise voice.
    onset : np.ndarray [shape=(T, 4), dtype=bool]

    Returns
    -------
    np.ndarray [shape=(T, 4), dtype=int64]
        Pitched voices outside their range are folded by octaves; a drum key outside
        ``DRUM_KEYS`` becomes a rest.
    """
    pitch_arr = np.ascontiguousarray(pitch, dtype=np.int64)
    onset_arr = np.ascontiguousarray(onset, dtype=np.bool_)
    if pitch_arr.ndim != 2 or pitch_arr.shape[1] != 4 or onset_arr.shape != pitch_arr.shape:
        raise ParameterError(f"pitch {pitch_arr.shape} and onset {onset_arr.shape} must both be (T, 4)")
    out = np.zeros(pitch_arr.shape, dtype=np.int64)
    _k.voices_to_tokens(pitch_arr, onset_arr, VOICE_LOW, VOICE_HIGH, _DRUM_KEYS, out)
    return out


def tokens_to_arrangement(tokens: np.ndarray, *, steps_per_beat: int = 4) -> Arrangement:
    """Decode tokens (T, 4) into an ``Arrangement`` (pitch per step and voice, onsets)."""
    token_arr = np.ascontiguousarray(tokens, dtype=np.int64)
    if token_arr.ndim != 2 or token_arr.shape[1] != 4:
        raise ParameterError(f"tokens have shape {token_arr.shape}; expected (T, 4)")
    pitch = np.zeros(token_arr.shape, dtype=np.int64)
    onset = np.zeros(token_arr.shape, dtype=np.bool_)
    _k.tokens_to_voices(token_arr, VOICE_LOW, _DRUM_KEYS, pitch, onset)
    return Arrangement(pitch.astype(np.int16), onset, steps_per_beat)


def warmup(model: ArrangerModel | None = None) -> None:
    """Compile (or load from numba's cache) every kernel of the step, before any port opens."""
    model = model if model is not None else load_model()
    # Every call the live engine makes on a note, so the first note played is as quick as
    # the rest (loading one kernel from the cache took 3-7 ms there, missing a JACK cycle).
    for arranger, melody in ((Arranger(model), 60), (Arranger(model, mode="buttons", scale="C:major"), 2)):
        arranger.save_state()
        lead = arranger.preview_lead(melody, 0)
        arranger.step(melody, True, 0, lead_pitch=lead)
        arranger.restore_state()
        arranger.step(melody, True, 0)
    Arranger(model).run(np.array([60, -1]), np.array([True, False]), np.array([0, 1]))
    tokens = voices_to_tokens(np.full((2, 4), -1), np.zeros((2, 4), bool))
    tokens_to_arrangement(tokens)
    teacher_forced_log_prob(model, np.array([60, 60]), np.array([True, False]), np.array([0, 1]), tokens)
