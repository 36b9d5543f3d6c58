"""Chip files out of a four-voice arrangement file: NSF, FamiTracker text, WAV.

The format comes from the output's extension (``.nsf``, ``.txt``, ``.wav``; ``.mid`` is the
arrangement itself) or is named. Every format reads the same chip model
(``chip_model.read_song`` of the arrangement file), so a note sounds the same in each.
"""

from __future__ import annotations

import os
from pathlib import Path

from chiptuner.errors import ParameterError

__all__ = ["FORMATS", "EXTENSIONS", "output_format", "export_file"]

#: Output formats and what they are.
FORMATS = {
    "midi": "the four-voice arrangement as MIDI (the output contract)",
    "nsf": "an NSF file: the chip's register writes replayed by a 6502 driver (NSF players, emulators)",
    "famitracker": "FamiTracker text (.txt): import into FamiTracker, 0CC-/Dn-FamiTracker or FamiStudio",
    "wav": "16-bit WAV: the chip model's notes through the built-in chip synth",
}
EXTENSIONS = {".mid": "midi", ".midi": "midi", ".nsf": "nsf", ".txt": "famitracker", ".wav": "wav"}


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format to write ``path`` in: ``format`` when given, else its extension's.

    Raises
    ------
    ParameterError
        An unknown format, or an extension that names none (and no format given).
    """
    if format is not None:
        if format not in FORMATS:
            raise ParameterError(f"format {format!r} is unknown; use one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ParameterError(
            f"cannot tell the format of {os.fspath(path)!r} from its extension; end it in "
            f"{', '.join(EXTENSIONS)} or give --format ({', '.join(FORMATS)})"
        )
    return EXTENSIONS[suffix]


def export_file(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    sample_rate: int = 44100,
    title: str | None = None,
    swing: float = 0.0,
) -> tuple[str, int]:
    """Write a four-voice arrangement file (as ``chiptuner arrange`` writes it) as a chip file.

    ``title`` (NSF and FamiTracker) defaults to the source's file name without its extension.
    ``swing`` is the swing the source was written with (``chiptuner arrange --swing``): the
    chip file swings the same way, each off-beat 16th on the frame nearest its swung start.

    Returns
    -------
    format : str
    size : int
        Bytes written.

    Raises
    ------
    ParameterError
        An unknown format; ``midi`` (the source is one already).
    MidiFileError
        A source that is not a four-voice arrangement.
    """
    from chiptuner.chip_model import read_song  # noqa: PLC0415 (the CLI imports this module at start-up)

    fmt = output_format(out, format)
    if fmt == "midi":
        raise ParameterError("the arrangement is MIDI already; export it as nsf, famitracker or wav")
    song = read_song(source, swing=swing)
    if fmt == "wav":
        from chiptuner.synth import render_song, write_wav  # noqa: PLC0415 (numba kernels compile on import)

        write_wav(out, render_song(song, sample_rate=sample_rate), sample_rate=sample_rate)
        return fmt, Path(out).stat().st_size
    if fmt == "nsf":
        from chiptuner.nsf import write_nsf  # noqa: PLC0415

        return fmt, write_nsf(song, out, title=song.title if title is None else title)
    from chiptuner.famitracker import write_famitracker  # noqa: PLC0415

    return fmt, write_famitracker(song, out, title=song.title if title is None else title)
