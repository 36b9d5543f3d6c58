"""Musical-quality statistics on hand-built songs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chiptuner.errors import ParameterError
from chiptuner.keys import causal_keys, estimate_key, scale_mask
from chiptuner.metrics import (
    HOLE_BARS,
    Row,
    compare,
    contour_violations,
    pool,
    song_statistics,
    voice_presence,
)

C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def _melody(pitches: list[int], length: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Each pitch held ``length`` steps, an onset on its first step."""
    pitch = np.repeat(np.array(pitches, dtype=np.int64), length)
    onset = np.zeros(len(pitch), dtype=bool)
    onset[::length] = True
    onset &= pitch >= 0
    return pitch, onset


def _silent(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, 4), -1, dtype=np.int64), np.zeros((n, 4), dtype=bool)


@pytest.mark.parametrize("shift", range(12))
def test_major_scale_gives_its_major_key(shift):
    pitch, onset = _melody([p + shift for p in C_MAJOR_SCALE])
    key = estimate_key(pitch, onset)
    assert (key.tonic, key.mode) == (shift, "major")
    assert np.flatnonzero(key.scale).tolist() == sorted((shift + np.array([0, 2, 4, 5, 7, 9, 11])) % 12)


def test_minor_melody_gives_minor_key():
    # A natural minor, dwelling on A, C and E.
    pitch, onset = _melody([57, 60, 64, 57, 59, 60, 62, 64, 65, 67, 64, 57, 57])
    key = estimate_key(pitch, onset)
    assert (key.tonic, key.mode) == (9, "minor")
    assert np.flatnonzero(key.scale).tolist() == [0, 2, 4, 5, 7, 9, 11]
    assert np.flatnonzero(scale_mask(9, "minor")).tolist() == [0, 2, 4, 5, 7, 9, 11]
    assert np.flatnonzero(scale_mask(0, "minor")).tolist() == [0, 2, 3, 5, 7, 8, 10]


def test_key_weights_duration_not_onsets():
    # Many short G-major notes against a long held C-major body: the held notes dominate.
    long_c = _melody([60, 64, 67, 65], length=16)
    short_g = _melody([66, 71, 62, 66, 66, 71, 62, 66], length=1)
    pitch = np.concatenate([long_c[0], short_g[0]])
    onset = np.concatenate([long_c[1], short_g[1]])
    assert estimate_key(pitch, onset).tonic == 0


def test_empty_melody_is_c_major():
    key = estimate_key(np.full(8, -1), np.zeros(8, bool))
    assert (key.tonic, key.mode) == (0, "major")


def test_causal_keys_match_estimates_of_the_prefix():
    rng = np.random.default_rng(3)
    pitch, onset = _melody(list(rng.choice([62, 64, 66, 67, 69, 71, 73, -1], size=40)))
    tonic, minor = causal_keys(pitch, onset)
    heard = np.cumsum(onset & (pitch >= 0))
    for t in range(len(pitch)):
        if heard[t] < 8:
            assert (tonic[t], minor[t]) == (0, False)
        else:
            key = estimate_key(pitch[: t + 1], onset[: t + 1])
            assert (tonic[t], bool(minor[t])) == (key.tonic, key.mode == "minor")
    assert heard[-1] >= 8 and heard[7] < 8  # both branches are exercised


def test_silent_accompaniment_is_silence_one():
    pitch, onset = _melody(C_MAJOR_SCALE * 4)
    voice_pitch, voice_onset = _silent(len(pitch))
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert stats.melody_steps == len(pitch)
    assert pool([stats])["silence"] == 1.0


def test_silence_counts_only_melody_steps_and_any_accompaniment_voice():
    pitch = np.array([60, 60, -1, -1, 62, 62, 62, 62])
    onset = np.array([1, 0, 0, 0, 1, 0, 0, 0], bool)
    voice_pitch, voice_onset = _silent(8)
    voice_pitch[4:6, 3] = 36  # a drum sounds on two melody steps
    voice_pitch[0:4, 0] = 60  # pulse1 is not accompaniment
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert (stats.melody_steps, stats.silent_steps) == (6, 4)


def test_density_is_onsets_per_bar():
    n = 64  # 4 bars
    pitch = np.full(n, 60)
    onset = np.zeros(n, bool)
    voice_pitch, voice_onset = _silent(n)
    voice_pitch[:, 2] = 40
    voice_onset[::4, 2] = True  # 16 bass onsets
    voice_pitch[::8, 3] = 38
    voice_onset[::8, 3] = True  # 8 snares
    voice_onset[1, 1] = True  # an onset flag on a silent step is no onset
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert stats.onsets.tolist() == [0, 0, 16, 8]
    assert pool([stats])["density"] == [0.0, 0.0, 4.0, 2.0]


@pytest.mark.parametrize(("tail", "expected"), [(16, (3 + 1 + 0) / 3), (15, (3 + 1) / 2)])
def test_pitch_variety_windows(tail, expected):
    n = 128 + tail
    voice_pitch, voice_onset = _silent(n)
    # window 1: pitch classes C, E, G (C at two octaves); window 2: only D; tail: none.
    for t, p in [(0, 48), (10, 60), (20, 64), (30, 67)]:
        voice_pitch[t, 1], voice_onset[t, 1] = p, True
    voice_pitch[64:70, 1] = 62
    voice_onset[[64, 66], 1] = True
    stats = song_statistics(np.full(n, -1), np.zeros(n, bool), voice_pitch, voice_onset)
    assert stats.variety[1] == pytest.approx(expected)
    assert stats.variety[0] == 0.0


def test_variety_of_a_song_under_a_bar_is_left_out_of_the_pool():
    short = song_statistics(np.full(8, -1), np.zeros(8, bool), *_silent(8))
    assert math.isnan(short.variety[2])
    voice_pitch, voice_onset = _silent(16)
    voice_pitch[0, 2], voice_onset[0, 2] = 40, True
    voice_pitch[8, 2], voice_onset[8, 2] = 43, True
    full = song_statistics(np.full(16, -1), np.zeros(16, bool), voice_pitch, voice_onset)
    assert pool([short, full])["variety"][2] == 2.0


def test_stuck_bass_longest_run():
    n = 40
    voice_pitch, voice_onset = _silent(n)
    # bass onsets: 40 40 40 40 (rests and holds between) 43 40 40 -> longest run 4
    for t, p in [(0, 40), (4, 40), (10, 40), (11, 40), (20, 43), (24, 40), (30, 40)]:
        voice_pitch[t : t + 2, 2] = p
        voice_onset[t, 2] = True
    voice_pitch[12:18, 2] = 40  # a long hold counts once
    # pulse1: the same pitch an octave apart is not identical
    for t, p in [(0, 60), (5, 72), (9, 60)]:
        voice_pitch[t, 0], voice_onset[t, 0] = p, True
    stats = song_statistics(np.full(n, -1), np.zeros(n, bool), voice_pitch, voice_onset)
    assert stats.longest_run.tolist() == [1, 0, 4]
    pooled = pool([stats])
    assert pooled["stuck_p98"] == 4.0 and pooled["stuck_median"] == 4.0


def test_stuck_pool_percentile_and_median_over_songs():
    songs = []
    for run in [1, 2, 3, 10]:
        voice_pitch, voice_onset = _silent(32)
        voice_pitch[:run, 1] = 50
        voice_onset[:run, 1] = True
        songs.append(song_statistics(np.full(32, -1), np.zeros(32, bool), voice_pitch, voice_onset))
    pooled = pool(songs)
    assert pooled["stuck_median"] == 2.5
    assert pooled["stuck_p98"] == pytest.approx(np.percentile([1, 2, 3, 10], 98))


def test_harmony_on_constructed_intervals():
    # One melody onset (C4) per 4 steps; accompaniment on each:
    cases = [
        (64, -1, True),  # major third above (pulse2 only)
        (-1, 41, True),  # fourth below = fifth mod 12 (triangle only): 60 - 41 = 19 -> 7
        (63, 45, True),  # minor third and a major sixth below (9 -> 3): both consonant
        (67, 49, False),  # fifth, but the bass is a minor sixth... 60-49=11: a major seventh
        (66, -1, False),  # tritone
        (62, -1, False),  # major second
        (-1, -1, None),  # both silent: not counted
    ]
    n = 4 * len(cases)
    pitch = np.repeat(np.full(len(cases), 60), 4)
    onset = np.zeros(n, bool)
    onset[::4] = True
    voice_pitch, voice_onset = _silent(n)
    for i, (p2, tri, _) in enumerate(cases):
        voice_pitch[4 * i : 4 * i + 4, 1] = p2
        voice_pitch[4 * i : 4 * i + 4, 2] = tri
    # an accompaniment change between melody onsets is not judged
    voice_pitch[1, 1] = 61
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert stats.harmony_steps == 6
    assert stats.harmony_consonant == 3
    assert pool([stats])["harmony"] == 0.5


def test_harmony_ignores_melody_rests_with_onset_flags():
    pitch = np.array([-1, 60])
    onset = np.array([True, True])
    voice_pitch, voice_onset = _silent(2)
    voice_pitch[:, 1] = 61
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert (stats.harmony_steps, stats.harmony_consonant) == (1, 0)


def test_in_key_on_constructed_onsets():
    pitch, onset = _melody(C_MAJOR_SCALE * 2)
    n = len(pitch)
    voice_pitch, voice_onset = _silent(n)
    # pulse2: E (in), F# (out), held E (not an onset); triangle: Bb (out), G (in), C (in)
    for t, p in [(0, 64), (2, 66)]:
        voice_pitch[t, 1], voice_onset[t, 1] = p, True
    voice_pitch[3:6, 1] = 64
    voice_onset[3, 1] = True
    for t, p in [(0, 46), (4, 43), (8, 36)]:
        voice_pitch[t, 2], voice_onset[t, 2] = p, True
    voice_pitch[0, 0], voice_onset[0, 0] = 61, True  # pulse1 is not counted
    voice_pitch[2, 3], voice_onset[2, 3] = 42, True  # nor drums
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert (stats.key.tonic, stats.key.mode) == (0, "major")
    assert (stats.key_onsets, stats.in_key_onsets) == (6, 4)
    assert pool([stats])["in_key"] == pytest.approx(4 / 6)


def test_lead_agreement_with_an_octave():
    pitch, onset = _melody([60, 62, 64, 65, 67], length=4)
    voice_pitch, voice_onset = _silent(len(pitch))
    voice_pitch[0:4, 0], voice_onset[0, 0] = 72, True  # an octave up: agrees
    voice_pitch[4:8, 0], voice_onset[4, 0] = 50, True  # an octave down: agrees
    voice_pitch[8:12, 0], voice_onset[9, 0] = 64, True  # a step late: disagrees
    voice_pitch[12:16, 0] = 65  # sounds but never starts: disagrees
    voice_pitch[16:20, 0], voice_onset[16, 0] = 68, True  # wrong pitch class
    stats = song_statistics(pitch, onset, voice_pitch, voice_onset)
    assert (stats.lead_onsets, stats.lead_agree) == (5, 2)
    assert pool([stats])["lead_agreement"] == pytest.approx(0.4)


def test_pool_of_nothing_to_count_is_nan():
    stats = song_statistics(np.full(16, -1), np.zeros(16, bool), *_silent(16))
    pooled = pool([stats])
    for key in ("silence", "harmony", "in_key", "lead_agreement"):
        assert math.isnan(pooled[key])
    with pytest.raises(ParameterError, match="at least one"):
        pool([])


def _pooled(**changes):
    base = {
        "silence": 0.10,
        "density": [4.0, 2.0, 4.0, 6.0],
        "variety": [5.0, 4.0, 3.0],
        "stuck_p98": 12.0,
        "stuck_median": 4.0,
        "harmony": 0.70,
        "in_key": 0.90,
        "lead_agreement": 0.99,
    }
    base.update(changes)
    return base


def _rows(rows: list[Row]) -> dict[tuple[str, str], Row]:
    return {(row.metric, row.voice): row for row in rows}


def test_compare_passes_the_real_statistics_against_themselves():
    rows = compare(_pooled(), _pooled())
    assert all(row.passed in (True, None) for row in rows)
    reported = {key for key, row in _rows(rows).items() if row.passed is None}
    assert reported == {("voice density", "pulse1"), ("pitch variety", "pulse1"), ("stuck notes (median)", "")}
    assert len(rows) == 13


@pytest.mark.parametrize(
    ("changes", "row", "passed"),
    [
        ({"silence": 0.119}, ("accompaniment silence", ""), True),
        ({"silence": 0.121}, ("accompaniment silence", ""), False),
        ({"silence": 0.079}, ("accompaniment silence", ""), False),
        ({"density": [4.0, 4.0, 4.0, 6.0]}, ("voice density", "pulse2"), True),
        ({"density": [4.0, 4.1, 4.0, 6.0]}, ("voice density", "pulse2"), False),
        ({"density": [4.0, 2.0, 1.9, 6.0]}, ("voice density", "triangle"), False),
        ({"density": [4.0, 2.0, 4.0, 2.9]}, ("voice density", "noise"), False),
        ({"variety": [5.0, 3.2, 3.0]}, ("pitch variety", "pulse2"), True),
        ({"variety": [5.0, 3.1, 3.0]}, ("pitch variety", "pulse2"), False),
        ({"variety": [5.0, 4.0, 2.3]}, ("pitch variety", "triangle"), False),
        ({"stuck_p98": 12.5}, ("stuck notes (p98)", ""), False),
        ({"stuck_p98": 3.0}, ("stuck notes (p98)", ""), True),
        ({"harmony": 0.671}, ("harmony ratio", ""), True),
        ({"harmony": 0.669}, ("harmony ratio", ""), False),
        ({"in_key": 0.869}, ("in-key ratio", ""), False),
        ({"lead_agreement": 0.949}, ("lead agreement", ""), False),
        ({"lead_agreement": 0.95}, ("lead agreement", ""), True),
        ({"harmony": math.nan}, ("harmony ratio", ""), False),
    ],
)
def test_compare_targets(changes, row, passed):
    result = _rows(compare(_pooled(**changes), _pooled()))[row]
    assert result.passed is passed


def test_compare_needs_pooled_dicts():
    with pytest.raises(ParameterError, match="harmony"):
        compare({k: v for k, v in _pooled().items() if k != "harmony"}, _pooled())


def test_bad_shapes_and_values_are_parameter_errors():
    with pytest.raises(ParameterError, match="must be"):
        song_statistics(np.full(4, 60), np.zeros(4, bool), *_silent(5))
    with pytest.raises(ParameterError, match="MIDI"):
        estimate_key(np.array([60, 130]), np.zeros(2, bool))
    with pytest.raises(ParameterError, match="mode"):
        scale_mask(0, "dorian")


def _band(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Four voices each starting a note every 4 steps, the noise on kick 36."""
    pitch = np.tile(np.array([72, 67, 48, 36]), (steps, 1))
    onset = np.zeros((steps, 4), dtype=bool)
    onset[::4] = True
    return pitch, onset


def test_presence_of_a_full_band():
    pitch, onset = _band(64 * 4)
    presence = voice_presence(pitch, onset)
    assert presence.onsets.tolist() == [64] * 4
    assert not presence.never_plays.any() and not presence.holes.any()
    assert presence.first_onset_bar.tolist() == [0, 0, 0, 0]
    assert presence.longest_silence.tolist() == [0.0] * 4


def test_drums_that_never_enter_and_a_hole_are_counted():
    pitch, onset = _band(16 * 20)
    pitch[:, 3] = -1  # the drums never play
    pitch[16 * 6 : 16 * 10, 1] = -1  # pulse2 silent for bars 7-10: a hole of exactly HOLE_BARS
    pitch[16 * 12 : 16 * 15, 2] = -1  # the triangle silent 3 bars: no hole
    presence = voice_presence(pitch, onset)
    assert presence.never_plays.tolist() == [False, False, False, True]
    assert presence.first_onset_bar[3] == -1
    assert presence.longest_silence.tolist() == [0.0, HOLE_BARS, 3.0, 18.0]  # the drums: bars 3-20
    assert presence.holes.tolist() == [False, True, False, True]


def test_a_late_entry_is_its_first_bar_and_the_start_is_not_a_hole():
    pitch, onset = _band(16 * 12)
    pitch[: 16 * 2 + 4, 3] = -1  # drums from step 36: bar 2 (0-based); the first two bars do not count
    presence = voice_presence(pitch, onset)
    assert presence.first_onset_bar[3] == 2
    assert presence.longest_silence[3] == pytest.approx(4 / 16)
    assert not presence.holes.any()


def test_presence_checks_its_shapes():
    with pytest.raises(ParameterError, match="must both be"):
        voice_presence(np.zeros((10, 3)), np.zeros((10, 3), dtype=bool))


def _lanes(lanes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    lane = np.repeat(np.array(lanes), 2)
    onset = np.zeros(len(lane), dtype=bool)
    onset[::2] = True
    return lane, onset


def test_a_contour_followed_has_no_violation():
    lane, onset = _lanes([0, 1, 2, 2, 4, 3, 0])
    lead = 60 + 2 * lane  # up with the lanes, and the same lane repeated is not a change
    assert contour_violations(lane, onset, lead) == (5, 0)


def test_a_contour_reversed_on_purpose_violates_every_change():
    lane, onset = _lanes([0, 1, 2, 3, 4, 3, 2, 1, 0, 4])
    lead = 80 - 2 * lane  # the lead moves against every lane change
    changes, violations = contour_violations(lane, onset, lead)
    assert changes == 9 and violations == changes  # 100%


def test_a_lead_that_keeps_its_pitch_or_falls_silent_violates_the_change():
    lane, onset = _lanes([0, 1, 2])
    assert contour_violations(lane, onset, np.full(len(lane), 60)) == (2, 2)
    lead = 60 + 2 * lane
    lead[2:4] = -1  # silent on the second onset
    assert contour_violations(lane, onset, lead) == (2, 2)
