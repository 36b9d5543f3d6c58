"""Key finding on a pitch-class histogram (Krumhansl-Kessler), shared by metrics and the arranger.

The 24 key profiles are centred and scaled to unit norm, so the key whose profile has the
largest dot product with a histogram is the one with the highest Pearson correlation:
the histogram needs no centring (a centred profile sums to zero).
"""

import numpy as np
from numba import njit

#: Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: Semitones above the tonic of the major and the natural minor scale.
MAJOR_STEPS = np.array([0, 2, 4, 5, 7, 9, 11], dtype=np.int64)
MINOR_STEPS = np.array([0, 2, 3, 5, 7, 8, 10], dtype=np.int64)


def _centred_profiles() -> np.ndarray:
    # (12, 24): column k < 12 is the major profile of tonic k, column 12 + k the minor one.
    rows = np.arange(12)[:, None]
    tonics = np.arange(12)[None, :]
    profiles = np.concatenate([MAJOR_PROFILE[(rows - tonics) % 12], MINOR_PROFILE[(rows - tonics) % 12]], axis=1)
    profiles = profiles - profiles.mean(axis=0)
    return profiles / np.linalg.norm(profiles, axis=0)


def _scales() -> np.ndarray:
    # (24, 12): row k is the scale of key k (major tonics 0-11, then minor tonics 0-11).
    scales = np.zeros((24, 12), dtype=np.bool_)
    for tonic in range(12):
        scales[tonic, (tonic + MAJOR_STEPS) % 12] = True
        scales[12 + tonic, (tonic + MINOR_STEPS) % 12] = True
    return scales


#: (12, 24) centred unit-norm profiles of the 24 keys (major C..B, then minor C..B).
KEY_PROFILES = _centred_profiles()
#: (24, 12) the diatonic scale of each key (natural minor for the minor keys).
KEY_SCALES = _scales()
for _array in (MAJOR_PROFILE, MINOR_PROFILE, MAJOR_STEPS, MINOR_STEPS, KEY_PROFILES, KEY_SCALES):
    _array.flags.writeable = False


@njit(cache=True, nogil=True)
def best_key(histogram):
    """Index (0-23) of the key that correlates best with ``histogram`` (12,); -1 when it is flat.

    Ties go to the first key (C..B major, then C..B minor).
    """
    lowest = histogram[0]
    highest = histogram[0]
    for pc in range(12):
        lowest = min(lowest, histogram[pc])
        highest = max(highest, histogram[pc])
    if highest - lowest <= 1e-12:
        return -1
    best = 0
    best_score = -1e300
    for key in range(24):
        score = 0.0
        for pc in range(12):
            score += histogram[pc] * KEY_PROFILES[pc, key]
        if score > best_score:
            best_score = score
            best = key
    return best
