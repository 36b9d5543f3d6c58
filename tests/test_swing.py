"""Swing (``--swing``): every off-beat 16th starts S of a 16th late, live, in the recording and in the files."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import mido
import numpy as np
import pytest

from chiptuner.chip_midi import write_arrangement
from chiptuner.cli import main
from chiptuner.errors import ParameterError
from chiptuner.live.command import main as live_main
from chiptuner.live.engine import Engine, FixedTempo, FollowTempo, MidiClockTempo, Recorder, Timeline
from chiptuner.live.session import write_session
from chiptuner.model.arranger import Arranger, load_model, tokens_to_arrangement
from chiptuner.timebase import check_swing, swung_step, swung_ticks

MELODY = str(resources.files("chiptuner") / "examples" / "ode_to_joy_melody.mid")
STEP_SEC = 0.125  # 120 BPM
TRIPLET = 1 / 3


@pytest.fixture(scope="module")
def model():
    return load_model()


def _note_on_ticks(path, names=("pulse1", "pulse2", "triangle", "noise")) -> np.ndarray:
    """Absolute ticks of the note-ons of the named tracks."""
    ticks = []
    for track in mido.MidiFile(path).tracks:
        if track.name not in names:
            continue
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                ticks.append(tick)
    return np.array(sorted(ticks))


def _delays(ticks: np.ndarray, ticks_per_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Per note-on: its delay after the step it is nearest to (in steps), and whether that step is an off-beat."""
    eighth = 2 * ticks_per_step
    within = ticks % eighth  # 0 on a beat's 8th, about one step (+ swing) on the off-beat 16th
    odd = within >= ticks_per_step * 0.75
    delay = np.where(odd, within - ticks_per_step, within) / ticks_per_step
    return delay, odd


def test_swung_step_delays_only_the_off_beats():
    steps = np.arange(8)
    assert np.array_equal(swung_step(steps, 0.0), steps)
    assert np.allclose(swung_step(steps, 0.25), [0, 1.25, 2, 3.25, 4, 5.25, 6, 7.25])
    assert np.array_equal(swung_ticks(steps, 480, TRIPLET), [0, 160, 240, 400, 480, 640, 720, 880])
    assert np.array_equal(swung_ticks(steps, 96, 0.0), steps * 24)


@pytest.mark.parametrize("bad", [-0.1, 0.51, float("nan"), "1/3", True])
def test_a_bad_swing_is_refused_naming_the_range(bad):
    with pytest.raises(ParameterError, match="0.5"):
        check_swing(bad)


def test_the_arrangement_file_swings_and_straight_is_unchanged(model, tmp_path):
    pitch = np.repeat([60, 62, 64, 65, 67, 69, 71, 72], 2)
    onset = np.ones(len(pitch), dtype=bool)
    tokens = Arranger(model, seed=1).run(np.tile(pitch, 4), np.tile(onset, 4), np.arange(64) % 16)
    arrangement = tokens_to_arrangement(tokens)
    straight, swung = tmp_path / "straight.mid", tmp_path / "swung.mid"
    write_arrangement(arrangement, straight)
    write_arrangement(arrangement, swung, swing=TRIPLET)
    plain = _note_on_ticks(straight)
    moved = _note_on_ticks(swung)
    assert len(plain) == len(moved) > 40
    odd = (plain // 120) % 2 == 1
    assert odd.sum() > 10
    assert np.array_equal(moved[~odd], plain[~odd])
    assert np.array_equal(moved[odd] - plain[odd], np.full(odd.sum(), 40))  # a third of a 120-tick 16th


def test_arrange_swing_reaches_the_file(tmp_path):
    out = tmp_path / "swung.mid"
    done = subprocess.run(
        [sys.executable, "-m", "chiptuner", "-q", "arrange", MELODY, "-o", str(out), "--swing", "1/3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    delay, odd = _delays(_note_on_ticks(out), 120)
    assert odd.sum() > 5
    assert np.allclose(delay[odd], TRIPLET, atol=1e-9)  # 40 ticks: a third of a 16th
    assert np.allclose(delay[~odd], 0.0)


@pytest.mark.parametrize(("command", "args"), [(main, ["arrange", MELODY, "-o", "x.mid"]), (live_main, ["--demo"])])
@pytest.mark.parametrize("value", ["0.6", "-1", "fast", "1/0"])
def test_a_bad_swing_option_is_one_line_exit_2(capsys, command, args, value):
    with pytest.raises(SystemExit) as stop:
        command([*args, "--swing", value])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "0-0.5" in lines[0] and "1/3" in lines[0]


def _step_times(engine: Engine, n_steps: int) -> list[tuple[float, int, bool]]:
    """(clock time, position, onset) of every arranger step the engine runs."""
    steps = []
    original = engine.arranger.step

    def spy(melody, onset, position, lead_pitch=-1):
        steps.append((engine.clock(), position, onset))
        return original(melody, onset, position, lead_pitch)

    engine.arranger.step = spy
    engine.run(max_steps=n_steps)
    return steps


def test_the_engine_steps_on_the_swung_grid(model):
    timeline = Timeline()
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, swing=TRIPLET)
    steps = _step_times(engine, 32)
    expected = [STEP_SEC * swung_step(k, TRIPLET) for k in range(32)]
    assert np.allclose([t for t, _, _ in steps], expected)
    assert engine.report().deadline_misses == 0


def test_a_swung_player_lands_on_the_step_they_meant(model):
    """Off-beat notes played swung (a triplet's worth late, and 10 ms behind that) land on their off-beat."""
    offbeats = [9, 11, 13, 15, 17, 19]
    late_sec = TRIPLET * STEP_SEC + 0.01  # 52 ms after the straight grid: past a 40 ms grace window

    def onsets_with(swing):
        messages = []
        for k in offbeats:
            messages += [(k * STEP_SEC + late_sec, (0x90, 60 + k, 100)), (k * STEP_SEC + 0.1, (0x80, 60 + k, 0))]
        timeline = Timeline(messages)
        engine = Engine(Arranger(model), clock=timeline, inbox=timeline, swing=swing, grace_sec=0.04)
        return [position for _, position, onset in _step_times(engine, 24) if onset]

    assert onsets_with(TRIPLET) == [k % 16 for k in offbeats]  # positions in the bar
    assert onsets_with(0.0) == [(k + 1) % 16 for k in offbeats]  # straight, the same notes are a step late


def test_the_recording_swings(model, tmp_path):
    notes = [(k * 2 * STEP_SEC, (0x90, 60 + k % 12, 100)) for k in range(32)]
    notes += [(k * 2 * STEP_SEC + 0.2, (0x80, 60 + k % 12, 0)) for k in range(32)]
    delays, odds = [], []
    # Four takes: some seeds play a straight accompaniment to this melody, with no off-beat note.
    for seed in range(4):
        timeline = Timeline(notes)
        recorder = Recorder()
        engine = Engine(Arranger(model, seed=seed), clock=timeline, inbox=timeline, recorder=recorder, swing=0.25)
        engine.run(max_steps=64)
        write_session(recorder, tmp_path / str(seed), bpm=120.0, sound=False)
        ticks = _note_on_ticks(tmp_path / str(seed) / "session.mid", names=("pulse2", "triangle", "noise"))
        delay, odd = _delays(ticks, 120)
        delays.append(delay)
        odds.append(odd)
    delay, odd = np.concatenate(delays), np.concatenate(odds)
    assert odd.sum() > 5
    assert np.allclose(delay[odd], 0.25)  # 30 ticks of a 120-tick 16th
    assert np.allclose(delay[~odd], 0.0)


def test_live_demo_session_file_swings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "chiptuner.live", "--demo", "--fast", "--no-sound", "--swing", "0.3", "--out",
         str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    delay, odd = _delays(_note_on_ticks(tmp_path / "session.mid", names=("pulse2", "triangle", "noise")), 120)
    assert odd.sum() > 5
    assert np.allclose(delay[odd], 0.3, atol=1 / 120)  # to the tick
    assert np.allclose(delay[~odd], 0.0, atol=1 / 120)


def test_midi_clock_steps_swing_after_their_pulse(model):
    pulse_sec = STEP_SEC / 6
    messages = [(0.5, (0xFA,))] + [(0.5 + i * pulse_sec, (0xF8,)) for i in range(6 * 16)]
    timeline = Timeline(messages)
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, tempo=MidiClockTempo(), swing=0.5)
    steps = _step_times(engine, 16)
    late = np.array([t - (0.5 + k * STEP_SEC) for k, (t, _, _) in enumerate(steps)])
    assert np.allclose(late[0::2], 0.0, atol=1e-9)
    assert np.allclose(late[1::2], 0.5 * STEP_SEC, atol=0.01 * STEP_SEC)  # the tempo is measured from the pulses


def test_following_a_swung_player_keeps_the_tempo(model):
    """A player at 120 BPM who swings every off-beat 16th as the engine does is on its grid: no drift."""
    messages = []
    for k in range(16, 16 * 12):
        if k % 4 in (0, 3):  # beats and the last 16th of each
            at = STEP_SEC * swung_step(k, TRIPLET)
            messages += [(at, (0x90, 60, 100)), (at + 0.03, (0x80, 60, 0))]
    timeline = Timeline(messages)
    tempo = FollowTempo(120.0)
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, tempo=tempo, swing=TRIPLET, count_in_steps=16)
    engine.run(max_steps=16 * 12)
    assert abs(tempo.bpm - 120.0) < 1.5
    assert abs(tempo.next_step_sec - 16 * 12 * STEP_SEC) < 0.01


def test_swing_changes_between_steps(model):
    timeline = Timeline()
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, tempo=FixedTempo(120.0))
    engine.set_settings(swing=0.5)
    steps = _step_times(engine, 4)
    assert np.allclose([t for t, _, _ in steps], [0.0, 1.5 * STEP_SEC, 2 * STEP_SEC, 3.5 * STEP_SEC])
    with pytest.raises(ParameterError):
        engine.set_settings(swing=0.9)


def test_chip_files_swing_to_the_nearest_frame(tmp_path):
    """`arrange --swing 1/3 -o x.nsf`: the chip plays each off-beat note S of a step late, on the nearest frame."""
    from chiptuner import chip_model as cm  # noqa: PLC0415
    from chiptuner.nsf import nsf_bytes  # noqa: PLC0415

    for name, swing in (("straight", "0"), ("swung", "1/3")):
        assert main(["arrange", MELODY, "-o", str(tmp_path / f"{name}.mid"), "--swing", swing]) == 0
        assert main(["arrange", MELODY, "-o", str(tmp_path / f"{name}.nsf"), "--swing", swing]) == 0
    straight = cm.read_song(tmp_path / "straight.mid")
    swung = cm.read_song(tmp_path / "swung.mid", swing=TRIPLET)
    # The swung file reads back onto the same steps; only the steps' times move.
    np.testing.assert_array_equal(swung.arrangement.pitch, straight.arrangement.pitch)
    np.testing.assert_array_equal(swung.arrangement.onset, straight.arrangement.onset)
    notes, straight_notes = cm.chip_notes(swung), cm.chip_notes(straight)
    frames_per_step = STEP_SEC * cm.FRAME_RATE_HZ
    exact = swung.step_sec[notes.start_step] * cm.FRAME_RATE_HZ
    odd = notes.start_step % 2 == 1
    assert odd.sum() > 20 and (~odd).sum() > 20
    np.testing.assert_allclose(exact[odd] - notes.start_step[odd] * frames_per_step, TRIPLET * frames_per_step)
    assert np.abs(notes.start_frame - exact).max() <= 0.5  # the nearest frame
    delay = notes.start_frame - straight_notes.start_frame
    assert set(delay[~odd].tolist()) == {0} and set(delay[odd].tolist()) <= {2, 3}  # 2.5 frames, rounded
    # The NSF that `arrange -o x.nsf --swing` wrote plays exactly these frames.
    assert (tmp_path / "swung.nsf").read_bytes() == nsf_bytes(swung, title="ode_to_joy_melody")
    assert (tmp_path / "swung.nsf").read_bytes() != (tmp_path / "straight.nsf").read_bytes()
    exported = tmp_path / "exported.nsf"
    assert main(["export", str(tmp_path / "swung.mid"), "-o", str(exported), "--swing", "1/3"]) == 0
    assert exported.read_bytes()[0x80:] == (tmp_path / "swung.nsf").read_bytes()[0x80:]
    # Read without its swing, a file swung by half a step would land its off-beats on the next step.
    write_swung = tmp_path / "half.mid"
    assert main(["arrange", MELODY, "-o", str(write_swung), "--swing", "0.5"]) == 0
    half = cm.read_song(write_swung, swing=0.5)
    np.testing.assert_array_equal(half.arrangement.onset, straight.arrangement.onset)


@pytest.mark.parametrize("swing", [0.0, 0.1, TRIPLET, 0.4, 0.5])
@pytest.mark.parametrize("ticks_per_beat", [96, 480, 384])
def test_swung_ticks_read_back_onto_their_steps(swing, ticks_per_beat):
    from chiptuner.timebase import swung_ticks_to_steps  # noqa: PLC0415

    steps = np.arange(0, 200)
    np.testing.assert_array_equal(
        swung_ticks_to_steps(swung_ticks(steps, ticks_per_beat, swing), ticks_per_beat, swing), steps
    )
