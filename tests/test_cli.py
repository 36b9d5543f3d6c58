"""The command line: convert end to end, error paths (one line, exit 2), progress bar, logging."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import mido
import pytest

import chiptuner.corpus.convert as convert_module
from chiptuner import cli
from chiptuner.cli import ProgressBar, build_parser, main
from chiptuner.corpus.convert import JOURNAL_NAME
from tests.test_convert import fill


def write_song(path, *, bars: int) -> None:
    """A melody (quarter notes), a bass (half notes) and hats, as a format-1 file."""
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    for channel, step, keys in ((0, 96, [64, 67, 69, 71, 72]), (1, 192, [40, 43, 45]), (9, 48, [42, 36])):
        track = mido.MidiTrack()
        mid.tracks.append(track)
        for i in range(bars * 4 * 96 // step):
            key = keys[i % len(keys)]
            track.append(mido.Message("note_on", channel=channel, note=key, velocity=90, time=0))
            track.append(mido.Message("note_off", channel=channel, note=key, velocity=0, time=step))
    mid.save(path)


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chiptuner", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_python_m_chiptuner_converts_and_resumes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_song(src / "a.mid", bars=8)
    write_song(src / "B.MID", bars=6)
    write_song(src / "short.midi", bars=1)
    out = tmp_path / "out"
    result = run_cli("convert", str(src), "-o", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("converted 3 files: ok 2, rejected 1, failed 0 in ")
    assert "Traceback" not in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert {e["id"]: e["status"] for e in report["files"]} == {"a.mid": "ok", "B.MID": "ok", "short.midi": "rejected"}
    again = run_cli("-q", "convert", str(src), "-o", str(out))
    assert again.returncode == 0
    assert again.stdout.startswith("converted 3 files (3 done before): ok 2, rejected 1, failed 0 in ")
    assert again.stderr == ""  # -q: no log lines


def test_failed_files_give_exit_code_1(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    write_song(src / "a.mid", bars=8)
    (src / "b.mid").write_bytes(b"")

    # a stage that raises something other than MidiFileError is a bug: `failed`
    def broken(path, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(convert_module, "convert_file", broken)
    code = main(["-q", "convert", str(src), "-o", str(tmp_path / "out"), "--workers", "1"])
    assert code == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [e["status"] for e in report["files"]] == ["failed", "failed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "{tmp}/missing", "-o", "{tmp}/out"], "no such file or folder"),
        (["convert", "{tmp}/empty", "-o", "{tmp}/out"], "no MIDI files"),
        (["convert", "{tmp}/src", "-o", "{tmp}/a_file/out"], "cannot write to"),
        (["convert", "{tmp}/src", "-o", "{tmp}/a_file"], "cannot write to"),
        (["convert", "{tmp}/src"], "required: -o/--out"),
        (["convert", "{tmp}/src", "-o", "{tmp}/out", "--workers", "0"], "--workers: 0 must be 1 or more"),
        (["convert", "{tmp}/src", "-o", "{tmp}/out", "--timeout", "x"], "--timeout: 'x' is not a number"),
        (["convert", "{tmp}/src", "-o", "{tmp}/out", "--max-onsets", "bar"], "invalid choice: 'bar'"),
        (["transmogrify"], "invalid choice: 'transmogrify'"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "src").mkdir()
    write_song(tmp_path / "src" / "a.mid", bars=8)
    (tmp_path / "a_file").write_text("")
    result = run_cli(*(arg.format(tmp=tmp_path) for arg in args))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].startswith("chiptuner")
    assert not (tmp_path / "out" / "report.json").exists()


def test_resume_with_other_options_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    write_song(tmp_path / "src" / "a.mid", bars=8)
    assert main(["-q", "convert", str(tmp_path / "src"), "-o", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    code = main(["-q", "convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "--max-onsets", "half_beat"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "same options or a new output folder" in err[0]


def test_a_full_disk_is_one_line_naming_the_cause_and_the_same_command_resumes(small_disk, tmp_path, capsys):
    (tmp_path / "src").mkdir()
    write_song(tmp_path / "src" / "a.mid", bars=8)
    write_song(tmp_path / "src" / "b.mid", bars=6)
    out = small_disk / "out"
    command = ["-q", "convert", str(tmp_path / "src"), "-o", str(out), "--workers", "1"]
    ballast = fill(small_disk)
    assert main(command) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"chiptuner convert: error: {out}: no space left on device (errno 28) while writing {JOURNAL_NAME}; "
        "free space and run the same command again to resume"
    ]
    assert captured.out == ""
    ballast.unlink()
    assert main(command) == 0
    assert capsys.readouterr().out.startswith("converted 2 files: ok 2, rejected 0, failed 0 in ")


def test_progress_bar_draws_on_one_line():
    stream = io.StringIO()
    bar = ProgressBar(stream, min_interval_sec=0.0)
    bar(5, 10, {"ok": 4, "rejected": 1})
    bar(10, 10, {"ok": 9, "rejected": 1})
    bar.close()
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # redrawn with \r, one line ended at close
    drawn = [part.strip() for part in text.split("\r") if part.strip()]
    assert any(" 5/10 " in part and "ok 4 rej 1 fail 0" in part and "files/s" in part for part in drawn), drawn
    assert drawn[-1].startswith("100%") and " 10/10 " in drawn[-1] and "ok 9 rej 1 fail 0" in drawn[-1]


def test_progress_bar_skips_redraws_but_not_the_last():
    stream = io.StringIO()
    bar = ProgressBar(stream, min_interval_sec=60.0)
    for done in range(1, 101):
        bar(done, 100, {"ok": done})
    text = stream.getvalue()
    assert text.count("\r") <= 3 and " 50/100 " not in text  # the empty bar, maybe the first, the last
    assert " 100/100 " in text.rsplit("\r", 1)[-1] and "ok 100 rej 0 fail 0" in text


def test_progress_bar_without_counts_shows_only_the_count_and_rate():
    stream = io.StringIO()
    bar = ProgressBar(stream, unit="songs", min_interval_sec=0.0)
    bar(3, 7, {})
    bar.close()
    last = stream.getvalue().rsplit("\r", 1)[-1]
    assert " 3/7 " in last and "songs/s" in last and "ok" not in last


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "flags", "drawn"), [(_Terminal, [], True), (io.StringIO, [], False),
                                                         (_Terminal, ["-q"], False)])  # fmt: skip
def test_convert_draws_the_bar_only_on_a_terminal_at_info(tmp_path, monkeypatch, capsys, stream, flags, drawn):
    (tmp_path / "src").mkdir()
    for name in ("a.mid", "b.mid"):
        write_song(tmp_path / "src" / name, bars=8)
    err = stream()
    monkeypatch.setattr(sys, "stderr", err)
    assert main([*flags, "convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "--workers", "1"]) == 0
    assert capsys.readouterr().out.startswith("converted 2 files: ok 2")
    assert (" 2/2 " in err.getvalue() and "ok 2 rej 0 fail 0" in err.getvalue()) == drawn, err.getvalue()
    assert ("\r" in err.getvalue()) == drawn


@pytest.mark.parametrize(("flags", "level"), [([], logging.INFO), (["-q"], logging.WARNING), (["-v"], logging.DEBUG),
                                               (["-qq"], logging.ERROR)])  # fmt: skip
def test_verbosity_flags_set_the_log_level_while_the_command_runs_and_only_then(monkeypatch, flags, level):
    package_logger = logging.getLogger("chiptuner")
    before = (package_logger.handlers[:], package_logger.level, package_logger.propagate)
    seen = {}

    def run(args):
        seen["level"] = package_logger.getEffectiveLevel()
        seen["propagate"] = package_logger.propagate
        return 0

    monkeypatch.setattr(cli, "_run_convert", run)
    assert main([*flags, "convert", "in", "-o", "out"]) == 0
    assert seen == {"level": level, "propagate": False}
    assert (package_logger.handlers, package_logger.level, package_logger.propagate) == before


def test_parser_defaults():
    args = build_parser().parse_args(["convert", "x", "-o", "y"])
    assert (args.workers, args.max_onsets, args.timeout, args.memory_mb) == (None, "beat", 10.0, 1024)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX only")
def test_console_script_is_installed(tmp_path):
    result = subprocess.run(["chiptuner", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("chiptuner ")
