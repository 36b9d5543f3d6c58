"""The ``arrange``, ``evaluate`` and ``train`` commands: one line out, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from importlib import resources
from pathlib import Path

import mido
import numpy as np
import pytest

import chiptuner
from chiptuner.cli import main

EXAMPLES = resources.files("chiptuner") / "examples"
MELODY = str(EXAMPLES / "ode_to_joy_melody.mid")
BAND = str(EXAMPLES / "ode_to_joy_band.mid")


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def error_line(text: str, command: str) -> str:
    """The one error line among the log lines (INFO logs, e.g. a skipped file, may come before it)."""
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith(f"chiptuner {command}: error: ")]
    assert len(errors) == 1, text
    assert text.rstrip("\n").splitlines()[-1] == errors[0], "the error comes last"
    return errors[0]


def test_arrange_writes_the_output_and_prints_one_line(tmp_path, capsys):
    out = tmp_path / "ode.mid"
    code = main(["-q", "arrange", MELODY, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    line = one_line(captured.out)
    assert line.startswith(f"wrote {out}: ")
    mid = mido.MidiFile(out)
    assert [track.name for track in mid.tracks[1:]] == ["pulse1", "pulse2", "triangle", "noise"]
    notes = chiptuner.read_midi(out).notes
    counts = [int((notes.track == v + 1).sum()) for v in range(4)]
    assert f"notes pulse1 {counts[0]}, pulse2 {counts[1]}, triangle {counts[2]}, noise {counts[3]}" in line
    assert all(counts)
    assert captured.err == ""  # -q: no log lines


def test_arrange_options_reach_the_file(tmp_path, capsys):
    a, b, c = tmp_path / "a.mid", tmp_path / "b.mid", tmp_path / "c.mid"
    assert main(["-q", "arrange", MELODY, "-o", str(a), "--seed", "4", "--gm-drums"]) == 0
    assert main(["-q", "arrange", MELODY, "-o", str(b), "--seed", "4", "--gm-drums"]) == 0
    assert main(["-q", "arrange", MELODY, "-o", str(c), "--seed", "5", "--input", "buttons"]) == 0
    capsys.readouterr()
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    noise = mido.MidiFile(a).tracks[4]
    assert {m.channel for m in noise if m.type == "note_on"} == {9}


def _track_notes(path) -> dict[str, int]:
    """Note-ons per named track of a written arrangement."""
    return {
        track.name: sum(m.type == "note_on" and m.velocity > 0 for m in track) for track in mido.MidiFile(path).tracks
    }


def test_arrange_plays_only_the_voices_asked_for(tmp_path, capsys):
    every, lead_and_pulse2 = tmp_path / "every.mid", tmp_path / "pulse2.mid"
    assert main(["-q", "arrange", BAND, "-o", str(every), "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["-q", "arrange", BAND, "-o", str(lead_and_pulse2), "--seed", "3", "--voices", "pulse2"]) == 0
    assert one_line(capsys.readouterr().out).endswith("triangle 0, noise 0")
    notes = _track_notes(lead_and_pulse2)
    assert notes["triangle"] == 0 and notes["noise"] == 0
    assert notes["pulse1"] > 0 and notes["pulse2"] > 0
    assert _track_notes(every)["triangle"] > 0 and _track_notes(every)["noise"] > 0  # the same song plays them all


@pytest.mark.parametrize(
    "options",
    [["--voices", "none"], ["--voices", " triangle , noise"], ["--style", "chorale"], ["--energy", "high"]],
    ids=["lead-alone", "spaced-list", "style", "energy"],
)
def test_arrange_settings_reach_the_model(tmp_path, capsys, options):
    base, changed = tmp_path / "base.mid", tmp_path / "changed.mid"
    assert main(["-q", "arrange", BAND, "-o", str(base)]) == 0
    assert main(["-q", "arrange", BAND, "-o", str(changed), *options]) == 0
    capsys.readouterr()
    assert base.read_bytes() != changed.read_bytes()
    notes = _track_notes(changed)
    if options == ["--voices", "none"]:
        assert notes["pulse1"] > 0 and notes["pulse2"] == notes["triangle"] == notes["noise"] == 0
    if options[0] == "--voices" and options[1] != "none":
        assert notes["pulse2"] == 0


def test_python_m_chiptuner_arrange(tmp_path):
    out = tmp_path / "out.mid"
    result = subprocess.run(
        [sys.executable, "-m", "chiptuner", "arrange", BAND, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout).startswith(f"wrote {out}: ")
    assert "Traceback" not in result.stderr
    assert mido.MidiFile(out).type == 1


def garbage_model(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a model, not a zip archive, just bytes")
    return path


def truncated_model(tmp_path):
    """The shipped model cut in half, as an interrupted copy or download leaves it."""
    whole = (resources.files("chiptuner") / "models" / "default.npz").read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def other_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    return path


def text_file(tmp_path):
    path = tmp_path / "notes.mid"
    path.write_text("a text file, not MIDI\n")
    return path


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: ["arrange", str(tmp / "missing.mid"), "-o", str(tmp / "out.mid")], "missing.mid"),
        (lambda tmp: ["arrange", str(text_file(tmp)), "-o", str(tmp / "out.mid")], "notes.mid"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--model", str(tmp / "no.npz")], "no.npz"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--model", str(garbage_model(tmp))], "garbage"),
        (
            lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--model", str(truncated_model(tmp))],
            "truncated.npz",
        ),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--model", str(other_npz(tmp))], "other.npz"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--temperature", "0"], "--temperature"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--temperature", "-1"], "--temperature"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--temperature", "1e-320"], "0.05"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--input", "piano"], "--input"),
        (lambda tmp: ["arrange", MELODY], "-o/--out"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "no_dir" / "out.mid")], "no_dir"),
        # The settings: each refusal names the choices (the style's are the model's own).
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--style", "polka"], "chip, chorale, pop"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--energy", "max"], "high"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--voices", "pulse2,bass"], "pulse2, triangle"),
        (lambda tmp: ["arrange", MELODY, "-o", str(tmp / "out.mid"), "--voices", "pulse1"], "none for the lead"),
        # The settings are checked before the melody is read: a bad one is named, not the file.
        (lambda tmp: ["arrange", str(tmp / "missing.mid"), "-o", str(tmp / "out.mid"), "--style", "polka"], "polka"),
    ],
    ids=[
        "missing-file", "not-midi", "missing-model", "garbage-model", "truncated-model", "npz-not-a-model",
        "temperature-0", "temperature-negative", "temperature-tiny", "bad-input-mode", "no-out", "out-folder-missing",
        "bad-style", "bad-energy", "bad-voice", "lead-is-no-accompaniment", "style-before-file",
    ],
)  # fmt: skip
def test_arrange_errors_are_one_line_and_exit_2(tmp_path, capsys, make_args, message):
    args = make_args(tmp_path)
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse errors leave through the parser
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2
    line = one_line(captured.err)
    assert line.startswith("chiptuner")
    assert message in line
    assert "error" in line
    assert captured.out == ""
    assert not (tmp_path / "out.mid").exists()


def test_garbage_model_in_a_fresh_process_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "chiptuner", "arrange", MELODY, "-o", str(tmp_path / "o.mid"),
         "--model", str(garbage_model(tmp_path))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("chiptuner arrange: error: ")


def test_a_crafted_model_file_in_a_fresh_process_is_one_line_naming_the_field(tmp_path):
    with np.load(resources.files("chiptuner") / "models" / "default.npz") as shipped:
        arrays = {name: shipped[name] for name in shipped.files}
    crafted = tmp_path / "crafted.npz"
    np.savez(crafted, **{**arrays, "metadata_json": np.array("[not json")})
    result = subprocess.run(
        [sys.executable, "-m", "chiptuner", "arrange", MELODY, "-o", str(tmp_path / "o.mid"), "--model", str(crafted)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("chiptuner arrange: error: ") and "metadata_json" in line and "crafted.npz" in line
    assert not (tmp_path / "o.mid").exists()


def cap_address_space() -> None:
    """In the child before exec: 2 GB of address space, so a read without end is a MemoryError, not a full machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


@pytest.mark.parametrize("command", ["arrange", "render"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_are_refused_in_one_line(tmp_path, command, kind):
    if kind == "fifo":
        source = tmp_path / "pipe.mid"
        os.mkfifo(source)  # open() on it waits for a writer that never comes
        what = "a named pipe (FIFO)"
    else:
        source = Path("/dev/zero")  # st_size 0, bytes without end
        what = "a character device"
    out = tmp_path / ("out.mid" if command == "arrange" else "out.wav")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "chiptuner", command, str(source), "-o", str(out)],
            capture_output=True, text=True, timeout=90, preexec_fn=cap_address_space,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"chiptuner {command} {source.name} still running after 90 s")
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line == f"chiptuner {command}: error: {source}: is {what}, not a regular file; name a MIDI file"
    assert not out.exists()


def test_drums_only_file_says_no_melody(tmp_path, capsys):
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack()
    for _ in range(16):
        track.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0))
        track.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=96))
    mid.tracks.append(track)
    mid.save(tmp_path / "drums.mid")
    assert main(["arrange", str(tmp_path / "drums.mid"), "-o", str(tmp_path / "out.mid")]) == 2
    assert "no melody" in one_line(capsys.readouterr().err)


def test_evaluate_json_prints_nll_and_every_arrangement(capsys):
    code = main(["-q", "evaluate", BAND, "--json", "--input", "keys", "--seeds", "2", "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert [entry["mode"] for entry in data] == ["keys"]
    (corpus,) = data[0]["corpora"]
    nll = corpus["nll"]
    assert set(nll) == {"model", "unigram", "markov", "rules"}
    assert all(value > 0 for value in nll.values())
    assert corpus["songs"] == 1 and corpus["seeds"] == [0, 1]
    model_records = [r for r in data[0]["arrangements"] if r["source"] == "model"]
    assert [r["seed"] for r in model_records] == [0, 1]


def test_evaluate_bare_melodies(capsys):
    code = main(["-q", "evaluate", BAND, "--bare", MELODY, "--input", "keys", "--seeds", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    names = [corpus["corpus"] for corpus in json.loads(captured.out)[0]["corpora"]]
    assert names == ["examples", "bare melodies"]


def test_evaluate_both_modes_by_default_and_writes_the_report(tmp_path, capsys):
    report = tmp_path / "report"
    code = main(["-q", "evaluate", BAND, "--json", "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [entry["mode"] for entry in json.loads(captured.out)] == ["keys", "buttons"]
    assert (report / "report.md").is_file()
    assert json.loads((report / "report.json").read_text())[0]["corpora"][0]["nll"]


def test_evaluate_without_json_prints_the_markdown(capsys):
    assert main(["-q", "evaluate", BAND, "--input", "buttons"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Arranger evaluation")
    assert "## Input: buttons" in out and "| held-out NLL" in out


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: ["evaluate", str(tmp / "missing")], "no such file or folder"),
        (lambda tmp: ["evaluate", MELODY], "no song to evaluate"),
        (lambda tmp: ["evaluate", BAND, "--model", str(tmp / "no.npz")], "no.npz"),
        (lambda tmp: ["evaluate", BAND, "--temperature", "0"], "--temperature"),
        (lambda tmp: ["evaluate", BAND, "--temperature", "0.01"], "0.05"),
    ],
    ids=["missing", "melody-only", "missing-model", "temperature-0", "temperature-tiny"],
)
def test_evaluate_errors_are_one_line_and_exit_2(tmp_path, capsys, make_args, message):
    for quiet in ([], ["-q"]):
        try:
            code = main([*quiet, *make_args(tmp_path)])
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        assert code == 2
        assert message in error_line(captured.err, "evaluate")
        if quiet:
            one_line(captured.err)
        assert captured.out == ""


@pytest.mark.parametrize("content", ["empty", "text-only"])
def test_train_on_a_folder_without_data_is_one_line_and_exit_2(tmp_path, capsys, content):
    folder = tmp_path / "src"
    folder.mkdir()
    if content == "text-only":
        (folder / "readme.txt").write_text("no MIDI here")
    out = tmp_path / "model.npz"
    for quiet in ([], ["-q"]):
        code = main([*quiet, "train", str(folder), "-o", str(out), "--minutes", "0.05"])
        captured = capsys.readouterr()
        assert code == 2
        assert "no MIDI files" in error_line(captured.err, "train")
        if quiet:
            one_line(captured.err)
        assert captured.out == ""
        assert not out.exists()
        assert not (tmp_path / "model.npz.data").exists()
