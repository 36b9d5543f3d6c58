"""``python -m chiptuner.live`` without devices: the demo, its recording and its sound."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import wave

import mido
import numpy as np
import pytest

from chiptuner.errors import ParameterError
from chiptuner.live import command as live
from chiptuner.live.engine import Engine, FixedTempo, Timeline
from chiptuner.model import arranger as model
from tests.spectra import spectrum


def _run_live(*args, extra_env=None, **kwargs):
    env = {**os.environ, "JACK_NO_START_SERVER": "1", **(extra_env or {})}
    env.pop("JACK_DEFAULT_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "chiptuner.live", *args], capture_output=True, text=True, timeout=120, env=env, **kwargs
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = _run_live("--demo", "--fast", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def _voice_notes(midi: mido.MidiFile) -> dict[str, list[tuple[float, float, int]]]:
    """Per track name: (start_sec, end_sec, note) of every note."""
    tempo = 500_000
    notes: dict[str, list] = {}
    for track in midi.tracks:
        now, sounding = 0, {}
        for message in track:
            now += message.time
            if message.type == "set_tempo":
                tempo = message.tempo
            seconds = mido.tick2second(now, midi.ticks_per_beat, tempo)
            if message.type == "note_on" and message.velocity > 0:
                sounding[message.note] = seconds
            elif message.type in ("note_on", "note_off") and message.note in sounding:
                notes.setdefault(track.name, []).append((sounding.pop(message.note), seconds, message.note))
    return notes


def test_the_demo_writes_the_session_with_all_four_voices(demo):
    out, result = demo
    assert "ready in" in result.stderr and "deadline misses 0" in result.stderr
    midi = mido.MidiFile(out / "session.mid")
    assert [t.name for t in midi.tracks][:6] == ["tempo", "input", "pulse1", "pulse2", "triangle", "noise"]
    notes = _voice_notes(midi)
    melody = mido.MidiFile(live.demo_melody_path())
    played = sum(1 for t in melody.tracks for m in t if m.type == "note_on" and m.velocity > 0)
    assert len(notes["input"]) == 2 * played  # the melody, twice
    assert len(notes["pulse1"]) == len(notes["input"])  # the lead answers every note
    for start, _, pitch in notes["input"]:
        assert any(abs(s - start) < 1e-3 and (p - pitch) % 12 == 0 for s, _, p in notes["pulse1"])
    for voice in ("pulse2", "triangle", "noise"):
        assert len(notes[voice]) > 50, voice
    assert {p for _, _, p in notes["noise"]} <= {36, 38, 42, 46, 49}


def test_the_demo_audio_sounds_the_notes_of_the_session(demo):
    out, _ = demo
    with wave.open(str(out / "session.wav")) as wav:
        rate = wav.getframerate()
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64) / 32768
    notes = _voice_notes(mido.MidiFile(out / "session.mid"))
    assert abs(len(audio) / rate - (max(e for v in notes.values() for _, e, _ in v))) < 2.0
    checked = found = 0
    # Windows of 200 ms inside which pulse1, pulse2 and the triangle each hold one note: each
    # held pitch must stand above the semitones beside it (from 150 Hz up, where 200 ms of
    # Hann window resolves a semitone; a one-semitone error passes under 1% of windows).
    for start in np.arange(0.5, len(audio) / rate - 1.0, 0.05):
        window = (start, start + 0.2)
        sounding = []
        for voice in ("pulse1", "pulse2", "triangle"):
            sounding += [p for s, e, p in notes.get(voice, []) if s <= window[0] - 0.01 and e >= window[1]]
        if not sounding:
            continue
        freq, magnitude = spectrum(audio, rate, *window)

        def level(f_hz, freq=freq, magnitude=magnitude):
            return magnitude[np.abs(freq - f_hz) <= 0.015 * f_hz].max()

        for pitch in sounding:
            f0 = 440.0 * 2 ** ((pitch - 69) / 12)
            if f0 < 150:
                continue
            checked += 1
            found += level(f0) > max(level(f0 * 2 ** (-1 / 12)), level(f0 * 2 ** (1 / 12)))
    assert checked > 300
    assert found / checked > 0.95, (found, checked)
    # And nothing where nothing plays: the last second after the tail is quiet.
    assert np.abs(audio[-rate // 10 :]).max() < 0.01


def test_ctrl_c_keeps_the_session(tmp_path):
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "chiptuner.live", "--demo", "--no-sound", "--out", str(tmp_path)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    line = ""
    while "ready" not in line and time.monotonic() < deadline:
        line = process.stderr.readline()
    time.sleep(3.0)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    notes = _voice_notes(mido.MidiFile(tmp_path / "session.mid"))
    assert 4 <= len(notes["input"]) <= 12  # three seconds at 120 BPM: half notes and quarters
    assert not (tmp_path / "session.wav").exists()


def test_the_compile_notice_is_said_once_while_the_kernels_load_slowly(caplog):
    with caplog.at_level(logging.INFO, logger="chiptuner.live"):
        with live.compile_notice(after_sec=0.05):
            time.sleep(0.5)
        time.sleep(0.2)
    assert [record.getMessage() for record in caplog.records] == [live.COMPILING]


def test_a_quick_load_or_one_ended_early_says_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="chiptuner.live"):
        with live.compile_notice(after_sec=0.3):
            pass
        with live.compile_notice(after_sec=0.3) as kernels_ready:
            kernels_ready()
            time.sleep(0.6)
        time.sleep(0.5)
    assert caplog.records == []


def test_a_cold_numba_cache_is_said_at_the_start_and_a_warm_one_is_not(tmp_path):
    # An empty cache folder: numba compiles every kernel the command uses (about 20 s), then
    # the same command loads them from that folder.
    cold = _run_live("--demo", "--fast", "--no-sound", "--no-record", extra_env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert cold.returncode == 0, cold.stderr
    lines = cold.stderr.splitlines()
    assert lines[0] == live.COMPILING and lines[1].startswith("ready in "), cold.stderr
    assert float(lines[1].split()[2]) > live.COMPILE_NOTICE_AFTER_SEC
    warm = _run_live("--demo", "--fast", "--no-sound", "--no-record", extra_env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert warm.returncode == 0 and warm.stderr.startswith("ready in "), warm.stderr
    assert live.COMPILING not in warm.stderr


def test_bad_options_get_one_line_and_exit_2():
    result = _run_live("--bpm", "1000")
    assert result.returncode == 2 and "BPM" in result.stderr and "Traceback" not in result.stderr
    result = _run_live("--buttons", "--lanes", "60,60,61,62,63", "--demo", "--fast", "--no-record")
    assert result.returncode == 2 and "five different" in result.stderr


@pytest.mark.parametrize("value", ["1e-320", "0.049", "0", "11"])
def test_a_temperature_outside_the_range_is_refused_by_the_parser(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        live.build_parser().parse_args(["--temperature", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err  # one line, no usage block
    assert "--temperature" in err and "from 0.05 to 10" in err


def test_the_energy_choices_are_the_models():
    assert live.ENERGY_LEVELS == model.ENERGY_LEVELS


@pytest.mark.parametrize("option", ["--style", "--voices"])
@pytest.mark.parametrize("web", [False, True], ids=["terminal", "web"])
def test_a_bad_style_or_voice_is_one_line_naming_the_choices_and_exit_2(tmp_path, capsys, option, web):
    choices = ", ".join(model.load_model().styles if option == "--style" else model.ACCOMPANIMENT)
    where = ["--web", "--no-browser", "--port", "0"] if web else ["--demo", "--fast", "--out", str(tmp_path)]
    code = live.main([*where, "--no-sound", "--no-record", option, "bass"])
    err = capsys.readouterr().err
    assert code == live.EXIT_USAGE
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("chiptuner live: ") and "'bass'" in err and choices in err
    assert not list(tmp_path.iterdir())


def test_a_bad_energy_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stopped:
        live.build_parser().parse_args(["--energy", "max"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "--energy" in err and all(level in err for level in model.ENERGY_LEVELS)


def test_the_demo_plays_only_the_voices_asked_for(tmp_path, capsys):
    code = live.main(
        ["--demo", "--fast", "--no-sound", "--out", str(tmp_path), "--voices", "pulse2", "--energy", "high"]
    )
    assert code == 0, capsys.readouterr().err
    notes = _voice_notes(mido.MidiFile(tmp_path / "session.mid"))
    assert len(notes["pulse1"]) > 10 and len(notes["pulse2"]) > 10
    assert "triangle" not in notes and "noise" not in notes


class _Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[int, ...]] = []

    def send(self, message: tuple[int, ...]) -> None:
        self.messages.append(message)


def _accompaniment_note_ons(messages, channels) -> int:
    return sum(m[0] & 0xF0 == 0x90 and m[2] > 0 and m[0] & 0x0F in channels[1:] for m in messages)


def test_engine_settings_reach_the_arranger_at_its_next_step():
    arranger = model.Arranger(model.load_model(), seed=5)
    notes = []
    for i in range(64):  # a note every half second, for 32 s
        pitch = (60, 64, 67, 72, 67, 64)[i % 6]
        notes += [(0.5 * i, (0x90, pitch, 100)), (0.5 * i + 0.4, (0x80, pitch, 0))]
    timeline = Timeline(notes)
    sent = _Sent()
    engine = Engine(arranger, clock=timeline, inbox=timeline, outputs=[sent], tempo=FixedTempo(120))
    engine.run(max_steps=64)
    assert _accompaniment_note_ons(sent.messages, engine.channels) > 0  # the band played
    engine.set_settings(style="pop", energy="low", voices="none")
    for bad in ({"style": "polka"}, {"energy": "max"}, {"voices": "pulse2,bass"}):
        with pytest.raises(ParameterError):
            engine.set_settings(**bad)  # refused on the caller's thread; the good ones stay queued
    # Nothing changes until the engine's next step: never in the middle of one.
    assert (arranger.style, arranger.energy, arranger.voices) == ("chip", "mid", model.ACCOMPANIMENT)
    engine.set_settings(energy="high")  # a later change of one setting keeps the others queued
    sent.messages.clear()
    engine.run(max_steps=64)
    assert engine.arranger is arranger
    assert (arranger.style, arranger.energy, arranger.voices) == ("pop", "high", ())
    assert _accompaniment_note_ons(sent.messages, engine.channels) == 0  # the lead alone
    assert sum(m[0] == 0x90 and m[2] > 0 for m in sent.messages) > 10
    engine.set_settings(voices=["triangle", "noise"])  # on again: the take plays on with them
    sent.messages.clear()
    engine.run(max_steps=128)
    assert arranger.voices == ("triangle", "noise") and arranger.style == "pop"
    assert _accompaniment_note_ons(sent.messages, engine.channels) > 0
    assert not [m for m in sent.messages if m[0] == 0x91 and m[2] > 0]  # pulse2 stays off


def test_help_is_quick():
    started = time.perf_counter()
    result = _run_live("--help")
    assert result.returncode == 0 and "--demo" in result.stdout
    assert time.perf_counter() - started < 5.0  # the budget (1 s) is held by bench/test_bench_live.py
