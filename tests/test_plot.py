"""Piano-roll pictures: PNG bytes decoded by hand, voices painted at their rows, columns and colours.

The plain numpy roll is tested everywhere; the matplotlib figure where matplotlib is installed
(the test extra brings it), and the fallback to the plain roll with matplotlib made unimportable.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from chiptuner.evaluate import plot
from chiptuner.evaluate.plot import (
    FIGURE_WIDTH_PX,
    HEADER_PX,
    MELODY_COLOUR,
    PANEL_PX,
    VOICE_COLOURS,
    piano_roll_image,
    pitch_name,
    stack_images,
    write_piano_rolls,
    write_png,
)
from chiptuner.types import VOICE_NAMES
from chiptuner.voices import DRUM_KEYS, DRUM_NAMES

LOW, HIGH = 24, 100  # the pitch rows the roll draws, top row = HIGH
N_ROWS = HIGH - LOW + 1 + 1 + len(DRUM_KEYS)  # pitches, one gap row, the drum band


def read_png(path) -> np.ndarray:
    """Decode an 8-bit RGB, non-interlaced PNG with filter 0 rows; check signature, CRCs and chunk order."""
    data = path.read_bytes() if hasattr(path, "read_bytes") else open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        at += 12 + length
    assert at == len(data), "trailing bytes"
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all(), "every scanline uses filter type 0"
    return rows[:, 1:].reshape(height, width, 3)


def shade(colour: np.ndarray) -> np.ndarray:
    """A held (not first) step: the colour dimmed, as the module docstring describes."""
    return (colour.astype(np.int32) * 3 // 4 + 64).astype(np.uint8)


def blank(n_steps: int, **kwargs) -> np.ndarray:
    return piano_roll_image(
        np.full(n_steps, -1), np.full((n_steps, 4), -1), np.zeros((n_steps, 4), dtype=bool), **kwargs
    )


def cells_changed(image: np.ndarray, empty: np.ndarray) -> set[tuple[int, int]]:
    """(row, step) of every 3x3 cell that differs from the empty roll."""
    changed = np.argwhere((image != empty).any(axis=2))
    return {(int(y) // 3, int(x) // 3) for y, x in changed}


def cell(image: np.ndarray, row: int, step: int, px: int = 3) -> np.ndarray:
    return image[row * px : row * px + px, step * px : step * px + px]


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 3), (249, 96)])
def test_write_png_decodes_to_the_same_pixels(tmp_path, shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    write_png(path, image)
    decoded = read_png(path)
    assert decoded.shape == image.shape
    assert np.array_equal(decoded, image)
    data = path.read_bytes()
    assert data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (shape[1], shape[0])  # width then height


def test_write_png_takes_non_contiguous_and_other_integer_images(tmp_path):
    base = np.arange(6 * 10 * 3).reshape(6, 10, 3) % 256
    view = base[:, ::2]  # strided columns, int64
    write_png(tmp_path / "a.png", view)
    assert np.array_equal(read_png(tmp_path / "a.png"), view.astype(np.uint8))


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 4), (4, 4, 1), (2, 2, 3, 1)])
def test_write_png_rejects_non_rgb_shapes(tmp_path, shape):
    with pytest.raises(ValueError, match="expected"):
        write_png(tmp_path / "x.png", np.zeros(shape, dtype=np.uint8))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(("n_steps", "px_step", "px_pitch"), [(32, 3, 3), (5, 2, 4), (1, 1, 2)])
def test_roll_size(n_steps, px_step, px_pitch):
    image = blank(n_steps, px_per_step=px_step, px_per_pitch=px_pitch)
    assert image.shape == (N_ROWS * px_pitch, n_steps * px_step, 3)
    assert image.dtype == np.uint8


def test_empty_roll_is_background_with_a_bar_line_every_16_steps():
    image = blank(40)
    background = image[0, 1]
    columns = np.flatnonzero((image != background).any(axis=(0, 2)))
    assert columns.tolist() == [0, 48, 96]  # steps 0, 16, 32 at 3 px per step
    assert (image[:, 0] == image[0, 0]).all()  # the whole line is one colour
    assert not np.array_equal(image[0, 0], background)


def test_voices_painted_at_their_rows_and_steps_in_their_colours():
    n = 20
    melody = np.full(n, -1)
    pitch = np.full((n, 4), -1)
    onset = np.zeros((n, 4), dtype=bool)
    pitch[2:5, 0], onset[2, 0] = 72, True  # pulse1: C5 for 3 steps
    pitch[6, 1], onset[6, 1] = 55, True  # pulse2: one step
    pitch[8:10, 2], onset[8, 2] = 30, True  # triangle: low
    empty = blank(n)
    image = piano_roll_image(melody, pitch, onset)
    assert cells_changed(image, empty) == {(HIGH - 72, 2), (HIGH - 72, 3), (HIGH - 72, 4), (HIGH - 55, 6),
                                           (HIGH - 30, 8), (HIGH - 30, 9)}  # fmt: skip
    top = slice(0, 2)  # the cell's last pixel row stays background, so notes on adjacent rows stay apart
    assert (cell(image, HIGH - 72, 2)[top] == VOICE_COLOURS[0]).all()  # first step: the voice's colour
    assert (cell(image, HIGH - 72, 3)[top] == shade(VOICE_COLOURS[0])).all()  # held: dimmer
    assert (cell(image, HIGH - 72, 4)[top] == shade(VOICE_COLOURS[0])).all()
    assert (cell(image, HIGH - 55, 6)[top] == VOICE_COLOURS[1]).all()
    assert (cell(image, HIGH - 30, 8)[top] == VOICE_COLOURS[2]).all()
    assert (cell(image, HIGH - 30, 9)[top] == shade(VOICE_COLOURS[2])).all()
    assert np.array_equal(cell(image, HIGH - 72, 3)[2], cell(empty, HIGH - 72, 3)[2])


def test_repeated_onsets_stay_visible():
    pitch = np.full((4, 4), -1)
    pitch[:, 0] = 60
    onset = np.zeros((4, 4), dtype=bool)
    onset[:, 0] = True
    image = piano_roll_image(np.full(4, -1), pitch, onset)
    for step in range(4):
        assert (cell(image, HIGH - 60, step)[:2] == VOICE_COLOURS[0]).all()


def test_melody_is_grey_and_underneath_the_voices():
    n = 8
    melody = np.array([-1, 64, 64, 64, -1, 67, 67, -1])
    pitch = np.full((n, 4), -1)
    onset = np.zeros((n, 4), dtype=bool)
    pitch[5, 0], onset[5, 0] = 67, True  # pulse1 on the melody's own cell
    image = piano_roll_image(melody, pitch, onset)
    assert cells_changed(image, blank(n)) == {(HIGH - 64, 1), (HIGH - 64, 2), (HIGH - 64, 3), (HIGH - 67, 5),
                                              (HIGH - 67, 6)}  # fmt: skip
    grey = shade(MELODY_COLOUR)  # the melody has no onsets: drawn in the dimmed shade of MELODY_COLOUR
    assert grey[0] == grey[1] == grey[2]
    for step in (1, 2, 3, 6):
        assert (cell(image, HIGH - 64 if step < 4 else HIGH - 67, step)[:2] == grey).all()
    assert (cell(image, HIGH - 67, 5)[:2] == VOICE_COLOURS[0]).all()  # the voice wins


def test_drums_in_the_bottom_band_one_row_per_key():
    n = len(DRUM_KEYS) + 2
    pitch = np.full((n, 4), -1)
    onset = np.zeros((n, 4), dtype=bool)
    pitch[: len(DRUM_KEYS), 3] = DRUM_KEYS
    onset[: len(DRUM_KEYS), 3] = True
    pitch[len(DRUM_KEYS), 3], onset[len(DRUM_KEYS), 3] = 40, True  # not a drum key: not drawn
    image = piano_roll_image(np.full(n, -1), pitch, onset)
    band = N_ROWS - len(DRUM_KEYS)
    expected = {(band + i, i) for i in range(len(DRUM_KEYS))}
    assert cells_changed(image, blank(n)) == expected
    for i in range(len(DRUM_KEYS)):
        assert (cell(image, band + i, i)[:2] == VOICE_COLOURS[3]).all()
    assert band == HIGH - LOW + 2  # one empty row between the lowest pitch and the band


def test_out_of_range_pitches_are_left_out():
    pitch = np.full((3, 4), -1)
    pitch[0, :3] = [LOW - 1, HIGH + 1, 127]
    onset = np.ones((3, 4), dtype=bool)
    image = piano_roll_image(np.array([LOW - 1, HIGH + 1, 0]), pitch, onset)
    assert np.array_equal(image, blank(3))
    pitch[1, 0], pitch[2, 2] = LOW, HIGH  # the edges are drawn
    image = piano_roll_image(np.full(3, -1), pitch, onset)
    assert cells_changed(image, blank(3)) == {(HIGH - LOW, 1), (0, 2)}


def test_pixel_sizes_scale_the_cells():
    pitch = np.full((4, 4), -1)
    onset = np.zeros((4, 4), dtype=bool)
    pitch[3, 1], onset[3, 1] = 60, True
    image = piano_roll_image(np.full(4, -1), pitch, onset, px_per_step=5, px_per_pitch=4)
    empty = blank(4, px_per_step=5, px_per_pitch=4)
    ys, xs = np.nonzero((image != empty).any(axis=2))
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == ((HIGH - 60) * 4, (HIGH - 60) * 4 + 2, 15, 19)


def test_inputs_are_not_modified():
    melody = np.array([60, 62, -1])
    pitch = np.full((3, 4), 60)
    onset = np.ones((3, 4), dtype=bool)
    copies = melody.copy(), pitch.copy(), onset.copy()
    piano_roll_image(melody, pitch, onset)
    assert all(np.array_equal(a, b) for a, b in zip((melody, pitch, onset), copies, strict=True))


def test_stack_images_pads_to_the_widest_with_a_dark_gap():
    a = np.full((4, 5, 3), 10, dtype=np.uint8)
    b = np.full((2, 8, 3), 200, dtype=np.uint8)
    out = stack_images(a, b, gap_px=3)
    assert out.shape == (4 + 3 + 2, 8, 3) and out.dtype == np.uint8
    assert (out[:4, :5] == 10).all()
    background = blank(1)[0, 1]
    assert (out[:4, 5:] == background).all()  # padding
    assert (out[4:7] == 60).all()  # the gap
    assert (out[7:] == 200).all()


def test_stack_images_counts():
    rolls = [blank(n) for n in (4, 10, 7)]
    out = stack_images(*rolls)
    assert out.shape == (3 * N_ROWS * 3 + 2 * 6, 30, 3)
    assert np.array_equal(stack_images(rolls[0]), rolls[0])
    assert stack_images(rolls[0], rolls[1], gap_px=0).shape == (2 * N_ROWS * 3, 30, 3)


def test_roll_round_trips_through_png(tmp_path):
    pitch = np.full((16, 4), -1)
    onset = np.zeros((16, 4), dtype=bool)
    pitch[::2, 0], onset[::2, 0] = 60, True
    pitch[:, 3], onset[::4, 3] = 36, True
    image = stack_images(piano_roll_image(np.full(16, 60), pitch, onset), blank(16))
    write_png(tmp_path / "roll.png", image)
    assert np.array_equal(read_png(tmp_path / "roll.png"), image)


def png_chunk_kinds(path) -> list[bytes]:
    data, kinds, at = path.read_bytes(), [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kinds.append(data[at + 4 : at + 8])
        at += 12 + length
    return kinds


def band(n_steps: int = 64):
    """A melody and two arrangements of it (as write_piano_rolls takes them) in which every voice plays.

    Model: pulse1 doubles the melody, pulse2 holds G4 for 8 steps at a time, the triangle plays
    C2 every bar (4 steps), the noise cycles through the drum classes every 2 steps. Real: the same
    voices an octave lower and no drums.
    """
    steps = np.arange(n_steps)
    melody = np.where(steps % 8 < 6, 60 + 2 * (steps // 8 % 4), -1)
    pitch = np.full((n_steps, 4), -1)
    onset = np.zeros((n_steps, 4), dtype=bool)
    pitch[:, 0], onset[:, 0] = melody, (melody >= 0) & (steps % 2 == 0)
    pitch[:, 1], onset[::8, 1] = 67, True
    bar_start = steps % 16 < 4
    pitch[bar_start, 2], onset[::16, 2] = 36, True
    pitch[::2, 3], onset[::2, 3] = DRUM_KEYS[steps[::2] // 2 % len(DRUM_KEYS)], True
    real = np.where(pitch >= 0, pitch - 12, -1)
    real[:, 3] = -1
    return melody, [("model, seed 0", pitch, onset), ("real", real, onset & (real >= 0))]


def silence(n_steps: int):
    return np.full(n_steps, -1), [("model, seed 0", np.full((n_steps, 4), -1), np.zeros((n_steps, 4), dtype=bool))]


def pixels_of(image: np.ndarray, colour: np.ndarray) -> int:
    return int((image == colour).all(axis=2).sum())


@pytest.mark.parametrize(
    ("pitch", "name"),
    [(60, "C4"), (61, "C#4"), (64, "E4"), (70, "Bb4"), (69, "A4"), (21, "A0"), (0, "C-1"), (127, "G9")],
)
def test_pitch_name(pitch, name):
    assert pitch_name(pitch) == name


def test_notes_are_runs_of_one_pitch_cut_at_onsets_and_rests():
    pitch = np.array([-1, 60, 60, 60, 62, 62, -1, 62, 62])
    onset = np.array([0, 1, 0, 1, 0, 0, 0, 1, 0], dtype=bool)  # step 4: a new pitch without an onset
    start, end, note_pitch = plot._notes(pitch, onset)
    assert start.tolist() == [1, 3, 4, 7]
    assert end.tolist() == [3, 4, 6, 9]
    assert note_pitch.tolist() == [60, 60, 62, 62]
    assert [len(a) for a in plot._notes(np.full(5, -1), np.zeros(5, dtype=bool))] == [0, 0, 0]


def test_without_matplotlib_the_plain_roll_is_written_and_the_way_to_more_said_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the plot extra sees
    monkeypatch.setattr(plot, "_told_about_matplotlib", False)
    melody, rolls = band()
    caplog.set_level(logging.INFO, logger=plot.__name__)
    write_piano_rolls(tmp_path / "a.png", melody, rolls, title="song.mid")
    write_piano_rolls(tmp_path / "b.png", melody, rolls[:1], title="song.mid")
    plain = stack_images(*(piano_roll_image(melody, pitch, onset) for _, pitch, onset in rolls))
    write_png(tmp_path / "plain.png", plain)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "plain.png").read_bytes()
    assert np.array_equal(read_png(tmp_path / "b.png"), piano_roll_image(melody, *rolls[0][1:]))
    told = [record for record in caplog.records if "pip install 'chiptuner[plot]'" in record.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, chiptuner.evaluate.plot; print('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[1]  # this checkout's package, not another installed one
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "False"


@pytest.fixture
def matplotlib():
    return pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")


@pytest.mark.parametrize("n_rolls", [1, 2])
def test_matplotlib_picture_has_the_fixed_size(tmp_path, matplotlib, n_rolls):
    melody, rolls = band()
    write_piano_rolls(tmp_path / "roll.png", melody, rolls[:n_rolls], title="song.mid")
    image = read_png(tmp_path / "roll.png")  # 8-bit RGB with valid CRCs, as the plain roll
    assert image.shape == (HEADER_PX + n_rolls * PANEL_PX, FIGURE_WIDTH_PX, 3)
    assert image.shape[:2] == ((500, 1600), (950, 1600))[n_rolls - 1]


def test_matplotlib_picture_is_the_same_bytes_every_time_and_has_no_metadata(tmp_path, matplotlib):
    melody, rolls = band()
    write_piano_rolls(tmp_path / "a.png", melody, rolls, title="song.mid")
    write_piano_rolls(tmp_path / "b.png", melody, rolls, title="song.mid")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert set(png_chunk_kinds(tmp_path / "a.png")) == {b"IHDR", b"IDAT", b"IEND"}  # no tEXt, tIME or the like
    write_piano_rolls(tmp_path / "c.png", melody, rolls, title="other.mid")
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()  # the title is drawn


def test_matplotlib_picture_shows_the_legend_and_each_voice_in_its_colours(tmp_path, matplotlib):
    melody, rolls = band()
    write_piano_rolls(tmp_path / "band.png", melody, rolls, title="song.mid")
    write_piano_rolls(tmp_path / "empty.png", *silence(len(melody)), title="song.mid")
    image, empty = read_png(tmp_path / "band.png"), read_png(tmp_path / "empty.png")
    held = [shade(colour) for colour in VOICE_COLOURS]
    for v in range(4):
        assert pixels_of(empty, VOICE_COLOURS[v]) >= 50, f"{VOICE_NAMES[v]} in the legend"
        assert pixels_of(image, VOICE_COLOURS[v]) >= pixels_of(empty, VOICE_COLOURS[v]) + 200, VOICE_NAMES[v]
        if v < 3:  # the band's drums are one-step hits: nothing held
            assert pixels_of(image, held[v]) >= 200, f"{VOICE_NAMES[v]} held"
    assert pixels_of(empty, shade(MELODY_COLOUR)) >= 50  # the melody's legend entry
    assert pixels_of(image, shade(MELODY_COLOUR)) >= pixels_of(empty, shade(MELODY_COLOUR)) + 200


def test_matplotlib_axes_name_pitches_drums_bars_and_sources(matplotlib):
    melody, rolls = band(64)
    figure = plot.piano_roll_figure(melody, rolls, title="songs/song.mid")
    assert figure.get_suptitle() == "songs/song.mid"
    legend_texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_texts == ["input melody", *VOICE_NAMES]
    pitches, drums = figure.axes[0::2], figure.axes[1::2]
    assert len(figure.axes) == 4
    assert [axes.get_title(loc="left") for axes in pitches] == ["model, seed 0", "real"]
    for axes in pitches:
        names = [label.get_text() for label in axes.get_yticklabels()]
        # Both panels span the real triangle's C1 to the model's pulse2 on G4, and a step to spare.
        assert {"C1", "E1", "C2", "C3", "C4", "E4", "G4"} <= set(names) and "C5" not in names
        assert all(pitch_name(int(tick)) == name for tick, name in zip(axes.get_yticks(), names, strict=True))
    for axes in drums:
        assert [label.get_text() for label in axes.get_yticklabels()] == [n.replace("_", " ") for n in DRUM_NAMES]
        assert axes.get_xticks().tolist() == [0, 16, 32, 48]
        assert [label.get_text() for label in axes.get_xticklabels()] == ["1", "2", "3", "4"]
        assert axes.get_xlabel() == "bar"


def test_matplotlib_bar_numbers_thin_out_on_long_songs(matplotlib):
    figure = plot.piano_roll_figure(*silence(64 * 16))
    drums = figure.axes[1]
    assert [label.get_text() for label in drums.get_xticklabels()][:3] == ["1", "3", "5"]
    assert len(drums.get_xticks()) == 32


def test_matplotlib_notes_drawn_at_their_pitch_step_and_drum_row(matplotlib):
    n = 32
    melody = np.full(n, -1)
    melody[20:24] = 55  # the melody alone
    pitch = np.full((n, 4), -1)
    onset = np.zeros((n, 4), dtype=bool)
    pitch[2:8, 0], onset[2, 0] = 72, True  # pulse1, C5, 6 steps
    pitch[10:12, 2], onset[10, 2] = 40, True  # triangle, E2
    pitch[14, 3], onset[14, 3] = DRUM_KEYS[1], True  # a snare
    pitch[16, 3], onset[16, 3] = 40, True  # not a drum key: left out
    figure = plot.piano_roll_figure(melody, [("model", pitch, onset)])
    image = plot.figure_pixels(figure)
    pitches, drums = figure.axes

    def at(axes, step: float, row: float) -> np.ndarray:
        x, y = axes.transData.transform((step, row))
        return image[image.shape[0] - 1 - int(y), int(x)]  # display y counts up from the bottom

    assert np.array_equal(at(pitches, 2.5, 72), VOICE_COLOURS[0])  # the first step bright
    assert np.array_equal(at(pitches, 5.5, 72), shade(VOICE_COLOURS[0]))  # then dimmer
    assert not np.array_equal(at(pitches, 9.5, 72), shade(VOICE_COLOURS[0]))  # over after 6 steps
    assert np.array_equal(at(pitches, 10.5, 40), VOICE_COLOURS[2])
    assert np.array_equal(at(pitches, 21.5, 55), shade(MELODY_COLOUR))
    snare_row = DRUM_NAMES.index("snare")
    assert np.array_equal(at(drums, 14.5, snare_row), VOICE_COLOURS[3])
    for row in range(len(DRUM_KEYS)):  # the key that is no drum is drawn on no row
        assert not np.array_equal(at(drums, 16.5, row), VOICE_COLOURS[3])
    # Under the legend, the noise's colour is in the drum lane only.
    height = image.shape[0]
    lane = drums.get_window_extent()
    below_legend = image[height - int(pitches.get_window_extent().y1) :].copy()
    lane_rows = slice(int(pitches.get_window_extent().y1) - int(lane.y1), height - int(lane.y0))
    assert pixels_of(below_legend[lane_rows, int(lane.x0) : int(lane.x1)], VOICE_COLOURS[3]) > 0
    below_legend[lane_rows, int(lane.x0) : int(lane.x1)] = 0
    assert pixels_of(below_legend, VOICE_COLOURS[3]) == 0
