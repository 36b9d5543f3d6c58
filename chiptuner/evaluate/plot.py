"""Piano-roll pictures of arrangements, written as PNG with numpy and zlib only.

Rows are pitches (high at the top), columns are steps; each voice has its own colour
and a note's first step is drawn brighter, so repeated notes stay visible. The noise
voice is drawn in a band of five rows under the pitches, one per drum class.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from chiptuner.voices import DRUM_KEYS

__all__ = ["piano_roll_image", "stack_images", "write_png", "VOICE_COLOURS", "MELODY_COLOUR"]

#: RGB of pulse1, pulse2, triangle and noise.
VOICE_COLOURS = np.array([[230, 60, 60], [240, 170, 40], [60, 140, 240], [80, 200, 110]], dtype=np.uint8)
MELODY_COLOUR = np.array([120, 120, 120], dtype=np.uint8)
_BACKGROUND = np.array([250, 250, 248], dtype=np.uint8)
_GRID = np.array([225, 225, 222], dtype=np.uint8)
_LOW, _HIGH = 24, 100  # the pitch rows drawn (every voice range fits)


def piano_roll_image(
    melody_pitch: np.ndarray,
    voice_pitch: np.ndarray,
    voice_onset: np.ndarray,
    *,
    px_per_step: int = 3,
    px_per_pitch: int = 3,
) -> np.ndarray:
    """Draw the input melody (grey, underneath) and the four voices on one piano roll.

    Parameters
    ----------
    melody_pitch : np.ndarray [shape=(T,), dtype=int]
        -1 for a rest.
    voice_pitch : np.ndarray [shape=(T, 4), dtype=int]
    voice_onset : np.ndarray [shape=(T, 4), dtype=bool]
    px_per_step, px_per_pitch : int

    Returns
    -------
    np.ndarray [shape=(H, W, 3), dtype=uint8]
    """
    n_steps = len(melody_pitch)
    n_rows = _HIGH - _LOW + 1 + 1 + len(DRUM_KEYS)  # pitches, a gap, the drum band
    image = np.empty((n_rows * px_per_pitch, n_steps * px_per_step, 3), dtype=np.uint8)
    image[:] = _BACKGROUND
    for bar in range(0, n_steps, 16):  # bar lines every 16 steps
        image[:, bar * px_per_step] = _GRID

    def paint(row: int, step: int, colour: np.ndarray, bright: bool) -> None:
        y, x = row * px_per_pitch, step * px_per_step
        shade = colour if bright else (colour.astype(np.int32) * 3 // 4 + 64).astype(np.uint8)
        image[y : y + px_per_pitch - 1, x : x + px_per_step] = shade

    for t in np.flatnonzero(np.asarray(melody_pitch) >= 0).tolist():
        pitch = int(melody_pitch[t])
        if _LOW <= pitch <= _HIGH:
            paint(_HIGH - pitch, t, MELODY_COLOUR, False)
    for v in range(4):
        for t in np.flatnonzero(np.asarray(voice_pitch)[:, v] >= 0).tolist():
            pitch = int(voice_pitch[t, v])
            if v == 3:
                classes = np.flatnonzero(DRUM_KEYS == pitch)
                if not len(classes):
                    continue
                row = _HIGH - _LOW + 2 + int(classes[0])
            elif _LOW <= pitch <= _HIGH:
                row = _HIGH - pitch
            else:
                continue
            paint(row, t, VOICE_COLOURS[v], bool(voice_onset[t, v]))
    return image


def stack_images(*images: np.ndarray, gap_px: int = 6) -> np.ndarray:
    """Put images one under the other (widths padded to the widest), with a dark gap between."""
    width = max(image.shape[1] for image in images)
    parts = []
    for i, image in enumerate(images):
        padded = np.full((image.shape[0], width, 3), _BACKGROUND, dtype=np.uint8)
        padded[:, : image.shape[1]] = image
        parts.append(padded)
        if i < len(images) - 1:
            parts.append(np.full((gap_px, width, 3), 60, dtype=np.uint8))
    return np.concatenate(parts, axis=0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB image [shape=(H, W, 3), dtype=uint8] as a PNG file."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {image.shape}; expected (H, W, 3)")
    height, width = image.shape[:2]
    raw = np.concatenate((np.zeros((height, 1), dtype=np.uint8), image.reshape(height, width * 3)), axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b"")
        )
