"""Piano-roll pictures of arrangements: matplotlib figures where it is installed, numpy-only PNGs otherwise.

``write_piano_rolls`` is what the evaluation calls. With matplotlib (``pip install
'chiptuner[plot]'``) each arrangement is a panel of pitches (named on the y axis, C4 = MIDI 60)
over a drum lane (one labelled row per drum class), with bar lines and bar numbers, one colour per
voice and a legend, and the song as the title; several arrangements of one melody (the model's
over the real one) are stacked. Without it the dependency-free roll below is written instead.

In both, a note's first step is drawn in its voice's colour and the rest of it dimmer, so
repeated notes stay visible, and the input melody is grey, underneath the voices. The
dependency-free roll (``piano_roll_image``): rows are pitches (high at the top), columns are
steps, and the noise voice is drawn in a band of five rows under the pitches, one per drum class.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from chiptuner.types import VOICE_NAMES
from chiptuner.voices import DRUM_KEYS, DRUM_NAMES

__all__ = [
    "piano_roll_image",
    "stack_images",
    "write_png",
    "write_piano_rolls",
    "piano_roll_figure",
    "figure_pixels",
    "pitch_name",
    "VOICE_COLOURS",
    "MELODY_COLOUR",
    "FIGURE_DPI",
    "FIGURE_WIDTH_PX",
    "HEADER_PX",
    "PANEL_PX",
]

logger = logging.getLogger(__name__)

#: RGB of pulse1, pulse2, triangle and noise.
VOICE_COLOURS = np.array([[230, 60, 60], [240, 170, 40], [60, 140, 240], [80, 200, 110]], dtype=np.uint8)
MELODY_COLOUR = np.array([120, 120, 120], dtype=np.uint8)
_BACKGROUND = np.array([250, 250, 248], dtype=np.uint8)
_GRID = np.array([225, 225, 222], dtype=np.uint8)
_LOW, _HIGH = 24, 100  # the pitch rows drawn (every voice range fits)

#: A matplotlib picture's size is fixed, so the same arrangements always give the same file:
#: FIGURE_WIDTH_PX wide and HEADER_PX (title and legend) plus PANEL_PX per arrangement high,
#: at FIGURE_DPI. The sizes are whole multiples of half an inch, so inches times dpi is exact.
FIGURE_DPI = 100
FIGURE_WIDTH_PX = 1600
HEADER_PX = 50
PANEL_PX = 450
_NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LABELLED_PITCH_CLASSES = (0, 4, 7)  # C, E and G are named on the y axis; more would crowd it
_BLACK_KEYS = (1, 3, 6, 8, 10)  # pitch classes whose rows are shaded, as on a keyboard
_MAX_BAR_LABELS = 32
_KEY_SHADE = (0.93, 0.93, 0.92)
_BAR_LINE = (0.72, 0.72, 0.7)
_BEAT_LINE = (0.88, 0.88, 0.86)
_told_about_matplotlib = False  # the fallback says once per process how to get the nicer pictures


def pitch_name(pitch: int) -> str:
    """The name of a MIDI pitch with its octave, C4 being 60 (middle C): 61 is "C#4", 21 is "A0"."""
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _held_shade(colour: np.ndarray) -> np.ndarray:
    """A note's steps after its first: the voice's colour, dimmed towards white."""
    return (colour.astype(np.int32) * 3 // 4 + 64).astype(np.uint8)


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
        shade = colour if bright else _held_shade(colour)
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


def write_piano_rolls(
    path: str | os.PathLike,
    melody_pitch: np.ndarray,
    rolls: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str = "",
) -> None:
    """Write one PNG of several arrangements of one melody, stacked top to bottom.

    With matplotlib, the figure of ``piano_roll_figure`` (FIGURE_WIDTH_PX x HEADER_PX +
    PANEL_PX per roll); without it, the dependency-free ``piano_roll_image`` of each roll put
    together by ``stack_images``, and an info log, once per process, saying how to get the
    figure. Both are written by ``write_png``: 8-bit RGB and no metadata, so the same
    arrangements give the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
    melody_pitch : np.ndarray [shape=(T,), dtype=int]
        The input melody, -1 for a rest.
    rolls : sequence of (str, np.ndarray, np.ndarray)
        Per arrangement, top first: where it comes from ("model, seed 0", "real"), its
        pitches [shape=(T, 4), dtype=int] and onsets [shape=(T, 4), dtype=bool].
    title : str
        The song; only the matplotlib figure shows it.
    """
    try:
        import matplotlib.style  # noqa: PLC0415 (optional and slow to import: only when a picture is drawn)
    except ImportError:
        global _told_about_matplotlib
        if not _told_about_matplotlib:
            logger.info(
                "matplotlib is not installed: writing plain piano rolls (for pictures with pitch names, bar "
                "numbers and a legend: pip install 'chiptuner[plot]')"
            )
            _told_about_matplotlib = True
        write_png(path, stack_images(*(piano_roll_image(melody_pitch, pitch, onset) for _, pitch, onset in rolls)))
        return
    # matplotlib's defaults, not whatever matplotlibrc this machine has: the same picture everywhere.
    # Pixels through write_png rather than savefig: RGB without the alpha channel and without
    # the Software (version) text savefig adds, so the bytes depend on the arrangements only.
    with matplotlib.style.context("default"):
        write_png(path, figure_pixels(piano_roll_figure(melody_pitch, rolls, title=title)))


def piano_roll_figure(
    melody_pitch: np.ndarray,
    rolls: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str = "",
):
    """Draw each arrangement of one melody as a matplotlib panel: pitches over a drum lane.

    Notes are bars in their voice's colour (``VOICE_COLOURS``), the first step of each in full
    colour and the rest dimmer; the input melody is a grey bar underneath. The pitch axis
    names every C, E and G and shades the black keys' rows; the drum lane has a row per drum
    class (``DRUM_NAMES``, kick at the bottom). Vertical lines mark bars (darker) and beats; the
    x axis is numbered in bars from 1. Every panel spans the same pitches, so they compare.

    Parameters
    ----------
    melody_pitch : np.ndarray [shape=(T,), dtype=int]
    rolls : sequence of (str, np.ndarray, np.ndarray)
        As in ``write_piano_rolls``; the label is the panel's title.
    title : str
        The figure's title: the song.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot (nothing global changes); ``figure_pixels`` renders it.
    """
    from matplotlib.collections import PolyCollection  # noqa: PLC0415 (matplotlib is optional)
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    melody_pitch = np.asarray(melody_pitch)
    n_steps = len(melody_pitch)
    low, high = _pitch_span(melody_pitch, [np.asarray(pitch) for _, pitch, _ in rolls])
    figure = Figure(
        figsize=(FIGURE_WIDTH_PX / FIGURE_DPI, (HEADER_PX + PANEL_PX * len(rolls)) / FIGURE_DPI),
        dpi=FIGURE_DPI,
        layout="constrained",
    )
    figure.set_facecolor("white")
    grid = figure.add_gridspec(2 * len(rolls), 1, height_ratios=[5, 1] * len(rolls))
    melody_rgb = _held_shade(MELODY_COLOUR) / 255  # as in the plain roll: the melody has no onsets to brighten
    colours = VOICE_COLOURS / 255
    held_colours = np.array([_held_shade(colour) for colour in VOICE_COLOURS]) / 255
    bar_starts = np.arange(0, max(n_steps, 1), 16)
    label_every = -(-len(bar_starts) // _MAX_BAR_LABELS)  # whole bars between numbers, at most 32 numbers
    beats = np.arange(4, n_steps, 4)
    black_rows = np.array([p for p in range(low, high + 1) if p % 12 in _BLACK_KEYS])

    def add_boxes(axes, start, end, rows, height, colour, zorder) -> None:
        boxes = PolyCollection(_boxes(start, end, rows, height), facecolors=colour, edgecolors="none", zorder=zorder)
        axes.add_collection(boxes)

    for r, (label, voice_pitch, voice_onset) in enumerate(rolls):
        voice_pitch, voice_onset = np.asarray(voice_pitch), np.asarray(voice_onset, dtype=bool)
        pitches = figure.add_subplot(grid[2 * r])
        drums = figure.add_subplot(grid[2 * r + 1], sharex=pitches)
        pitches.set_title(label, loc="left", fontsize=11)
        add_boxes(pitches, np.zeros(len(black_rows)), np.full(len(black_rows), n_steps), black_rows, 1.0, _KEY_SHADE, 0)
        # The melody's bars are a row tall and the voices' thinner, so a voice doubling it shows grey edges.
        start, end, pitch = _notes(melody_pitch, np.zeros(n_steps, dtype=bool))
        add_boxes(pitches, start, end, pitch, 1.0, melody_rgb, 1)
        for v in range(4):
            start, end, pitch = _notes(voice_pitch[:, v], voice_onset[:, v])
            if v == 3:  # the noise voice's pitch is a drum key: its row is the drum class
                known = np.isin(pitch, DRUM_KEYS)  # anything else is not a drum the chip plays: left out
                row = np.argmax(pitch[known, None] == DRUM_KEYS, axis=1)
                start, end, pitch = start[known], end[known], row
                axes, height = drums, 0.7
            else:
                axes, height = pitches, 0.8
            add_boxes(axes, start, end, pitch, height, held_colours[v], 2)
            add_boxes(axes, start, np.minimum(start + 1, end), pitch, height, colours[v], 3)

        for axes in (pitches, drums):
            axes.set_facecolor(_BACKGROUND / 255)
            axes.set_xlim(0, n_steps)
            on_bar = beats % 16 == 0
            line_colours = np.where(on_bar[:, None], _BAR_LINE, _BEAT_LINE)
            axes.vlines(beats, 0, 1, transform=axes.get_xaxis_transform(), colors=line_colours,
                        linewidths=np.where(on_bar, 0.8, 0.5), zorder=1.5)  # fmt: skip
            axes.set_xticks(bar_starts[::label_every], [str(b + 1) for b in range(0, len(bar_starts), label_every)])
            axes.tick_params(axis="both", labelsize=8, length=2)
        pitches.tick_params(axis="x", labelbottom=False)
        pitches.set_ylim(low - 0.5, high + 0.5)
        labelled = [p for p in range(low, high + 1) if p % 12 in _LABELLED_PITCH_CLASSES]
        pitches.set_yticks(labelled, [pitch_name(p) for p in labelled])
        drums.set_ylim(-0.5, len(DRUM_KEYS) - 0.5)
        drums.set_yticks(range(len(DRUM_KEYS)), [name.replace("_", " ") for name in DRUM_NAMES])  # kick lowest
        drums.set_xlabel("bar", fontsize=9)

    if title:
        figure.suptitle(title, fontsize=12)
    handles = [Patch(facecolor=melody_rgb, label="input melody")]
    handles += [Patch(facecolor=colours[v], label=name) for v, name in enumerate(VOICE_NAMES)]
    figure.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=9, frameon=False)
    return figure


def figure_pixels(figure) -> np.ndarray:
    """Render a matplotlib figure with Agg (no display needed) to RGB [shape=(H, W, 3), dtype=uint8]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (matplotlib is optional)

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.array(canvas.buffer_rgba())[:, :, :3]  # the figure is opaque: alpha is 255 everywhere


def _pitch_span(melody_pitch: np.ndarray, voice_pitches: Sequence[np.ndarray]) -> tuple[int, int]:
    """The lowest and highest pitch drawn: every sounding pitch but the drums, a step to spare, an octave at least."""
    sounding = [melody_pitch[melody_pitch >= 0]] + [pitch[:, :3][pitch[:, :3] >= 0] for pitch in voice_pitches]
    every = np.concatenate([np.asarray(s, dtype=np.int64).ravel() for s in sounding])
    if not len(every):
        return 48, 72
    low, high = int(every.min()) - 1, int(every.max()) + 1
    missing = 12 - (high - low)
    if missing > 0:
        low, high = low - missing // 2, high + missing - missing // 2
    return max(low, 0), min(high, 127)


def _notes(pitch: np.ndarray, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start step, end step (exclusive) and pitch of every note of one voice.

    A note is a run of steps at one pitch; an onset inside the run starts a new note.
    """
    pitch, onset = np.asarray(pitch), np.asarray(onset, dtype=bool)
    sounding = pitch >= 0
    changed = np.ones(len(pitch), dtype=bool)
    changed[1:] = pitch[1:] != pitch[:-1]
    start = np.flatnonzero(sounding & (changed | onset))
    # A note ends at the next note's start or the next rest, whichever comes first.
    boundaries = np.union1d(start, np.append(np.flatnonzero(~sounding), len(pitch)))
    end = boundaries[np.searchsorted(boundaries, start, side="right")]
    return start, end, pitch[start]


def _boxes(start: np.ndarray, end: np.ndarray, row: Sequence[float], height: float) -> np.ndarray:
    """Rectangles from ``start`` to ``end`` along x, ``height`` tall and centred on ``row``: polygon vertices."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    bottom = np.asarray(row, dtype=float) - height / 2
    top = bottom + height
    return np.stack(
        [
            np.stack([start, bottom], -1),
            np.stack([end, bottom], -1),
            np.stack([end, top], -1),
            np.stack([start, top], -1),
        ],
        axis=1,
    ).reshape(len(start), 4, 2)
