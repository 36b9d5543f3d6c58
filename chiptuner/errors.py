"""The error types chiptuner raises at its boundary.

Every message names the bad value and says how to fix it.
"""

from __future__ import annotations

__all__ = ["ChiptunerError", "MidiFileError", "MidiSystemError", "ParameterError", "ModelFileError", "OutputError"]


class ChiptunerError(Exception):
    """Base class of every error chiptuner raises on purpose."""


class MidiFileError(ChiptunerError, ValueError):
    """A file that cannot be read as MIDI, or whose content is unusable (too long, too many notes)."""


class ParameterError(ChiptunerError, ValueError):
    """An argument with a wrong value (an unknown mode, a negative size)."""


class ModelFileError(ChiptunerError, ValueError):
    """A model file that is missing, not an arranger export, of another format version, or damaged."""


class MidiSystemError(ChiptunerError, OSError):
    """No MIDI system to open ports on, a port that cannot be opened, or a server that went away."""


class OutputError(ChiptunerError):
    """An output folder that cannot take this run: in use by another run, or a write into it failed (a full disk)."""
