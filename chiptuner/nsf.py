"""NSF files: the chip model's register writes replayed by a small 6502 driver.

The file is an NSF 1 image (the format of the nesdev wiki's "NSF" page): a 128-byte header,
then 4 KB banks. Bank 0, mapped at $8000, holds the driver (``chiptuner/asm/nsf_driver.s``,
assembled with cc65 into ``nsf_driver.bin``, which is committed: building an NSF needs no
assembler). Banks 1, 2, ... hold the byte stream of ``_kernels.nsf.encode_stream``, read
through the window $9000-$9FFF; the driver switches the next bank in at the window's end,
so a song's length is bounded only by 255 banks (about 1 MB, hours of music).

INIT is at $8000, PLAY at $8003, one song, NTSC, play speed ``chip_model.NSF_PLAY_SPEED_US``:
one PLAY call per frame of the chip model, whose writes it makes in the model's order.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from chiptuner._kernels import nsf as _k
from chiptuner.chip_model import NSF_PLAY_SPEED_US, ChipFrames, ChipSong, frame_writes, play
from chiptuner.errors import ParameterError

__all__ = ["DRIVER_PATH", "BANK_SIZE", "INIT_ADDRESS", "PLAY_ADDRESS", "nsf_bytes", "write_nsf", "driver_bytes"]

#: The assembled driver (``ca65 nsf_driver.s && ld65 -C nsf_driver.cfg``); its source beside it.
DRIVER_PATH = Path(__file__).resolve().parent / "asm" / "nsf_driver.bin"
BANK_SIZE = 0x1000
LOAD_ADDRESS = 0x8000
INIT_ADDRESS = 0x8000
PLAY_ADDRESS = 0x8003
HEADER_SIZE = 0x80
#: PAL play speed written in the header (the song is NTSC-only, flagged so).
PAL_PLAY_SPEED_US = 19997
#: Banks of $8000-$FFFF at start: the driver, then the first data bank at $9000; the rest unused.
INITIAL_BANKS = (0, 1, 0, 0, 0, 0, 0, 0)
MAX_DATA_BANKS = 255


def driver_bytes() -> bytes:
    """The assembled driver (bank 0's code)."""
    return DRIVER_PATH.read_bytes()


def _text_field(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:31]
    return raw + b"\0" * (32 - len(raw))


def nsf_bytes(
    song_or_frames: ChipSong | ChipFrames, *, title: str | None = None, artist: str = "chiptuner", copyright: str = ""
) -> bytes:
    """The NSF file of a song.

    Parameters
    ----------
    song_or_frames : ChipSong or ChipFrames
        A song (run through ``chip_model.play``) or the model's frames.
    title, artist, copyright : str
        Header fields, ASCII, cut to 31 characters; ``title`` defaults to the song's.

    Raises
    ------
    ParameterError
        A song whose data would need more than 255 banks (about 1 MB).
    """
    if isinstance(song_or_frames, ChipSong):
        frames = play(song_or_frames)
        title = song_or_frames.title if title is None else title
    else:
        frames = song_or_frames
    frame, register, value = frame_writes(frames)
    # Two bytes a write, one per frame with writes, one per 127 frames of silence, the end.
    stream = np.empty(3 * len(frame) + len(frames) // (_k.MAX_SKIP + 1) + 2, np.uint8)
    length = _k.encode_stream(frame, register, value, len(frames), stream)
    n_banks = -(-length // BANK_SIZE)
    if n_banks > MAX_DATA_BANKS:
        raise ParameterError(
            f"the song needs {n_banks} banks of NSF data, over the {MAX_DATA_BANKS} the driver can map; cut it shorter"
        )
    driver = driver_bytes()
    header = (
        b"NESM\x1a"
        + bytes([1, 1, 1])
        + struct.pack("<HHH", LOAD_ADDRESS, INIT_ADDRESS, PLAY_ADDRESS)
        + _text_field(title or "")
        + _text_field(artist)
        + _text_field(copyright)
        + struct.pack("<H", NSF_PLAY_SPEED_US)
        + bytes(INITIAL_BANKS)
        + struct.pack("<H", PAL_PLAY_SPEED_US)
        + bytes([0, 0])  # NTSC only; no expansion chip
        + bytes(4)
    )
    assert len(header) == HEADER_SIZE
    data = bytearray(BANK_SIZE * (1 + n_banks))
    data[: len(driver)] = driver
    data[BANK_SIZE : BANK_SIZE + length] = stream[:length].tobytes()
    return header + bytes(data)


def write_nsf(song_or_frames: ChipSong | ChipFrames, path: str | os.PathLike, **fields: str) -> int:
    """Write the NSF file of a song (``nsf_bytes``); returns its size in bytes."""
    data = nsf_bytes(song_or_frames, **fields)
    Path(path).write_bytes(data)
    return len(data)
