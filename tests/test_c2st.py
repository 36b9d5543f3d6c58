"""The classifier two-sample test: features of fixed meaning, and an instrument calibrated on real songs."""

from __future__ import annotations

import numpy as np
import pytest

from chiptuner.errors import ParameterError
from chiptuner.evaluate.c2st import FEATURE_NAMES, WINDOW_STEPS, real_halves_auc, two_sample_auc, window_features


def _arrangement(steps: int = 64):
    pitch = np.full((steps, 4), -1, dtype=np.int64)
    onset = np.zeros((steps, 4), dtype=bool)
    position = np.arange(steps) % 16
    return pitch, onset, position


def _feature(row: np.ndarray, name: str) -> float:
    return float(row[FEATURE_NAMES.index(name)])


def test_window_features_count_what_they_say():
    pitch, onset, position = _arrangement(70)  # two whole windows; the last 6 steps are dropped
    # pulse1: C E G C' on the beats of the first bar, each held 2 steps
    for k, p in enumerate((60, 64, 67, 72)):
        pitch[4 * k : 4 * k + 2, 0] = p
        onset[4 * k, 0] = True
    # pulse2: E E on odd 16ths, held while pulse1 starts? no: on steps 1 and 3 only
    pitch[[1, 3], 1] = 64
    onset[[1, 3], 1] = True
    # triangle: C held the whole first window
    pitch[:32, 2] = 48
    onset[0, 2] = True
    # drums: kick on 0 and 8, snare on 5
    pitch[[0, 8, 5], 3] = [36, 36, 38]
    onset[[0, 8, 5], 3] = True
    features = window_features(pitch, onset, position)
    assert features.shape == (2, len(FEATURE_NAMES))
    first = features[0]
    assert _feature(first, "pulse1_onsets") == 4
    assert _feature(first, "pulse1_sounding") == pytest.approx(8 / WINDOW_STEPS)
    assert _feature(first, "pulse1_pitch_classes") == 3  # C, E, G
    assert _feature(first, "pulse1_range") == 12
    assert _feature(first, "pulse1_mean_interval") == pytest.approx((4 + 3 + 5) / 3)
    assert _feature(first, "pulse1_repeats") == 0
    assert _feature(first, "pulse1_on_beat") == 1 and _feature(first, "pulse1_odd_16th") == 0
    assert _feature(first, "pulse2_repeats") == 1 and _feature(first, "pulse2_odd_16th") == 1
    assert _feature(first, "triangle_onsets") == 1 and _feature(first, "triangle_sounding") == 1
    assert _feature(first, "noise_onsets") == 3
    assert _feature(first, "noise_on_beat") == pytest.approx(2 / 3)
    assert _feature(first, "noise_odd_16th") == pytest.approx(1 / 3)
    # triangle C against pulse1's C, E, G, C': all consonant; pulse2 never sounds on a pulse1 onset
    assert _feature(first, "triangle_lead_consonance") == 1
    assert np.isnan(_feature(first, "pulse2_lead_consonance"))
    # pulse2 E over the triangle's C (a third) at both pulse2 onsets, and at the triangle's onset pulse2 is silent
    assert _feature(first, "pulse2_triangle_consonance") == 1
    # the second window is silent: counts 0, shares undefined
    second = features[1]
    assert _feature(second, "pulse1_onsets") == 0 and np.isnan(_feature(second, "pulse1_on_beat"))
    assert np.isnan(_feature(second, "pulse1_range"))


def test_window_features_check_their_shapes():
    pitch, onset, position = _arrangement()
    with pytest.raises(ParameterError, match="must be"):
        window_features(pitch[:, :3], onset[:, :3], position)
    assert window_features(pitch[:20], onset[:20], position[:20]).shape == (0, len(FEATURE_NAMES))


def _random_songs(rng: np.random.Generator, n: int, density: float) -> list[np.ndarray]:
    songs = []
    for _ in range(n):
        steps = 32 * int(rng.integers(4, 8))
        pitch = rng.integers(40, 80, size=(steps, 4))
        onset = rng.random((steps, 4)) < density
        songs.append(window_features(pitch, onset, np.arange(steps) % 16))
    return songs


def test_two_sample_auc_tells_different_samples_apart_and_not_equal_ones():
    rng = np.random.default_rng(0)
    sparse, dense = _random_songs(rng, 30, 0.2), _random_songs(rng, 30, 0.6)
    assert two_sample_auc(sparse, dense) > 0.95
    same = _random_songs(rng, 60, 0.3)
    assert abs(two_sample_auc(same[:30], same[30:]) - 0.5) < 0.1
    assert abs(real_halves_auc(same) - 0.5) < 0.1


def test_two_sample_auc_needs_five_songs():
    rng = np.random.default_rng(1)
    with pytest.raises(ParameterError, match="at least 5 songs"):
        two_sample_auc(_random_songs(rng, 2, 0.2), _random_songs(rng, 2, 0.2))


@pytest.fixture(scope="module")
def chip_songs(corpora):
    """150 NES/Game Boy songs spread over the corpus, converted as for training."""
    from chiptuner.errors import MidiFileError  # noqa: PLC0415
    from chiptuner.pipeline import convert_file  # noqa: PLC0415

    files = sorted((corpora / "vgmusic_nes_gb" / "midis").glob("*.mid"))
    songs = []
    for path in files[:: max(len(files) // 400, 1)]:
        try:
            songs.append(convert_file(path))
        except MidiFileError:
            continue
        if len(songs) == 150:
            break
    return songs


@pytest.mark.corpus
def test_real_against_real_reads_one_half(chip_songs):
    real = [window_features(s["voice_pitch"], s["voice_onset"], s["step_in_bar"]) for s in chip_songs]
    auc = real_halves_auc(real, seed=0)
    assert abs(auc - 0.5) <= 0.05, auc


@pytest.mark.corpus
def test_the_unigram_baseline_is_told_apart(chip_songs):
    from chiptuner.evaluate.evaluation import BASELINES  # noqa: PLC0415
    from chiptuner.model.arranger import load_model, tokens_to_arrangement  # noqa: PLC0415

    model = load_model()
    prefix = "unigram_"
    unigram = BASELINES["unigram"].from_arrays(
        {key[len(prefix) :]: value for key, value in model.extras.items() if key.startswith(prefix)}
    )
    real, generated = [], []
    for i, song in enumerate(chip_songs):
        real.append(window_features(song["voice_pitch"], song["voice_onset"], song["step_in_bar"]))
        tokens = unigram.generate(song["melody_pitch"], song["melody_onset"], song["step_in_bar"], seed=i)
        arranged = tokens_to_arrangement(tokens)
        generated.append(window_features(arranged.pitch, arranged.onset, song["step_in_bar"]))
    assert two_sample_auc(real, generated) > 0.9


def test_a_feature_missing_from_every_window_is_no_error():
    # A share missing from every window of both samples (no drums on either side).
    rng = np.random.default_rng(2)
    first, second = _random_songs(rng, 10, 0.3), _random_songs(rng, 10, 0.3)
    column = FEATURE_NAMES.index("noise_on_beat")
    for features in [*first, *second]:
        features[:, column] = np.nan
    assert 0.0 <= two_sample_auc(first, second) <= 1.0
