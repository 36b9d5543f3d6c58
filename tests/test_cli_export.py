import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from chiptuner import chip_model as cm
from chiptuner.chip_midi import write_arrangement
from chiptuner.cli import main
from chiptuner.nsf import nsf_bytes
from tests.test_chip_model import _arrangement
from tests.test_famitracker import arrangement_of, parse

EXAMPLES = Path(__file__).resolve().parents[1] / "chiptuner" / "examples"


@pytest.fixture(scope="module")
def band(tmp_path_factory):
    path = tmp_path_factory.mktemp("band") / "band.mid"
    write_arrangement(_arrangement(96), path)
    return path


def test_export_each_format_by_extension(band, tmp_path, capsys):
    assert main(["export", str(band), "-o", str(tmp_path / "song.nsf")]) == 0
    assert (tmp_path / "song.nsf").read_bytes() == nsf_bytes(cm.read_song(band), title="band")
    assert main(["export", str(band), "-o", str(tmp_path / "song.txt")]) == 0
    module = parse((tmp_path / "song.txt").read_text())
    back = arrangement_of(module)
    assert np.array_equal(back.pitch[:96, :3], _arrangement(96).pitch[:, :3])
    assert main(["export", str(band), "-o", str(tmp_path / "song.wav")]) == 0
    with wave.open(str(tmp_path / "song.wav")) as f:
        assert f.getframerate() == 44100 and f.getnframes() > 44100
    assert "wrote" in capsys.readouterr().out


def test_export_format_option_overrides_the_extension(band, tmp_path):
    assert main(["export", str(band), "-o", str(tmp_path / "song.bin"), "--format", "nsf"]) == 0
    assert (tmp_path / "song.bin").read_bytes()[:5] == b"NESM\x1a"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "x.foo"], "cannot tell the format"),
        (["-o", "x.mid"], "MIDI already"),
    ],
)
def test_export_errors_are_one_line_and_exit_2(band, tmp_path, capsys, args, message):
    args = [a if not a.startswith("x.") else str(tmp_path / a) for a in args]
    assert main(["export", str(band), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_export_refuses_a_song_that_is_not_an_arrangement(tmp_path, capsys):
    pop = EXAMPLES / "ode_to_joy_band.mid"
    song = cm.read_song(pop)  # the example band is an arrangement; a piano song on channel 6 is not
    assert len(song.arrangement) > 0
    mid = mido.MidiFile()
    track = mido.MidiTrack([mido.Message("note_on", channel=5, note=60, velocity=90, time=0),
                            mido.Message("note_off", channel=5, note=60, velocity=0, time=480)])  # fmt: skip
    mid.tracks.append(track)
    mid.save(tmp_path / "piano.mid")
    assert main(["export", str(tmp_path / "piano.mid"), "-o", str(tmp_path / "x.nsf")]) == 2
    assert "chiptuner arrange" in capsys.readouterr().err


def test_arrange_writes_a_chip_file_in_one_command(tmp_path, capsys):
    out = tmp_path / "ode.nsf"
    assert main(["arrange", str(EXAMPLES / "ode_to_joy_melody.mid"), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:5] == b"NESM\x1a" and data[14:17] == b"ode"
    assert f"wrote {out}" in capsys.readouterr().out
    # The same as arranging to MIDI and exporting that.
    assert main(["arrange", str(EXAMPLES / "ode_to_joy_melody.mid"), "-o", str(tmp_path / "ode.mid")]) == 0
    assert nsf_bytes(cm.read_song(tmp_path / "ode.mid"), title="ode_to_joy_melody") == data


def test_export_reads_drums_on_channel_10_too(tmp_path):
    arrangement = _arrangement(64)
    write_arrangement(arrangement, tmp_path / "gm.mid", gm_drums=True)
    write_arrangement(arrangement, tmp_path / "chip.mid")
    for name in ("gm", "chip"):
        assert main(["export", str(tmp_path / f"{name}.mid"), "-o", str(tmp_path / f"{name}.nsf")]) == 0
    assert (tmp_path / "gm.nsf").read_bytes()[0x80:] == (tmp_path / "chip.nsf").read_bytes()[0x80:]


def test_cc1_duty_changes_reach_every_chip_file(tmp_path):
    """CC 1 on pulse1 sets 12.5 % for its first note and 50 % for its second: the model, the NSF's
    $4000 and the FamiTracker instruments all follow it."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack(
        [
            mido.Message("control_change", channel=0, control=1, value=10, time=0),  # 12.5 %
            mido.Message("note_on", channel=0, note=64, velocity=100, time=0),
            mido.Message("note_off", channel=0, note=64, velocity=0, time=960),
            mido.Message("control_change", channel=0, control=1, value=80, time=0),  # 50 %
            mido.Message("note_on", channel=0, note=67, velocity=100, time=0),
            mido.Message("note_off", channel=0, note=67, velocity=0, time=960),
        ]
    )
    mid.tracks.append(track)
    mid.save(tmp_path / "duty.mid")
    song = cm.read_song(tmp_path / "duty.mid")
    assert song.duty[:8, 0].tolist() == [0] * 8 and song.duty[8:, 0].tolist() == [2] * 8
    frames = cm.play(song)
    second = int(frames.notes.start_frame[1])
    assert frames.registers[0, 0x00] >> 6 == 0 and frames.registers[second, 0x00] >> 6 == 2
    assert main(["export", str(tmp_path / "duty.mid"), "-o", str(tmp_path / "duty.txt")]) == 0
    module = parse((tmp_path / "duty.txt").read_text())
    names = {i: name for i, (_, name) in module["instruments"].items()}
    rows = module["patterns"][0]
    assert names[int(rows[0][0].split()[1], 16)] == "pulse1 12.5%"
    assert names[int(rows[8][0].split()[1], 16)] == "pulse1 50%"
    assert main(["export", str(tmp_path / "duty.mid"), "-o", str(tmp_path / "duty.nsf")]) == 0
    assert (tmp_path / "duty.nsf").read_bytes() == nsf_bytes(song, title="duty")
