"""chiptuner: turn a simple melody into a four-voice chiptune band, live.

The data path: MIDI bytes -> Score (note arrays, tempo map) -> 16th-note grid -> piano
roll -> simplified melody (the model's input) and four chip voices (its target).
"""

from chiptuner.errors import ChiptunerError, MidiFileError, ParameterError
from chiptuner.midi_io import read_midi, write_midi
from chiptuner.types import VOICE_NAMES, Arrangement, Melody, Notes, Score, TempoMap, TimeSignatures

__all__ = [
    "ChiptunerError",
    "MidiFileError",
    "ParameterError",
    "read_midi",
    "write_midi",
    "Score",
    "Notes",
    "TempoMap",
    "TimeSignatures",
    "Melody",
    "Arrangement",
    "VOICE_NAMES",
]

__version__ = "0.1.0"
