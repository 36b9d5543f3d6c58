"""The README's commands work: each one in its ```sh blocks is run here or listed with why it is not.

The commands run in a temporary folder, with the README's placeholders (``melody.mid``,
``SRC...``, ``OUT_DIR``) made into real files there; ``chiptuner`` runs as ``python -m
chiptuner``, this checkout's code. Every command of ``chiptuner`` (``chiptuner live``
with the live command's own parser), run or not, must also parse with the program's own parser, so an option
renamed in the code but not in the README fails here. A command added to the README that is
neither run nor listed fails until it is one or the other. The ```python block runs too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import mido
import pytest

from chiptuner.cli import build_parser
from chiptuner.live import command as live
from tests.test_convert import write_song

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES = resources.files("chiptuner") / "examples"
MELODY = EXAMPLES / "ode_to_joy_melody.mid"
BAND = EXAMPLES / "ode_to_joy_band.mid"  # a whole song: a melody and its accompaniment
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
CONVERT_SYNOPSIS = (
    "chiptuner convert SRC... -o OUT_DIR [--workers N | --scheduler ADDRESS] [--max-onsets beat|half_beat] "
    "[--timeout SEC] [--memory-mb MB]"
)


def blocks(language: str) -> list[str]:
    """The README's fenced blocks in ``language``, in order."""
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def readme_commands() -> list[str]:
    """Every command of the ```sh blocks as its words (quotes and comments gone), ``&&`` splitting two."""
    commands = []
    for body in blocks("sh"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                commands.append(" ".join(words[:end]))
                words = words[end + 1 :]
    return commands


#: Commands a test cannot run, with the reason (and where something else covers them).
NOT_RUN = {
    "pip install .[live]": "installs the package (.ci/run installs it from scratch)",
    "pip install -e .[train,test,bench,live,cluster]": "installs the package (.ci/run runs it word for word)",
    "pytest": "the test suite itself (.ci/run runs it)",
    "pip install -e .[cluster]": "installs the cluster extra (.ci/run installs it)",
    "chiptuner live": "plays live on MIDI ports until Ctrl-C (tests/test_live_jack.py plays it on JACK)",
    "chiptuner live --in Keystation --out FluidSynth --metronome": "needs those two MIDI devices",
    "chiptuner live --buttons --lanes 60,62,64,65,67": "plays live on MIDI ports until Ctrl-C",
    "chiptuner live --follow": "plays live on MIDI ports until Ctrl-C",
    "chiptuner live --clock --in DAW": "needs a sequencer sending MIDI clock on a port named DAW",
    "chiptuner live --clock-out --out DAW --count-in 1": (
        "needs a port named DAW on JACK (tests/test_clock_jack.py has a second chiptuner follow the clock)"
    ),
    "chiptuner live --scale D:dorian --swing 1/3": "plays live on MIDI ports until Ctrl-C (tests/test_swing.py)",
    "chiptuner live --style pop --energy low --voices triangle,noise": "plays live on MIDI ports",
    "chiptuner live --web": "serves the page until Ctrl-C and opens a browser (tests/test_web.py)",
    "chiptuner evaluate data/converted --bare ../shared/corpora/nottingham/MIDI/melody --report docs/evaluation": (
        "arranges the whole converted test split with three seeds: many minutes"
    ),
    "chiptuner convert SRC... -o OUT_DIR --scheduler tcp://HOST:8786": "needs a running Dask scheduler",
    "chiptuner convert SRC... -o OUT_DIR --scheduler local:4": (
        "starts a Dask cluster of four processes (tests/test_cluster.py runs convert --scheduler local:N)"
    ),
}


def _chiptuner(words: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a README command in ``cwd``: ``chiptuner`` as ``python -m chiptuner``, ``python`` as this Python."""
    if words[0] == "chiptuner":
        words = ["-m", "chiptuner", *words[1:]]
    elif words[0] == "python":
        words = words[1:]
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    env.pop("JACK_DEFAULT_SERVER", None)
    return subprocess.run([sys.executable, *words], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def _demo(command: str, tmp_path: Path) -> None:
    # At tempo the demo takes 16 s; --fast, which the README offers next, does the same job at once.
    result = _chiptuner([*command.split(), "--fast"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo" / "session.mid").is_file() and (tmp_path / "demo" / "session.wav").is_file()


def _arrange(command: str, tmp_path: Path) -> None:
    shutil.copy(MELODY, tmp_path / "melody.mid")
    result = _chiptuner(command.split(), tmp_path)
    assert result.returncode == 0, result.stderr
    band = mido.MidiFile(tmp_path / "band.mid")
    names = [track.name for track in band.tracks]
    assert {"pulse1", "pulse2", "triangle"} <= set(names), names


def _convert(command: str, tmp_path: Path) -> None:
    # The synopsis with SRC... a folder of two songs, OUT_DIR a new folder and each option given once.
    assert command == CONVERT_SYNOPSIS
    (tmp_path / "SRC").mkdir()
    write_song(tmp_path / "SRC" / "a.mid", bars=8)
    write_song(tmp_path / "SRC" / "b.mid", bars=6)
    words = "chiptuner convert SRC -o OUT_DIR --workers 1 --max-onsets beat --timeout 30 --memory-mb 1024".split()
    result = _chiptuner(words, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("converted 2 files: ok 2, rejected 0, failed 0"), result.stdout
    report = json.loads((tmp_path / "OUT_DIR" / "report.json").read_text())
    assert sorted(entry["status"] for entry in report["files"]) == ["ok", "ok"]


def _arrange_chip_file(command: str, tmp_path: Path) -> None:
    shutil.copy(MELODY, tmp_path / "melody.mid")
    result = _chiptuner(command.split(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "band.nsf").read_bytes()[:5] == b"NESM\x1a"


def _export(command: str, tmp_path: Path) -> None:
    shutil.copy(MELODY, tmp_path / "melody.mid")
    made = _chiptuner("chiptuner arrange melody.mid -o band.mid".split(), tmp_path)
    assert made.returncode == 0, made.stderr
    result = _chiptuner(command.split(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "band.txt").read_text().startswith("# FamiTracker text export")


#: Commands the test runs, each with its check.
RUN: dict[str, Callable[[str, Path], None]] = {
    "chiptuner live --demo --out demo": _demo,
    "chiptuner arrange melody.mid -o band.mid --style chorale --energy high --voices pulse2,triangle --scale A:minor": (
        _arrange
    ),
    "chiptuner arrange melody.mid -o band.nsf": _arrange_chip_file,
    "chiptuner export band.mid -o band.txt": _export,
    CONVERT_SYNOPSIS: _convert,
}


def test_every_readme_command_is_run_or_listed_with_a_reason():
    commands = readme_commands()
    assert len(commands) >= 15, commands  # the blocks were found and split
    neither = [command for command in commands if command not in RUN and command not in NOT_RUN]
    assert neither == [], (
        f"README commands that tests/test_readme.py neither runs nor lists: {neither}; "
        "add each to RUN with a check, or to NOT_RUN with the reason"
    )
    stale = sorted((set(RUN) | set(NOT_RUN)) - set(commands))
    assert stale == [], f"tests/test_readme.py names commands the README no longer has: {stale}"
    assert not set(RUN) & set(NOT_RUN)


@pytest.mark.parametrize("command", sorted(RUN), ids=lambda command: command.split(" [")[0])
def test_the_readme_command_runs(command, tmp_path):
    RUN[command](command, tmp_path)


def _ours(command: str) -> bool:
    return command.startswith("chiptuner ") and command != CONVERT_SYNOPSIS


@pytest.mark.parametrize("command", [command for command in readme_commands() if _ours(command)])
def test_the_readme_command_parses(command):
    words = command.split()
    if words[1] == "live":
        parser, argv = live.build_parser(), words[2:]
    else:
        parser, argv = build_parser(), words[1:]
    try:
        parser.parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"the README's `{command}` does not parse (exit {error.code}): its options have changed")


def test_chiptuner_and_the_readme_subcommands_have_help():
    named = sorted({c.split()[1] for c in readme_commands() if c.startswith("chiptuner ")})
    assert {"arrange", "convert", "evaluate", "live"} <= set(named), named
    for words in ([], *([subcommand] for subcommand in named)):
        result = subprocess.run(
            [sys.executable, "-m", "chiptuner", *words, "--help"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(" ".join(["usage: chiptuner", *words])), result.stdout


def test_the_readme_python_block_runs(tmp_path):
    (code,) = blocks("python")
    assert '"song.mid"' in code
    shutil.copy(BAND, tmp_path / "song.mid")
    result = subprocess.run(
        [sys.executable, "-c", code + "\nprint(len(score.notes), sorted(arrays))"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes, keys = result.stdout.split(" ", 1)
    assert int(notes) > 0 and "melody_pitch" in keys and "voice_pitch" in keys, result.stdout
