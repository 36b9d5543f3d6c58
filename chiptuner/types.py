"""Frozen containers of arrays: the values that flow between the stages.

Notes are parallel arrays (struct of arrays), never an object per note. Every
array is read-only once it is inside a container, so no stage can mutate what
another stage holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Notes",
    "TempoMap",
    "TimeSignatures",
    "Score",
    "Melody",
    "Arrangement",
    "VOICE_NAMES",
    "DEFAULT_US_PER_BEAT",
]

#: Tempo assumed where a file has no tempo event (120 BPM), as the MIDI standard says.
DEFAULT_US_PER_BEAT = 500_000

#: The four chip voices, in the order of every (T, 4) array.
VOICE_NAMES = ("pulse1", "pulse2", "triangle", "noise")


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    # A read-only view: no copy on the hot path, and the caller's own array keeps its flags.
    # Containers take their arrays as handed in; callers do not write to them afterwards.
    if type(array) is np.ndarray and array.dtype == dtype and array.flags.c_contiguous:
        out = array.view()
    else:
        out = np.ascontiguousarray(array, dtype=dtype).view()
    out.setflags(write=False)  # half the cost of assigning flags.writeable
    return out


class _Adoptable:
    """``_adopt``: the fast constructor for arrays this package has just made itself."""

    _ARRAYS: tuple[str, ...] = ()

    @classmethod
    def _adopt(cls, *arrays: np.ndarray, **scalars: object):
        """Wrap fresh arrays of the right dtypes and shapes without copying or checking them.

        Only for arrays that nothing else holds a writable reference to (a kernel's fresh
        outputs): they are made read-only in place. The public constructor checks and
        views instead; on small songs its checks cost more than the kernels.
        """
        for array in arrays:
            array.setflags(write=False)
        # _wrap inlined: a classmethod call forwarding *arrays costs as much as the body
        self = object.__new__(cls)
        # strict=False: strict=True costs a third of the call, and the callers are this package's own.
        for name, array in zip(cls._ARRAYS, arrays, strict=False):
            scalars[name] = array  # the keyword dict is this call's own: it becomes __dict__
        object.__setattr__(self, "__dict__", scalars)  # frozen: one write instead of one per field
        return self

    @classmethod
    def _wrap(cls, *arrays: np.ndarray, **scalars: object):
        """``_adopt`` for arrays that are read-only already (slices of a buffer made read-only)."""
        self = object.__new__(cls)
        for name, array in zip(cls._ARRAYS, arrays, strict=False):
            scalars[name] = array
        object.__setattr__(self, "__dict__", scalars)
        return self


_NOTE_DTYPES = (
    ("start_tick", np.int64),
    ("end_tick", np.int64),
    ("pitch", np.int16),
    ("velocity", np.int16),
    ("channel", np.int8),
    ("program", np.int16),
    ("track", np.int32),
    ("is_drum", np.bool_),
)


@dataclass(frozen=True, eq=False)
class Notes(_Adoptable):
    """Notes as parallel arrays, all of length N.

    Attributes
    ----------
    start_tick, end_tick : np.ndarray [shape=(N,), dtype=int64]
        Onset and release in ticks from the start of the file; ``end_tick >= start_tick``.
    pitch, velocity : np.ndarray [shape=(N,), dtype=int16]
        MIDI key 0-127 and note-on velocity 1-127.
    channel : np.ndarray [shape=(N,), dtype=int8]
        MIDI channel 0-15.
    program : np.ndarray [shape=(N,), dtype=int16]
        General MIDI program 0-127 in force on the channel at the onset.
    track : np.ndarray [shape=(N,), dtype=int32]
        Index of the track chunk the note was read from.
    is_drum : np.ndarray [shape=(N,), dtype=bool]
        True for notes on channel 10 (index 9), the General MIDI percussion channel.
    """

    start_tick: np.ndarray
    end_tick: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    channel: np.ndarray
    program: np.ndarray
    track: np.ndarray
    is_drum: np.ndarray
    _ARRAYS = tuple(name for name, _ in _NOTE_DTYPES)

    def __post_init__(self) -> None:
        n = len(self.start_tick)
        for name, dtype in _NOTE_DTYPES:
            array = _frozen(getattr(self, name), dtype)
            if array.ndim != 1 or len(array) != n:
                raise ValueError(f"Notes.{name} has shape {array.shape}; expected ({n},) like start_tick")
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.start_tick)

    @classmethod
    def empty(cls) -> Notes:
        """No notes at all."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, z, z, z.astype(bool))

    def take(self, index: np.ndarray) -> Notes:
        """The notes selected by an integer index or a boolean mask, in that order."""
        return Notes(
            self.start_tick[index],
            self.end_tick[index],
            self.pitch[index],
            self.velocity[index],
            self.channel[index],
            self.program[index],
            self.track[index],
            self.is_drum[index],
        )


@dataclass(frozen=True, eq=False)
class TempoMap(_Adoptable):
    """Tempo changes, sorted by tick; the first entry is always at tick 0.

    Attributes
    ----------
    tick : np.ndarray [shape=(K,), dtype=int64]
    us_per_beat : np.ndarray [shape=(K,), dtype=int64]
        Microseconds per quarter note from that tick on.
    """

    tick: np.ndarray
    us_per_beat: np.ndarray
    _ARRAYS = ("tick", "us_per_beat")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick", _frozen(self.tick, np.int64))
        object.__setattr__(self, "us_per_beat", _frozen(self.us_per_beat, np.int64))

    def __len__(self) -> int:
        return len(self.tick)


@dataclass(frozen=True, eq=False)
class TimeSignatures(_Adoptable):
    """Time-signature changes, sorted by tick (may be empty: 4/4 is then assumed).

    Attributes
    ----------
    tick : np.ndarray [shape=(K,), dtype=int64]
    numerator, denominator : np.ndarray [shape=(K,), dtype=int16]
        As written, e.g. 6 and 8 for 6/8.
    """

    tick: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray
    _ARRAYS = ("tick", "numerator", "denominator")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick", _frozen(self.tick, np.int64))
        object.__setattr__(self, "numerator", _frozen(self.numerator, np.int16))
        object.__setattr__(self, "denominator", _frozen(self.denominator, np.int16))

    def __len__(self) -> int:
        return len(self.tick)


@dataclass(frozen=True, eq=False)
class Score:
    """A MIDI file's musical content.

    Attributes
    ----------
    notes : Notes
        Every note of every track, grouped by track (in file order) and sorted by
        ``start_tick`` within a track; not sorted across tracks (no stage needs that,
        and sorting would double the cost of reading).
    tempo : TempoMap
    time_signatures : TimeSignatures
    ticks_per_beat : int
        Ticks per quarter note. For SMPTE files (ticks per second) this is set so that
        the default 120 BPM tempo map gives the right seconds, and ``smpte`` is True.
    track_names : tuple of str
        One entry per track chunk actually present ("" where unnamed).
    smpte : bool
    repairs : tuple of str
        What the reader had to recover from (missing end-of-track, unreleased notes,
        a truncated chunk, ...); empty for a clean file.
    """

    notes: Notes
    tempo: TempoMap
    time_signatures: TimeSignatures
    ticks_per_beat: int
    track_names: tuple[str, ...] = ()
    smpte: bool = False
    repairs: tuple[str, ...] = field(default=())

    @functools.cached_property
    def end_tick(self) -> int:
        """The last release tick (0 for a score without notes)."""
        return int(self.notes.end_tick.max()) if len(self.notes) else 0

    @classmethod
    def _adopt(
        cls,
        notes: Notes,
        tempo: TempoMap,
        time_signatures: TimeSignatures,
        ticks_per_beat: int,
        track_names: tuple[str, ...],
        smpte: bool,
        repairs: tuple[str, ...],
        *,
        end_tick: int,
    ) -> Score:
        """The reader's fast constructor: fields as given, ``end_tick`` already known (not checked)."""
        self = object.__new__(cls)
        object.__setattr__(
            self,
            "__dict__",
            {
                "notes": notes,
                "tempo": tempo,
                "time_signatures": time_signatures,
                "ticks_per_beat": ticks_per_beat,
                "track_names": track_names,
                "smpte": smpte,
                "repairs": repairs,
                "end_tick": end_tick,
            },
        )
        return self


@dataclass(frozen=True, eq=False)
class Melody(_Adoptable):
    """A monophonic line on the 16th-note step grid.

    Attributes
    ----------
    pitch : np.ndarray [shape=(T,), dtype=int16]
        Sounding MIDI pitch per step, -1 for a rest.
    onset : np.ndarray [shape=(T,), dtype=bool]
        True where a note starts at that step (a repeated pitch has a new onset).
    steps_per_beat : int
    """

    pitch: np.ndarray
    onset: np.ndarray
    steps_per_beat: int = 4
    _ARRAYS = ("pitch", "onset")

    def __post_init__(self) -> None:
        pitch = _frozen(self.pitch, np.int16)
        onset = _frozen(self.onset, np.bool_)
        if pitch.ndim != 1 or onset.shape != pitch.shape:
            raise ValueError(f"Melody pitch {pitch.shape} and onset {onset.shape} must be equal 1-D shapes")
        object.__setattr__(self, "pitch", pitch)
        object.__setattr__(self, "onset", onset)

    def __len__(self) -> int:
        return len(self.pitch)


@dataclass(frozen=True, eq=False)
class Arrangement(_Adoptable):
    """The four chip voices on the step grid, in the order of ``VOICE_NAMES``.

    Attributes
    ----------
    pitch : np.ndarray [shape=(T, 4), dtype=int16]
        Sounding pitch per step and voice, -1 for silence. For the noise voice the
        pitch is the General MIDI drum key (36, 38, 42, 46, 49).
    onset : np.ndarray [shape=(T, 4), dtype=bool]
    steps_per_beat : int
    """

    pitch: np.ndarray
    onset: np.ndarray
    steps_per_beat: int = 4
    _ARRAYS = ("pitch", "onset")

    def __post_init__(self) -> None:
        pitch = _frozen(self.pitch, np.int16)
        onset = _frozen(self.onset, np.bool_)
        if pitch.ndim != 2 or pitch.shape[1] != 4 or onset.shape != pitch.shape:
            raise ValueError(f"Arrangement pitch {pitch.shape} and onset {onset.shape} must both be (T, 4)")
        object.__setattr__(self, "pitch", pitch)
        object.__setattr__(self, "onset", onset)

    def __len__(self) -> int:
        return len(self.pitch)
