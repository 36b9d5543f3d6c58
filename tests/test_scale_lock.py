"""The scale lock (``--scale``): every note the model picks is in the scale, the player's never changes."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

import chiptuner
from chiptuner._kernels import arranger as _k
from chiptuner.cli import main
from chiptuner.errors import ParameterError
from chiptuner.model.arranger import (
    VOICE_HIGH,
    VOICE_LOW,
    Arranger,
    load_model,
    teacher_forced_log_prob,
    tokens_to_arrangement,
    voices_to_tokens,
)
from chiptuner.scales import SCALE_MODES, Scale, parse_scale

MELODY = str(resources.files("chiptuner") / "examples" / "ode_to_joy_melody.mid")


@pytest.fixture(scope="module")
def model():
    return load_model()


def _chromatic_melody(n_notes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quarter notes on every pitch class (most of them outside any scale), a rest-free line."""
    rng = np.random.default_rng(seed)
    pitch = np.repeat(rng.integers(55, 80, n_notes), 4)
    onset = np.zeros(len(pitch), dtype=bool)
    onset[::4] = True
    return pitch, onset, np.arange(len(pitch)) % 16


def _out_of_scale(pitch: np.ndarray, onset: np.ndarray, scale: Scale) -> int:
    return sum(not scale.allows(p) for p in pitch[onset])


@pytest.mark.parametrize(
    ("text", "tonic", "mode"),
    [("C:major", 0, "major"), ("a:minor", 9, "minor"), ("D:dorian", 2, "dorian"), ("F#:mixolydian", 6, "mixolydian"),
     ("Bb:aeolian", 10, "minor"), ("Eb:harmonic_minor", 3, "harmonic-minor"), ("G:blues", 7, "blues")],
)  # fmt: skip
def test_scales_parse_from_tonic_and_mode(text, tonic, mode):
    scale = parse_scale(text)
    assert (scale.tonic, scale.mode) == (tonic, mode)
    assert parse_scale(scale.name) == scale
    assert scale.pitch_classes == tuple(sorted((tonic + s) % 12 for s in SCALE_MODES[mode]))


def test_off_is_no_lock():
    assert parse_scale("off") is None
    assert parse_scale(None) is None


@pytest.mark.parametrize("text", ["H:major", "C:majestic", "C", "major", ":minor", "C:major:x"])
def test_a_bad_scale_names_the_choices(text):
    with pytest.raises(ParameterError) as error:
        parse_scale(text)
    message = str(error.value)
    assert "\n" not in message
    assert all(mode in message for mode in SCALE_MODES)


@pytest.mark.parametrize("scale_text", ["C:major", "D:dorian", "A:minor-pentatonic"])
def test_keys_mode_keeps_the_accompaniment_in_the_scale_and_the_players_note(model, scale_text):
    pitch, onset, position = _chromatic_melody(300, seed=1)
    scale = parse_scale(scale_text)
    free = tokens_to_arrangement(Arranger(model, seed=5).run(pitch, onset, position))
    locked = tokens_to_arrangement(Arranger(model, seed=5, scale=scale).run(pitch, onset, position))
    for v in (1, 2):
        assert locked.onset[:, v].sum() > 50
        assert _out_of_scale(locked.pitch[:, v], locked.onset[:, v], scale) == 0
    assert _out_of_scale(free.pitch[:, 1], free.onset[:, 1], scale) > 0, "the melody must pull the band out"
    # The player's own notes: pulse1 starts the played pitch (folded) on every onset, lock or not.
    played = pitch[onset]
    assert np.array_equal(locked.pitch[onset, 0] % 12, played % 12)
    assert np.array_equal(locked.pitch[onset, 0], free.pitch[onset, 0])
    assert _out_of_scale(locked.pitch[:, 0], onset, scale) > 0


def test_buttons_mode_keeps_the_lead_in_the_scale_and_the_contour(model):
    rng = np.random.default_rng(3)
    lanes = np.repeat(rng.integers(0, 5, 400), 4)
    onset = np.zeros(len(lanes), dtype=bool)
    onset[::4] = True
    position = np.arange(len(lanes)) % 16
    scale = parse_scale("E:phrygian")
    arrangement = tokens_to_arrangement(Arranger(model, mode="buttons", scale=scale).run(lanes, onset, position))
    for v in (0, 1, 2):
        assert _out_of_scale(arrangement.pitch[:, v], arrangement.onset[:, v], scale) == 0
    lead = arrangement.pitch[onset, 0]
    lane = lanes[onset]
    moves = np.sign(np.diff(lane))
    steps = np.sign(np.diff(lead))
    followed = moves != 0
    # The contour holds wherever the range leaves room (at its edges it cannot).
    inside = (lead[:-1] > VOICE_LOW[0] + 2) & (lead[:-1] < VOICE_HIGH[0] - 2)
    assert np.mean(steps[followed & inside] == moves[followed & inside]) == 1.0


def _bits(*pitch_classes: int) -> int:
    return sum(1 << pc for pc in pitch_classes)


def test_no_pitch_left_takes_the_nearest_in_the_contours_direction_then_the_nearest():
    low, n_notes, first = 48, 13, _k.FIRST_NOTE  # 48..60
    only_e = _bits(4)  # E: 52 and 64 (64 out of range)
    # A window 55..57 (tokens 9-11) has no E; going up there is none above in range (64 > 60)...
    assert _k.scale_window(first + 7, first + 10, 1, low, n_notes, only_e) == (first + 4, first + 5)
    # ...going down the nearest below is 52.
    assert _k.scale_window(first + 7, first + 10, -1, low, n_notes, only_e) == (first + 4, first + 5)
    # With E and B (59): up from 55..57 finds 59 first, though 52 is as near.
    e_and_b = _bits(4, 11)
    assert _k.scale_window(first + 7, first + 10, 1, low, n_notes, e_and_b) == (first + 11, first + 12)
    assert _k.scale_window(first + 7, first + 10, -1, low, n_notes, e_and_b) == (first + 4, first + 5)
    # A window that holds an allowed pitch stays as it is.
    assert _k.scale_window(first + 3, first + 6, 1, low, n_notes, only_e) == (first + 3, first + 6)
    assert _k.scale_window(first, -1, 0, low, n_notes, only_e) == (first, first + n_notes)


def test_the_lock_changes_on_the_fly_and_off_is_as_before(model):
    pitch, onset, position = _chromatic_melody(60, seed=2)
    before = Arranger(model, seed=9).run(pitch, onset, position)
    arranger = Arranger(model, seed=9, scale="C:major")
    arranger.set_settings(scale="off")
    assert arranger.scale is None
    assert np.array_equal(arranger.run(pitch, onset, position), before)
    arranger.reset(9)
    arranger.set_settings(scale="G:lydian")
    assert arranger.scale == Scale(7, "lydian")
    with pytest.raises(ParameterError):
        arranger.set_settings(scale="G:lydia")
    assert arranger.scale == Scale(7, "lydian")  # a bad value changes nothing


def test_scoring_under_the_lock_renormalises_over_the_allowed_tokens(model):
    score = chiptuner.read_midi(resources.files("chiptuner") / "examples" / "ode_to_joy_band.mid")
    from chiptuner.arrange import melody_input  # noqa: PLC0415

    arrays = melody_input(score)
    n = len(arrays["melody_pitch"])
    rng = np.random.default_rng(0)
    # A pulse2 line of random pitches, some outside C major.
    pitch = np.full((n, 4), -1)
    on = np.zeros((n, 4), dtype=bool)
    pitch[:, 1] = np.repeat(rng.integers(60, 72, n // 4 + 1), 4)[:n]
    on[::4, 1] = True
    tokens = voices_to_tokens(pitch, on)
    melody = arrays["melody_pitch"], arrays["melody_onset"], arrays["step_in_bar"]
    free = teacher_forced_log_prob(model, *melody, tokens)
    locked = teacher_forced_log_prob(model, *melody, tokens, scale="C:major")
    forbidden = np.isneginf(locked[:, 1])
    # Every step of pulse2 starts or holds one of its notes: outside C major, either is forbidden.
    out = np.array([not parse_scale("C:major").allows(p) for p in pitch[:, 1]])
    assert out.any() and not out.all()
    assert np.array_equal(forbidden, out)
    assert (locked[~forbidden, 1] >= free[~forbidden, 1] - 1e-9).all()
    assert (locked[~forbidden, 1] > free[~forbidden, 1]).any()
    assert np.array_equal(locked[:, [0, 3]], free[:, [0, 3]])  # the lead and the drums are not locked by default


def test_arrange_scale_reaches_the_file(tmp_path):
    out = tmp_path / "locked.mid"
    done = subprocess.run(
        [sys.executable, "-m", "chiptuner", "-q", "arrange", MELODY, "-o", str(out), "--scale", "Bb:lydian"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = chiptuner.read_midi(out).notes
    scale = parse_scale("Bb:lydian")
    for track in (2, 3):  # pulse2, triangle
        pitches = notes.pitch[notes.track == track]
        assert len(pitches) > 10
        assert not [p for p in pitches.tolist() if not scale.allows(p)]


@pytest.mark.parametrize("value", ["H:major", "C:majestic", "Cmajor"])
def test_arrange_bad_scale_is_one_line_exit_2(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(["arrange", MELODY, "-o", str(tmp_path / "x.mid"), "--scale", value])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "dorian" in lines[0] and "major" in lines[0]


def test_live_demo_band_stays_in_the_scale(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "chiptuner.live", "--demo", "--fast", "--no-sound", "--scale", "Ab:major", "--out",
         str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = chiptuner.read_midi(tmp_path / "session.mid").notes
    scale = parse_scale("Ab:major")  # Ab Bb C Db Eb F G: the tune (C D E F G) has D and E outside
    names = {1: "input", 2: "pulse1", 3: "pulse2", 4: "triangle"}
    by_track = {name: notes.pitch[notes.track == track].tolist() for track, name in names.items()}
    assert len(by_track["pulse2"]) + len(by_track["triangle"]) > 20
    assert not [p for p in by_track["pulse2"] + by_track["triangle"] if not scale.allows(p)]
    assert [p for p in by_track["input"] if not scale.allows(p)], "the melody must leave the scale somewhere"
    assert [p % 12 for p in by_track["pulse1"]] == [p % 12 for p in by_track["input"]]  # the player's own notes
