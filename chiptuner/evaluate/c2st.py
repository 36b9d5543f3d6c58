"""Classifier two-sample test: how well a classifier tells generated arrangements from real ones.

The test, fixed here so that every figure means the same thing:

1. Each arrangement (four voices on the 16th grid, with the song's ``step_in_bar``) is cut
   into whole 2-bar windows (32 steps from the song's first step; a last partial window is
   dropped).
2. Each window becomes the fixed vector of ``FEATURE_NAMES`` (``window_features``):

   - per pitched voice (pulse1, pulse2, triangle): onsets; share of steps sounding;
     distinct pitch classes of its onsets; range (highest minus lowest sounding pitch);
     mean absolute interval between consecutive onsets; share of consecutive onsets that
     repeat the pitch; share of onsets on a beat (``step_in_bar % 4 == 0``) and on an odd
     16th (``step_in_bar % 2 == 1``);
   - drums (noise): onsets and the same two shares;
   - consonance (intervals 0, 3, 4, 5, 7, 8, 9 mod 12) of pulse2 and of the triangle
     with pulse1 at pulse1's onsets where both sound, and of pulse2 with the triangle at
     steps where both sound and either starts a note.

   A share with nothing to count is NaN in the features, and -1 for the classifier (every
   feature is otherwise at least 0; a column that is all missing in a fold would break
   the classifier's binning).
3. The windows of the two samples are labelled 0 and 1 and classified by scikit-learn's
   ``HistGradientBoostingClassifier`` (default settings, ``random_state`` = the seed),
   cross-validated by ``GroupKFold`` (5 folds) with the song as group, so that no song is
   both learnt and judged.
4. The score is the ROC AUC of the out-of-fold probabilities of all windows: 0.5 means the
   classifier cannot tell the samples apart, 1.0 that it always can.

``two_sample_auc`` runs steps 3-4 on feature matrices; ``real_halves_auc`` is the
calibration of the instrument (two random halves of the real songs, by song).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chiptuner.errors import ParameterError
from chiptuner.metrics import CONSONANT_INTERVALS

__all__ = ["WINDOW_STEPS", "FEATURE_NAMES", "window_features", "two_sample_auc", "real_halves_auc"]

#: Steps per window: two bars of 16ths.
WINDOW_STEPS = 32
_PITCHED = ("pulse1", "pulse2", "triangle")
_PER_VOICE = ("onsets", "sounding", "pitch_classes", "range", "mean_interval", "repeats", "on_beat", "odd_16th")
#: The columns of ``window_features``, in order.
FEATURE_NAMES = (
    *(f"{voice}_{name}" for voice in _PITCHED for name in _PER_VOICE),
    "noise_onsets",
    "noise_on_beat",
    "noise_odd_16th",
    "pulse2_lead_consonance",
    "triangle_lead_consonance",
    "pulse2_triangle_consonance",
)
_CONSONANT = np.zeros(12, dtype=np.bool_)
_CONSONANT[list(CONSONANT_INTERVALS)] = True
_FOLDS = 5


def _share(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, count / np.maximum(total, 1), np.nan)


def window_features(voice_pitch: np.ndarray, voice_onset: np.ndarray, step_in_bar: np.ndarray) -> np.ndarray:
    """The feature vector of every whole 2-bar window of one arrangement.

    Parameters
    ----------
    voice_pitch : np.ndarray [shape=(T, 4), dtype=int]
        Sounding pitch (drum key for noise) of pulse1, pulse2, triangle, noise; -1 silent.
    voice_onset : np.ndarray [shape=(T, 4), dtype=bool]
        Note starts (a flag on a silent step is ignored).
    step_in_bar : np.ndarray [shape=(T,), dtype=int]
        Position of each step in its bar, 0-15.

    Returns
    -------
    np.ndarray [shape=(T // 32, len(FEATURE_NAMES)), dtype=float64]
    """
    pitch = np.asarray(voice_pitch)
    onset = np.asarray(voice_onset)
    position = np.asarray(step_in_bar)
    n = len(pitch)
    if pitch.ndim != 2 or pitch.shape[1] != 4 or onset.shape != pitch.shape or position.shape != (n,):
        raise ParameterError(
            f"voice pitch {pitch.shape}, onset {onset.shape} and step_in_bar {position.shape} must be "
            "(T, 4), (T, 4) and (T,)"
        )
    windows = n // WINDOW_STEPS
    used = windows * WINDOW_STEPS
    p = pitch[:used].astype(np.int64).reshape(windows, WINDOW_STEPS, 4)
    sounding = p >= 0
    started = onset[:used].astype(np.bool_).reshape(windows, WINDOW_STEPS, 4) & sounding
    pos = position[:used].astype(np.int64).reshape(windows, WINDOW_STEPS)
    on_beat = (pos % 4 == 0)[:, :, None] & started
    odd = (pos % 2 == 1)[:, :, None] & started
    counts = started.sum(axis=1)
    step_index = np.arange(WINDOW_STEPS)
    columns = []
    for v in range(3):
        pv, sv, ov = p[:, :, v], sounding[:, :, v], started[:, :, v]
        pc_seen = np.zeros((windows, 12), dtype=np.bool_)
        w_idx, s_idx = np.nonzero(ov)
        pc_seen[w_idx, pv[w_idx, s_idx] % 12] = True
        high = np.where(sv, pv, -1).max(axis=1)
        low = np.where(sv, pv, 1000).min(axis=1)
        # The previous onset of the same window, for each onset: a running maximum of indices.
        last = np.maximum.accumulate(np.where(ov, step_index, -1), axis=1)
        previous = np.concatenate((np.full((windows, 1), -1), last[:, :-1]), axis=1)
        pair = ov & (previous >= 0)
        interval = np.abs(pv - np.take_along_axis(pv, np.maximum(previous, 0), axis=1))
        n_pairs = pair.sum(axis=1)
        columns += [
            counts[:, v].astype(np.float64),
            sv.mean(axis=1),
            pc_seen.sum(axis=1).astype(np.float64),
            np.where(high >= 0, high - low, np.nan).astype(np.float64),
            _share(np.where(pair, interval, 0).sum(axis=1), n_pairs),
            _share((pair & (interval == 0)).sum(axis=1), n_pairs),
            _share(on_beat[:, :, v].sum(axis=1), counts[:, v]),
            _share(odd[:, :, v].sum(axis=1), counts[:, v]),
        ]
    columns += [
        counts[:, 3].astype(np.float64),
        _share(on_beat[:, :, 3].sum(axis=1), counts[:, 3]),
        _share(odd[:, :, 3].sum(axis=1), counts[:, 3]),
    ]
    for v in (1, 2):
        counted = started[:, :, 0] & sounding[:, :, v]
        consonant = counted & _CONSONANT[(p[:, :, v] - p[:, :, 0]) % 12]
        columns.append(_share(consonant.sum(axis=1), counted.sum(axis=1)))
    counted = sounding[:, :, 1] & sounding[:, :, 2] & (started[:, :, 1] | started[:, :, 2])
    consonant = counted & _CONSONANT[(p[:, :, 1] - p[:, :, 2]) % 12]
    columns.append(_share(consonant.sum(axis=1), counted.sum(axis=1)))
    return np.stack(columns, axis=1) if windows else np.zeros((0, len(FEATURE_NAMES)))


def _stack(samples: Sequence[np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [np.asarray(features, dtype=np.float64) for features in samples]
    for features in rows:
        if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
            raise ParameterError(
                f"{name}: a song's features have shape {features.shape}; make them with window_features"
            )
    song = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(rows)]) if rows else np.zeros(0)
    return (np.concatenate(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))), song


def two_sample_auc(
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    *,
    groups: tuple[Sequence, Sequence] | None = None,
    seed: int = 0,
) -> float:
    """ROC AUC of telling the windows of two samples apart, cross-validated by song.

    Parameters
    ----------
    first, second : sequence of np.ndarray
        Per song, its ``window_features``; ``first`` is labelled 0, ``second`` 1.
    groups : pair of sequences, optional
        The song of each entry of ``first`` and ``second``. Entries with equal groups stay
        in one fold (give the real and the generated arrangement of a song one group).
        By default ``first[i]`` and ``second[i]`` share the group ``i``.
    seed : int
        ``random_state`` of the classifier.

    Returns
    -------
    float
        0.5 when the samples cannot be told apart, 1.0 when always.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415 (sklearn is slow to import)
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415
    from sklearn.model_selection import GroupKFold  # noqa: PLC0415

    x0, song0 = _stack(first, "first")
    x1, song1 = _stack(second, "second")
    if groups is None:
        g0, g1 = song0, song1
    else:
        if len(groups[0]) != len(first) or len(groups[1]) != len(second):
            raise ParameterError("groups must give one group per song of each sample")
        names = {name: i for i, name in enumerate(dict.fromkeys([*map(str, groups[0]), *map(str, groups[1])]))}
        g0 = np.array([names[str(groups[0][i])] for i in song0], dtype=np.int64)
        g1 = np.array([names[str(groups[1][i])] for i in song1], dtype=np.int64)
    x = np.nan_to_num(np.concatenate((x0, x1)), nan=-1.0)
    y = np.concatenate((np.zeros(len(x0)), np.ones(len(x1)))).astype(np.int64)
    group = np.concatenate((g0, g1))
    if len(np.unique(group)) < _FOLDS or len(x0) == 0 or len(x1) == 0:
        raise ParameterError(
            f"the two-sample test needs windows on both sides and at least {_FOLDS} songs; "
            f"got {len(x0)} and {len(x1)} windows from {len(np.unique(group))} song(s)"
        )
    scores = np.zeros(len(x))
    for train, test in GroupKFold(n_splits=_FOLDS).split(x, y, group):
        classifier = HistGradientBoostingClassifier(random_state=seed)
        classifier.fit(x[train], y[train])
        scores[test] = classifier.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))


def real_halves_auc(real: Sequence[np.ndarray], *, seed: int = 0) -> float:
    """The instrument's calibration: the AUC between two random halves of the real songs (about 0.5).

    Parameters
    ----------
    real : sequence of np.ndarray
        Per real song, its ``window_features``.
    seed : int
        Seeds the split into halves and the classifier.
    """
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(order) // 2
    first, second = order[:half], order[half:]
    return two_sample_auc(
        [real[i] for i in first], [real[i] for i in second], groups=(list(first), list(second)), seed=seed
    )
