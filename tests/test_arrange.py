"""``arrange`` with the shipped model: the output contract, the band plays, the lead follows the player."""

from __future__ import annotations

import typing
from importlib import resources

import mido
import numpy as np
import pytest

import chiptuner
from chiptuner.arrange import arrange_file, arrange_score, melody_input
from chiptuner.melody import MaxOnsets
from chiptuner.model.arranger import InputMode, load_model

EXAMPLES = resources.files("chiptuner") / "examples"
MELODY = str(EXAMPLES / "ode_to_joy_melody.mid")
BAND = str(EXAMPLES / "ode_to_joy_band.mid")
NAMES = ("pulse1", "pulse2", "triangle", "noise")
RANGES = {"pulse1": (48, 96), "pulse2": (40, 88), "triangle": (28, 64)}
DRUM_KEYS = {36, 38, 42, 46, 49}


def read_voices(path) -> dict[str, list[tuple[int, int, int, int]]]:
    """(start_tick, end_tick, key, channel) per track name; fails where a voice holds two notes at once."""
    voices = {}
    for track in mido.MidiFile(path).tracks[1:]:
        now, sounding, notes = 0, {}, []
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                assert not sounding, f"{track.name}: tick {now} starts {message.note} over {sounding}"
                sounding[message.note] = now
            elif message.type in ("note_on", "note_off"):
                notes.append((sounding.pop(message.note), now, message.note, message.channel))
        assert not sounding, f"{track.name}: notes never released"
        voices[track.name] = sorted(notes)
    return voices


def assert_contract(path, *, ticks_per_beat: int, gm_drums: bool = False) -> dict[str, list]:
    mid = mido.MidiFile(path)
    assert mid.type == 1
    assert mid.ticks_per_beat == ticks_per_beat
    assert [track.name for track in mid.tracks[1:]] == list(NAMES)
    assert not any(m.type == "note_on" for m in mid.tracks[0])
    assert any(m.type == "set_tempo" for m in mid.tracks[0])
    voices = read_voices(path)
    for name, channel in zip(NAMES, (0, 1, 2, 9 if gm_drums else 3), strict=True):
        notes = voices[name]
        assert {c for *_, c in notes} <= {channel}, name
        keys = {key for _, _, key, _ in notes}
        if name == "noise":
            assert keys <= DRUM_KEYS
        else:
            low, high = RANGES[name]
            assert all(low <= key <= high for key in keys), f"{name}: {sorted(keys)} outside {low}-{high}"
        assert all(end > start for start, end, _, _ in notes), name
    return voices


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def arranged(tmp_path_factory, model):
    """The melody example arranged with the defaults (keys mode, seed 0)."""
    out = tmp_path_factory.mktemp("arranged") / "ode.mid"
    return out, arrange_file(MELODY, out, model=model)


def test_example_meets_the_output_contract(arranged):
    out, result = arranged
    voices = assert_contract(out, ticks_per_beat=chiptuner.read_midi(MELODY).ticks_per_beat)
    # the file holds what the result says
    assert [len(voices[name]) for name in NAMES] == result.arrangement.onset.sum(axis=0).tolist()
    assert result.n_steps == len(result.arrangement) == len(result.melody_pitch) == len(result.melody_onset)


def test_the_band_plays(arranged):
    out, result = arranged
    voices = read_voices(out)
    bars = result.n_steps / 16
    for name in ("pulse2", "triangle", "noise"):
        assert len(voices[name]) >= 1, f"{name} is silent"
    # not "one note": the accompaniment plays at least a note every other bar per voice, and
    # the pitched voices use more than one pitch
    for name in ("pulse2", "triangle", "noise"):
        assert len(voices[name]) >= bars / 2, f"{name}: {len(voices[name])} notes in {bars:g} bars"
    for name in ("pulse1", "pulse2", "triangle"):
        assert len({key for _, _, key, _ in voices[name]}) >= 3, name


def test_arrangement_array_pitches_inside_the_ranges(arranged):
    _, result = arranged
    pitch = result.arrangement.pitch
    for v, name in enumerate(NAMES[:3]):
        low, high = RANGES[name]
        sounding = pitch[:, v][pitch[:, v] >= 0]
        assert ((sounding >= low) & (sounding <= high)).all(), name
    drums = pitch[:, 3][pitch[:, 3] >= 0]
    assert set(drums.tolist()) <= DRUM_KEYS


def test_lead_agreement_every_input_onset_in_the_array_and_the_file(arranged):
    out, result = arranged
    steps = np.flatnonzero(result.melody_onset)
    assert len(steps) > 20
    assert result.arrangement.onset[steps, 0].all()
    assert ((result.arrangement.pitch[steps, 0] - result.melody_pitch[steps]) % 12 == 0).all()
    # in the file: a pulse1 note starts on each onset's tick with that pitch class (repeated notes kept apart)
    tick_per_step = chiptuner.read_midi(MELODY).ticks_per_beat // 4
    starts = {start: key for start, _, key, _ in read_voices(out)["pulse1"]}
    for t in steps.tolist():
        assert t * tick_per_step in starts, f"no pulse1 note at step {t}"
        assert (starts[t * tick_per_step] - int(result.melody_pitch[t])) % 12 == 0, f"step {t}"


def test_the_input_melody_is_the_file_melody():
    """The example's melody is plain quarter and half notes: the simplified input keeps every one."""
    score = chiptuner.read_midi(MELODY)
    arrays = melody_input(score)
    tick_per_step = score.ticks_per_beat // 4
    notes = score.notes
    onsets = dict(zip((notes.start_tick // tick_per_step).tolist(), notes.pitch.tolist(), strict=True))
    steps = np.flatnonzero(arrays["melody_onset"])
    assert set(steps.tolist()) <= set(onsets)
    assert len(steps) >= 0.9 * len(onsets)
    assert all(int(arrays["melody_pitch"][t]) == onsets[t] for t in steps.tolist())
    n = len(arrays["melody_pitch"])
    assert n == -(-score.end_tick // tick_per_step)
    for key in ("melody_onset", "lane", "lane_onset", "step_in_bar"):
        assert arrays[key].shape == (n,), key
    assert set(arrays["lane"][arrays["lane_onset"]].tolist()) <= set(range(5))
    assert np.array_equal(arrays["lane_onset"], arrays["melody_onset"])
    assert arrays["step_in_bar"][:32].tolist() == list(range(16)) * 2  # 4/4


def test_same_seed_same_bytes_other_seed_other_notes(tmp_path, model):
    a, b, c = tmp_path / "a.mid", tmp_path / "b.mid", tmp_path / "c.mid"
    first = arrange_file(MELODY, a, model=model, seed=7)
    arrange_file(MELODY, b, model=model, seed=7)
    other = arrange_file(MELODY, c, model=model, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    accompaniment = slice(1, 4)
    assert not np.array_equal(first.arrangement.pitch[:, accompaniment], other.arrangement.pitch[:, accompaniment])
    # the lead still follows the player whatever the seed
    steps = np.flatnonzero(other.melody_onset)
    assert ((other.arrangement.pitch[steps, 0] - other.melody_pitch[steps]) % 12 == 0).all()


def test_arrange_score_equals_arrange_file_and_default_model(tmp_path, model):
    score = chiptuner.read_midi(MELODY)
    with_model = arrange_score(score, model=model, seed=3)
    default = arrange_score(score, seed=3)
    from_file = arrange_file(MELODY, tmp_path / "x.mid", model=model, seed=3)
    for other in (default, from_file):
        assert np.array_equal(with_model.arrangement.pitch, other.arrangement.pitch)
        assert np.array_equal(with_model.arrangement.onset, other.arrangement.onset)


def test_lower_temperature_changes_the_arrangement(model):
    score = chiptuner.read_midi(MELODY)
    hot = arrange_score(score, model=model, seed=1, temperature=1.0)
    cold = arrange_score(score, model=model, seed=1, temperature=0.2)
    assert not np.array_equal(hot.arrangement.pitch, cold.arrangement.pitch)


def test_buttons_mode(tmp_path, model):
    out = tmp_path / "buttons.mid"
    result = arrange_file(MELODY, out, model=model, mode="buttons")
    voices = assert_contract(out, ticks_per_beat=480)
    for name in ("pulse1", "pulse2", "triangle"):
        assert len(voices[name]) > 0, f"{name} is silent in buttons mode"
    # the model picks the lead's pitches, but the lead still starts a note on every input onset
    steps = np.flatnonzero(result.melody_onset)
    assert result.arrangement.onset[steps, 0].all()
    keys = arrange_score(chiptuner.read_midi(MELODY), model=model, mode="keys")
    assert not np.array_equal(keys.arrangement.pitch[:, 0], result.arrangement.pitch[:, 0])


@pytest.mark.parametrize("mode", typing.get_args(InputMode))
@pytest.mark.parametrize("max_onsets", typing.get_args(MaxOnsets))
def test_every_mode_and_simplification(tmp_path, model, mode, max_onsets):
    out = tmp_path / "x.mid"
    result = arrange_file(MELODY, out, model=model, mode=mode, max_onsets=max_onsets)
    assert_contract(out, ticks_per_beat=480)
    steps = np.flatnonzero(result.melody_onset)
    assert len(steps) > 0 and result.arrangement.onset[steps, 0].all()


def test_full_band_song_uses_its_melody_track(tmp_path, model):
    out = tmp_path / "band.mid"
    result = arrange_file(BAND, out, model=model)
    score = chiptuner.read_midi(BAND)
    voices = assert_contract(out, ticks_per_beat=score.ticks_per_beat)
    assert all(len(voices[name]) > 0 for name in NAMES)
    # the melody chosen from the full song is the melody track's line (not the bass or the chords)
    melody_track = score.track_names.index("melody")
    tick_per_step = score.ticks_per_beat // 4
    mine = score.notes.track == melody_track
    lead = dict(
        zip((score.notes.start_tick[mine] // tick_per_step).tolist(), score.notes.pitch[mine].tolist(), strict=True)
    )
    steps = np.flatnonzero(result.melody_onset).tolist()
    assert len(steps) >= 0.9 * len(lead)
    assert all(lead.get(t) == int(result.melody_pitch[t]) for t in steps)
    assert ((result.arrangement.pitch[steps, 0] - result.melody_pitch[steps]) % 12 == 0).all()


def write_song(path, *, ticks_per_beat: int, us_per_beat: int, numerator: int, drums_only: bool = False) -> None:
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=us_per_beat, time=0),
            mido.MetaMessage("time_signature", numerator=numerator, denominator=4, time=0),
        ]
    )
    notes = mido.MidiTrack()
    channel = 9 if drums_only else 0
    for i in range(24):
        key = (36, 42, 38, 42)[i % 4] if drums_only else (60, 62, 64, 65, 67, 65, 64, 62)[i % 8]
        notes.append(mido.Message("note_on", channel=channel, note=key, velocity=90, time=0))
        notes.append(mido.Message("note_off", channel=channel, note=key, velocity=0, time=ticks_per_beat))
    mid.tracks += [meta, notes]
    mid.save(path)


def test_ticks_per_beat_tempo_and_time_signature_of_the_input_are_kept(tmp_path, model):
    source, out = tmp_path / "waltz.mid", tmp_path / "out.mid"
    write_song(source, ticks_per_beat=96, us_per_beat=750_000, numerator=3)
    result = arrange_file(source, out, model=model)
    assert_contract(out, ticks_per_beat=96)
    score = chiptuner.read_midi(out)
    assert score.tempo.us_per_beat.tolist() == [750_000]
    assert score.time_signatures.numerator.tolist() == [3]
    assert score.time_signatures.denominator.tolist() == [4]
    assert result.n_steps == 24 * 4
    steps = np.flatnonzero(result.melody_onset)
    assert steps.tolist() == list(range(0, 96, 4))
    assert ((result.arrangement.pitch[steps, 0] - result.melody_pitch[steps]) % 12 == 0).all()


def test_gm_drums_puts_noise_on_channel_9(tmp_path, model):
    out = tmp_path / "gm.mid"
    arrange_file(MELODY, out, model=model, gm_drums=True)
    voices = assert_contract(out, ticks_per_beat=480, gm_drums=True)
    assert voices["noise"] and {c for *_, c in voices["noise"]} == {9}
    notes = chiptuner.read_midi(out).notes
    assert notes.is_drum[notes.track == 4].all()


def test_drums_only_file_is_a_midi_file_error_naming_no_melody(tmp_path, model):
    source, out = tmp_path / "drums.mid", tmp_path / "out.mid"
    write_song(source, ticks_per_beat=480, us_per_beat=500_000, numerator=4, drums_only=True)
    with pytest.raises(chiptuner.MidiFileError, match="no melody"):
        arrange_file(source, out, model=model)
    assert not out.exists()
    with pytest.raises(chiptuner.MidiFileError, match="no melody"):
        melody_input(chiptuner.read_midi(source))


def test_unreadable_input_is_a_midi_file_error(tmp_path, model):
    source = tmp_path / "notes.mid"
    source.write_text("not a MIDI file\n")
    with pytest.raises(chiptuner.MidiFileError):
        arrange_file(source, tmp_path / "out.mid", model=model)
    assert not (tmp_path / "out.mid").exists()


@pytest.mark.parametrize(("option", "value"), [("mode", "piano"), ("temperature", 0.0), ("temperature", -1.0)])
def test_bad_options_are_parameter_errors(model, option, value):
    with pytest.raises(chiptuner.ParameterError):
        arrange_score(chiptuner.read_midi(MELODY), model=model, **{option: value})
