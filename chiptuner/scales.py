"""The scale lock: a tonic and a mode (``C:major``, ``A:minor``, ``D:dorian``) as the pitch classes it allows.

Pure Python on purpose: the command lines check ``--scale`` and list the modes in
``--help`` before numba loads. The arranger's kernel takes a scale as ``bits`` (bit ``k``
set: pitch class ``k`` allowed) and masks every note the model picks to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from chiptuner.errors import ParameterError

__all__ = ["Scale", "SCALE_MODES", "TONIC_NAMES", "ALL_PITCH_CLASSES", "parse_scale", "scale_bits", "SCALE_CHOICES"]

#: Semitones above the tonic of each mode the lock accepts (the minor is the natural minor).
SCALE_MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "harmonic-minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic-minor": (0, 2, 3, 5, 7, 9, 11),
    "major-pentatonic": (0, 2, 4, 7, 9),
    "minor-pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
#: Other names of the same modes.
_MODE_ALIASES = {"ionian": "major", "aeolian": "minor", "maj": "major", "min": "minor"}
#: Tonic spellings, sharps and flats, to pitch classes.
_TONICS = {
    "C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4, "F": 5, "E#": 5, "F#": 6, "GB": 6,
    "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11, "CB": 11,
}  # fmt: skip
TONIC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: ``bits`` of no lock: all twelve pitch classes.
ALL_PITCH_CLASSES = 0xFFF
#: The choices in words, for ``--help`` and every message that refuses a scale.
SCALE_CHOICES = f"TONIC:MODE, TONIC one of C, C#, Db ... B, MODE one of {', '.join(SCALE_MODES)}; or off"


@dataclass(frozen=True)
class Scale:
    """A scale to lock the band to.

    Attributes
    ----------
    tonic : int
        Pitch class of the tonic, 0 (C) to 11 (B).
    mode : str
        One of ``SCALE_MODES``.
    """

    tonic: int
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in SCALE_MODES:
            raise ParameterError(f"scale mode is {self.mode!r}; use one of {', '.join(SCALE_MODES)}")
        if isinstance(self.tonic, bool) or not isinstance(self.tonic, int) or not 0 <= self.tonic < 12:
            raise ParameterError(f"scale tonic is {self.tonic!r}; use a pitch class 0 (C) to 11 (B)")

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        """The allowed pitch classes, ascending."""
        return tuple(sorted((self.tonic + step) % 12 for step in SCALE_MODES[self.mode]))

    @property
    def bits(self) -> int:
        """The kernel's form: bit ``k`` set where pitch class ``k`` is allowed."""
        return sum(1 << pc for pc in self.pitch_classes)

    def allows(self, pitch: int) -> bool:
        """Whether MIDI ``pitch`` is in the scale."""
        return (self.bits >> (int(pitch) % 12)) & 1 == 1

    @property
    def name(self) -> str:
        """``TONIC:MODE`` as ``parse_scale`` reads it."""
        return f"{TONIC_NAMES[self.tonic]}:{self.mode}"

    def __str__(self) -> str:
        return self.name


def parse_scale(text: str | Scale | None) -> Scale | None:
    """A scale from ``"C:major"``, ``"A:minor"``, ``"F#:dorian"`` (case-insensitive); None for ``"off"``/None.

    Raises ``ParameterError`` naming the choices for anything else.
    """
    if text is None or isinstance(text, Scale):
        return text
    if not isinstance(text, str):
        raise ParameterError(f"scale is {text!r}; give {SCALE_CHOICES}")
    spoken = text.strip()
    if spoken.lower() in ("off", "none", ""):
        return None
    tonic_text, sep, mode_text = spoken.partition(":")
    tonic = _TONICS.get(tonic_text.strip().upper().replace("♯", "#").replace("♭", "B"))
    mode = mode_text.strip().lower().replace("_", "-").replace(" ", "-")
    mode = _MODE_ALIASES.get(mode, mode)
    if not sep or tonic is None or mode not in SCALE_MODES:
        raise ParameterError(f"scale {text!r}: give {SCALE_CHOICES}")
    return Scale(tonic, mode)


def scale_bits(scale: Scale | None) -> int:
    """``scale.bits``, or ``ALL_PITCH_CLASSES`` for no lock."""
    return ALL_PITCH_CLASSES if scale is None else scale.bits
