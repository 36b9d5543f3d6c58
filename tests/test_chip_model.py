import mido
import numpy as np
import pytest

from chiptuner import chip_model as cm
from chiptuner._kernels import chip_model as _kc
from chiptuner.chip_midi import write_arrangement
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.types import Arrangement
from tests import reference


def _arrangement(n=64, seed=0):
    rng = np.random.default_rng(seed)
    pitch = np.full((n, 4), -1, np.int16)
    onset = np.zeros((n, 4), bool)
    for voice, every, low, high in ((0, 2, 60, 84), (1, 4, 52, 76), (2, 4, 33, 52)):
        for start in range(0, n - every, every):
            pitch[start : start + every - (voice == 0), voice] = rng.integers(low, high)
            onset[start, voice] = True
    drums = np.array([36, 42, 38, 46])
    pitch[::2, 3] = drums[np.arange(n // 2) % 4]
    onset[::2, 3] = True
    pitch[0, 3] = 49
    return Arrangement(pitch, onset)


def test_frame_rate_is_the_ntsc_rate_of_the_nsf_play_speed():
    assert cm.FRAME_RATE_HZ == pytest.approx(60.0988, abs=1e-4)
    # 16639 us per frame in the header; players run the 2A03's 29780.5 cycles per frame.
    assert 1e6 / cm.NSF_PLAY_SPEED_US == pytest.approx(cm.FRAME_RATE_HZ, rel=2e-5)


def test_periods_follow_the_timer_formulas():
    period, key = cm.pitch_period(0, np.array([69, 81]))
    assert period.tolist() == [253, 126]  # 1789773 / (16 * 440) - 1 = 253.2
    assert key.tolist() == [69, 81]
    tri, _ = cm.pitch_period(2, np.array([45]))  # A2 = 110 Hz: 1789773 / (32 * 110) - 1 = 507.4
    assert tri.tolist() == [507]
    assert cm.period_hz(0, np.array([253]))[0] == pytest.approx(1789773 / (16 * 254))


def test_notes_out_of_range_fold_by_octaves():
    period, key = cm.pitch_period(0, np.array([20, 24, 127]))
    assert np.all((period >= 8) & (period <= 0x7FF))
    assert key.tolist()[:2] == [44, 36] and (key - np.array([20, 24, 127])) % 12 == pytest.approx(0)
    # The unfolded 24 would need a period over $7FF (32.7 Hz).
    assert 1789773 / (16 * 32.70) - 1 > 0x7FF


def test_registers_of_one_note():
    pitch = np.full((8, 4), -1, np.int16)
    onset = np.zeros((8, 4), bool)
    pitch[0:4, 0] = 69
    onset[0, 0] = True
    frames = cm.play(cm.song_from_arrangement(Arrangement(pitch, onset)))
    frame, register, value = cm.frame_writes(frames)
    first = [(int(r), int(v)) for f, r, v in zip(frame, register, value, strict=True) if f == 0]
    assert first[0] == (0x15, 0x0F)  # enable first: a length counter loads only when enabled
    assert dict(first)[0x01] == 0x08 and dict(first)[0x05] == 0x08  # sweep off, negate set
    assert dict(first)[0x00] == (2 << 6) | 0x30 | 12  # 50 % duty, constant volume 12
    assert dict(first)[0x02] == 253 & 0xFF and dict(first)[0x03] == 0x08 | (253 >> 8)
    # 4 steps at 120 BPM = 0.5 s = 30 frames: the decay steps, then volume 0 on frame 30.
    volume = frames.volume[:, 0]
    assert volume[:10].tolist() == cm.ENVELOPES[cm.ENVELOPE_ROWS["pulse1"], :10].tolist()
    end = int(np.rint(0.5 * cm.FRAME_RATE_HZ))
    assert volume[end - 1] == 9 and volume[end] == 0
    later = frame > 0
    assert set(register[later].tolist()) == {0x00}  # only the volume changes after frame 0


def test_drums_ring_as_one_shots_and_the_triangle_articulates_repeats():
    pitch = np.full((16, 4), -1, np.int16)
    onset = np.zeros((16, 4), bool)
    pitch[0, 3] = 49  # a crash one step long rings for its whole decay
    onset[0, 3] = True
    pitch[0:8, 2] = 40
    onset[[0, 4], 2] = True
    frames = cm.play(cm.song_from_arrangement(Arrangement(pitch, onset)))
    crash = cm.ENVELOPES[cm.ENVELOPE_ROWS["crash"], : cm.ENVELOPE_LENGTH[cm.ENVELOPE_ROWS["crash"]]]
    assert frames.volume[: len(crash), 3].tolist() == crash.tolist()
    assert frames.period[0, 3] == cm.DRUM_SOUNDS["crash"][0]
    second = int(np.rint(4 * 0.125 * cm.FRAME_RATE_HZ))
    assert frames.volume[second - 1, 2] == 0 and frames.volume[second - 2, 2] == 1 and frames.volume[second, 2] == 1
    assert frames.registers[second - 1, 0x08] == 0x80 and frames.registers[second, 0x08] == 0xFF


def test_three_minutes_do_not_drift():
    n = 1440  # 3 minutes of 16ths at 120 BPM
    pitch = np.full((n, 4), -1, np.int16)
    onset = np.zeros((n, 4), bool)
    pitch[:, 0] = 60
    onset[::4, 0] = True
    notes = cm.chip_notes(cm.song_from_arrangement(Arrangement(pitch, onset)))
    assert notes.start_frame[-1] == round((n - 4) * 0.125 * cm.FRAME_RATE_HZ)
    assert notes.end_frame[-1] == round(180 * cm.FRAME_RATE_HZ)


def test_read_song_gives_back_what_write_arrangement_wrote(tmp_path):
    arrangement = _arrangement()
    path = tmp_path / "a.mid"
    write_arrangement(arrangement, path)
    song = cm.read_song(path)
    n = len(song.arrangement)
    assert np.array_equal(song.arrangement.pitch, arrangement.pitch[:n])
    assert np.all(arrangement.pitch[n:] < 0)
    assert np.array_equal(song.arrangement.onset & (song.arrangement.pitch >= 0), arrangement.onset[:n])
    assert np.all(song.duty == np.array(cm.DEFAULT_DUTY))
    assert song.step_sec[4] == pytest.approx(0.5)


def test_read_song_refuses_a_file_that_is_not_an_arrangement(tmp_path):
    mid = mido.MidiFile()
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", channel=5, note=60, velocity=90, time=0))
    track.append(mido.Message("note_off", channel=5, note=60, velocity=0, time=480))
    mid.tracks.append(track)
    mid.save(tmp_path / "x.mid")
    with pytest.raises(MidiFileError, match="chiptuner arrange"):
        cm.read_song(tmp_path / "x.mid")


def test_bad_song_shapes_are_refused():
    arrangement = _arrangement(8)
    with pytest.raises(ParameterError, match="do not fit"):
        cm.ChipSong(arrangement, np.arange(8.0), np.zeros((8, 2), np.int64))
    with pytest.raises(ParameterError, match="0-3"):
        cm.ChipSong(arrangement, np.arange(9.0), np.full((8, 2), 4, np.int64))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("one_shot", "cut_repeats"), [(False, False), (True, False), (False, True)])
def test_the_frame_loop_matches_the_reference(seed, one_shot, cut_repeats):
    rng = np.random.default_rng(seed)
    n_frames = 300
    starts = np.sort(rng.choice(np.arange(2, 280), size=25, replace=False))
    ends = np.minimum(starts + rng.integers(1, 30, 25), n_frames)
    into_next = rng.random(25) < 0.3  # some run into the next note, some past it (cut there)
    ends[into_next] = np.append(starts[1:], n_frames)[into_next]
    periods = rng.choice([100, 200, 300], 25)
    duties = rng.integers(0, 4, 25)
    rows = rng.integers(0, len(cm.ENVELOPE_LENGTH), 25)
    period, duty, volume = (np.empty(n_frames, np.int64) for _ in range(3))
    _kc.voice_frames(
        starts,
        ends,
        periods,
        duties,
        rows,
        cm.ENVELOPES,
        cm.ENVELOPE_LENGTH,
        one_shot,
        cut_repeats,
        period,
        duty,
        volume,
    )
    notes = [
        (int(s), int(e), int(p), int(d), cm.ENVELOPES[r, : cm.ENVELOPE_LENGTH[r]].tolist())
        for s, e, p, d, r in zip(starts, ends, periods, duties, rows, strict=True)
    ]
    expected = reference.voice_frames_reference(notes, n_frames, one_shot=one_shot, cut_repeats=cut_repeats)
    assert (period.tolist(), duty.tolist(), volume.tolist()) == expected
    assert any(v > 0 for v in expected[2]) and 0 in expected[2]


def test_timer_periods_match_the_reference_for_every_key():
    keys = np.arange(128)
    for voice in (0, 1, 2):
        period, _ = cm.pitch_period(voice, keys)
        assert period.tolist() == [reference.chip_period_reference(voice, int(k)) for k in keys]
