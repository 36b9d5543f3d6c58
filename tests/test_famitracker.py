import re

import numpy as np
import pytest

from chiptuner import chip_model as cm
from chiptuner.errors import ParameterError
from chiptuner.famitracker import DRUM_KEY_OF_INSTRUMENT, famitracker_text, write_famitracker
from chiptuner.types import Arrangement, TempoMap
from chiptuner.voices import GM_DRUM_MAP
from tests.test_chip_model import _arrangement

# One regular expression per line kind, from the exporter's format strings (TextExporter.cpp).
QUOTED = r'"(?:[^"]|"")*"'
NOTE = r"(?:[A-G][-#][0-7]|---|===|\.\.\.)"
NOISE_NOTE = r"(?:[0-9A-F]-#|---|===|\.\.\.)"
CELL_TAIL = r" (?:[0-9A-F]{2}|\.\.) [0-9A-F.] (?:[0-9A-Z][0-9A-F]{2}|\.\.\.)"
PITCHED_CELL = NOTE + CELL_TAIL
DPCM_CELL = r"\.\.\. \.\. \. (?:F[0-9A-F]{2}|\.\.\.)"  # no samples; tempo changes only
LINE_KINDS = {
    "comment": re.compile(r"#.*"),
    "blank": re.compile(r""),
    "info": re.compile(rf"(TITLE|AUTHOR|COPYRIGHT) {{7,}}(?: ){{0,6}}{QUOTED}"),
    "comment_text": re.compile(rf"COMMENT {QUOTED}"),
    "param": re.compile(r"(MACHINE|FRAMERATE|EXPANSION|VIBRATO|SPLIT) +\d+"),
    "macro": re.compile(r"MACRO +[ \d]{3} [ \d]{3} [ \-\d]{3} [ \-\d]{3} [ \d]{3} :( -?\d+)+"),
    "instrument": re.compile(rf"INST2A03 [ \d]{{3}}   (?:[ \-\d]{{3}} ){{5}}{QUOTED}"),
    "track": re.compile(rf"TRACK [ \d]{{3}} [ \d]{{3}} [ \d]{{3}} {QUOTED}"),
    "columns": re.compile(r"COLUMNS :( \d){5}"),
    "order": re.compile(r"ORDER [0-9A-F]{2} :( [0-9A-F]{2}){5}"),
    "pattern": re.compile(r"PATTERN [0-9A-F]{2}"),
    "row": re.compile(rf"ROW [0-9A-F]{{2}}(?: : {PITCHED_CELL}){{3}} : {NOISE_NOTE}{CELL_TAIL} : {DPCM_CELL}"),
}
NOTE_INDEX = {
    name: i for i, name in enumerate(("C-", "C#", "D-", "D#", "E-", "F-", "F#", "G-", "G#", "A-", "A#", "B-"))
}


def parse(text):
    """A strict reader of the lines written: every line one of LINE_KINDS, or an AssertionError."""
    module = {"macros": {}, "instruments": {}, "order": [], "patterns": {}}
    pattern = None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        kind = next((k for k, rx in LINE_KINDS.items() if rx.fullmatch(line)), None)
        assert kind is not None, f"line {number} follows no rule of the grammar: {line!r}"
        words = line.split()
        if kind == "macro":
            head, values = line.split(":")
            kind_, index, loop, release, setting = (int(w) for w in head.split()[1:])
            module["macros"][(kind_, index)] = [int(v) for v in values.split()]
        elif kind == "instrument":
            index = int(words[1])
            sequences = [int(w) for w in words[2:7]]
            module["instruments"][index] = (sequences, line.split('"')[1])
        elif kind == "track":
            module["track"] = tuple(int(w) for w in words[1:4])
        elif kind == "order":
            module["order"].append([int(w, 16) for w in words[3:]])
        elif kind == "pattern":
            pattern = int(words[1], 16)
            module["patterns"][pattern] = []
        elif kind == "row":
            assert int(words[1], 16) == len(module["patterns"][pattern])
            cells = [c.strip() for c in line.split(" : ")[1:]]
            module["patterns"][pattern].append(cells)
    return module


def arrangement_of(module):
    """Back from the module to the arrangement: notes by the instruments' meaning, held to the next cell."""
    rows, _, _ = module["track"]
    steps = []
    for frame in module["order"]:
        for r in range(rows):
            steps.append([module["patterns"][frame[c]][r][c] for c in range(4)])
    n = len(steps)
    pitch = np.full((n, 4), -1, np.int16)
    onset = np.zeros((n, 4), bool)
    for c in range(4):
        current = -1
        for s, cell in enumerate(steps):
            note, inst = cell[c].split()[:2]
            if note == "---":
                current = -1
            elif note != "...":
                if c == 3:
                    current = DRUM_KEY_OF_INSTRUMENT[module["instruments"][int(inst, 16)][1]]
                else:
                    current = NOTE_INDEX[note[:2]] + 12 * (int(note[2]) + 1)
                onset[s, c] = True
            pitch[s, c] = current
    # Drums are one-shots in the module: a hit lasts to the next (the arrangement's own length is not kept).
    return Arrangement(pitch, onset)


def _tiny():
    pitch = np.full((8, 4), -1, np.int16)
    onset = np.zeros((8, 4), bool)
    pitch[0:2, 0], pitch[4:6, 0] = 69, 72
    onset[[0, 4], 0] = True
    pitch[0:8, 2] = 45
    onset[0, 2] = True
    pitch[0, 3] = 36
    onset[0, 3] = True
    return cm.song_from_arrangement(Arrangement(pitch, onset), title="tiny")


def test_golden_lines():
    lines = famitracker_text(_tiny()).split("\n")
    assert 'TITLE           "tiny"' in lines
    assert "MACHINE         0" in lines and "SPLIT           32" in lines
    assert "MACRO       0   0  -1  -1   0 : 12 12 12 11 11 11 10 10 10 9" in lines
    assert "MACRO       4   0  -1  -1   0 : 2" in lines
    assert 'INST2A03   0     0  -1  -1  -1   0 "pulse1 50%"' in lines
    assert 'INST2A03   1    -1  -1  -1  -1  -1 "triangle"' in lines
    assert 'INST2A03   2     1  -1  -1  -1   1 "noise kick"' in lines
    assert 'TRACK  64   6 120 "song"' in lines
    assert "COLUMNS : 1 1 1 1 1" in lines
    assert "ORDER 00 : 00 00 00 00 00" in lines
    # A-4 on pulse1, A-2 on the triangle, the kick's period index 13 as digit 15 - 13 = 2.
    assert "ROW 00 : A-4 00 . ... : ... .. . ... : A-2 01 . ... : 2-# 02 . ... : ... .. . ..." in lines
    assert "ROW 02 : --- .. . ... : ... .. . ... : ... .. . ... : ... .. . ... : ... .. . ..." in lines
    assert "ROW 04 : C-5 00 . ... : ... .. . ... : ... .. . ... : ... .. . ... : ... .. . ..." in lines
    assert "ROW 06 : --- .. . ... : ... .. . ... : ... .. . ... : ... .. . ... : ... .. . ..." in lines
    # The song's 8 steps end with the pattern's 64 rows left empty.
    assert "ROW 3F : ... .. . ... : ... .. . ... : ... .. . ... : ... .. . ... : ... .. . ..." in lines


def test_every_line_follows_the_grammar_and_macros_are_the_model_envelopes():
    module = parse(famitracker_text(cm.song_from_arrangement(_arrangement(200))))
    for sequences, name in module["instruments"].values():
        volume = module["macros"].get((0, sequences[0]))
        if name.startswith("pulse"):
            row = cm.ENVELOPE_ROWS[name.split()[0]]
            assert volume == cm.ENVELOPES[row, : cm.ENVELOPE_LENGTH[row]].tolist()
        elif name.startswith("noise"):
            row = cm.ENVELOPE_ROWS[name.split()[1]]
            assert volume == cm.ENVELOPES[row, : cm.ENVELOPE_LENGTH[row]].tolist()
    assert len(module["order"]) == 4  # 200 steps in patterns of 64


@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip_back_to_the_arrangement(seed):
    song = cm.song_from_arrangement(_arrangement(300, seed))
    back = arrangement_of(parse(famitracker_text(song)))
    original = song.arrangement
    n = len(original)
    assert np.all(back.pitch[n:, :3] < 0) and not back.onset[n:].any()
    for v in range(3):
        assert np.array_equal(back.pitch[:n, v], original.pitch[:, v]), v
        assert np.array_equal(back.onset[:n, v], original.onset[:, v] & (original.pitch[:, v] >= 0)), v
    drums = original.onset[:, 3] & (original.pitch[:, 3] >= 0)
    assert np.array_equal(back.onset[:n, 3], drums)
    assert np.array_equal(GM_DRUM_MAP[back.pitch[:n, 3][drums]], GM_DRUM_MAP[original.pitch[:, 3][drums]])


def test_noise_digits_are_the_inverted_period_index():
    module = parse(famitracker_text(cm.song_from_arrangement(_arrangement(64))))
    for row in module["patterns"][0]:
        note, inst = row[3].split()[:2]
        if note.endswith("-#"):
            name = module["instruments"][int(inst, 16)][1].split()[1]
            assert int(note[0], 16) == 15 - cm.DRUM_SOUNDS[name][0]


def _famitracker_row_frames(module):
    """When each row starts, in frames, as FamiTracker plays the module: speed * 150 / tempo frames a row."""
    rows, speed, tempo = module["track"]
    starts = [0.0]
    for frame in module["order"]:
        for r in range(rows):
            effect = module["patterns"][frame[4]][r][4].split()[-1]
            if effect.startswith("F") and int(effect[1:], 16) >= 32:
                tempo = int(effect[1:], 16)
            starts.append(starts[-1] + speed * 150.0 / tempo)
    return np.array(starts)


def test_tempo_from_the_song_and_its_changes():
    arrangement = _arrangement(64)
    tempo = TempoMap(np.array([0, 480 * 8]), np.array([round(60e6 / 150), round(60e6 / 90)]))
    song = cm.song_from_arrangement(arrangement, tempo=tempo)
    text = famitracker_text(song)
    assert 'TRACK  64   6 150 "song"' in text
    row = next(line for line in text.split("\n") if line.startswith("ROW 20 "))
    assert row.split(" : ")[5].startswith("... .. . F")  # the change at step 32, in the DPCM column
    tempos = [int(line.split(" : ")[5][-2:], 16) for line in text.split("\n")[:-1] if line.endswith(("F59", "F5A"))]
    assert tempos  # about 90 BPM from there on (89.85 at the NTSC frame rate)
    played = _famitracker_row_frames(parse(text))
    assert np.abs(played[:65] - song.step_sec * cm.FRAME_RATE_HZ).max() <= 0.5


def test_rows_keep_to_the_model_frames_for_three_minutes():
    song = cm.song_from_arrangement(_arrangement(1440))  # 3 minutes at 120 BPM
    module = parse(famitracker_text(song))
    played = _famitracker_row_frames(module)[:1441]
    # At a fixed tempo 120 FamiTracker would be 0.165% (18 frames) behind by the end.
    assert np.abs(played - song.step_sec * cm.FRAME_RATE_HZ).max() <= 0.5
    effects = sum(1 for p in module["patterns"].values() for row in p if row[4].endswith(("F77", "F78")))
    assert 0 < effects < 0.1 * 1440  # a correction now and then, not on every row


def test_too_long_a_song_is_refused(tmp_path):
    n = 128 * 256 + 1
    pitch = np.full((n, 4), -1, np.int16)
    pitch[:, 0] = 60
    onset = np.zeros((n, 4), bool)
    onset[::4, 0] = True
    with pytest.raises(ParameterError, match="cut it shorter"):
        write_famitracker(cm.song_from_arrangement(Arrangement(pitch, onset)), tmp_path / "x.txt")
