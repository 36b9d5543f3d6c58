"""The key of a melody: Krumhansl-Kessler probe-tone profiles, for a whole melody or causally.

The profiles are correlated with the duration-weighted pitch-class histogram of the melody
(``estimate_key``); ``causal_keys`` gives the same estimate for every step from the melody
heard so far, as a live player would hear it. The arranger's kernel does the causal
estimate itself (``_kernels.keys``, the same profiles); the baselines and the musical
statistics (``metrics``) use this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chiptuner._kernels.keys import KEY_PROFILES, MAJOR_PROFILE, MAJOR_STEPS, MINOR_PROFILE, MINOR_STEPS
from chiptuner.errors import ParameterError

__all__ = [
    "Key",
    "MAJOR_PROFILE",
    "MINOR_PROFILE",
    "MAJOR_STEPS",
    "MINOR_STEPS",
    "check_melody",
    "estimate_key",
    "causal_keys",
    "scale_mask",
]


def scale_mask(tonic: int, mode: str) -> np.ndarray:
    """Pitch classes of a diatonic scale (natural minor for ``"minor"``).

    Parameters
    ----------
    tonic : int
        0 (C) to 11 (B).
    mode : {"major", "minor"}

    Returns
    -------
    np.ndarray [shape=(12,), dtype=bool]
    """
    if mode not in ("major", "minor"):
        raise ParameterError(f"mode is {mode!r}; use 'major' or 'minor'")
    if isinstance(tonic, bool) or not isinstance(tonic, (int, np.integer)) or not 0 <= tonic < 12:
        raise ParameterError(f"tonic is {tonic!r}; use a pitch class 0 (C) to 11 (B)")
    mask = np.zeros(12, dtype=np.bool_)
    mask[(int(tonic) + (MAJOR_STEPS if mode == "major" else MINOR_STEPS)) % 12] = True
    mask.flags.writeable = False
    return mask


@dataclass(frozen=True, eq=False)
class Key:
    """A diatonic key.

    Attributes
    ----------
    tonic : int
        Pitch class of the tonic, 0 (C) to 11 (B).
    mode : {"major", "minor"}
    scale : np.ndarray [shape=(12,), dtype=bool]
        The pitch classes of the scale (natural minor for ``"minor"``), read-only.

    Notes
    -----
    Compare keys by ``tonic`` and ``mode`` (``==`` is identity, the scale being an array).
    """

    tonic: int
    mode: str
    scale: np.ndarray

    @classmethod
    def of(cls, tonic: int, mode: str) -> Key:
        """The key of ``tonic`` in ``mode``, with its scale filled in."""
        return cls(int(tonic), mode, scale_mask(tonic, mode))

    def __repr__(self) -> str:
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return f"Key({names[self.tonic]} {self.mode})"


def check_melody(pitch: np.ndarray, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A melody's pitch (int64, -1 for a rest) and onset (bool) arrays, or ParameterError naming what is wrong."""
    pitch_arr = np.asarray(pitch)
    onset_arr = np.asarray(onset)
    if pitch_arr.ndim != 1 or onset_arr.shape != pitch_arr.shape:
        raise ParameterError(
            f"melody pitch {pitch_arr.shape} and onset {onset_arr.shape} must be 1-D of one length (T,)"
        )
    if pitch_arr.size and not np.issubdtype(pitch_arr.dtype, np.integer):
        raise ParameterError(f"melody pitch has dtype {pitch_arr.dtype}; pass whole MIDI numbers, -1 for a rest")
    pitch_arr = pitch_arr.astype(np.int64)
    if pitch_arr.size and (pitch_arr.min() < -1 or pitch_arr.max() > 127):
        raise ParameterError(
            f"melody pitch spans {pitch_arr.min()}..{pitch_arr.max()}; use MIDI 0-127 and -1 for a rest"
        )
    return pitch_arr, onset_arr.astype(np.bool_)


def _pitch_class_histogram(pitch: np.ndarray) -> np.ndarray:
    sounding = pitch[pitch >= 0]
    return np.bincount(sounding % 12, minlength=12).astype(np.float64)


def _best_keys(histograms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # histograms (N, 12) -> tonic (N,), minor (N,); C major where the histogram is flat or empty.
    centred = histograms - histograms.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    scores = centred @ KEY_PROFILES
    best = np.argmax(scores, axis=1)
    flat = norms <= 1e-12
    best[flat] = 0
    return best % 12, best >= 12


def estimate_key(pitch: np.ndarray, onset: np.ndarray) -> Key:
    """The key of a melody (Krumhansl-Kessler).

    The duration-weighted pitch-class histogram (one count per sounding step) is correlated
    with the 24 rotated major and minor profiles; the best correlation wins (ties: the
    first of C..B major, then C..B minor). A melody with no pitch, or with every pitch
    class equally long, is read as C major.

    Parameters
    ----------
    pitch : np.ndarray [shape=(T,), dtype=int]
        Pitch per step, -1 for a rest.
    onset : np.ndarray [shape=(T,), dtype=bool]
        Onset flags (checked for shape; the histogram weights by duration, not onsets).

    Returns
    -------
    Key
    """
    pitch_arr, _ = check_melody(pitch, onset)
    tonic, minor = _best_keys(_pitch_class_histogram(pitch_arr)[None, :])
    return Key.of(int(tonic[0]), "minor" if minor[0] else "major")


def causal_keys(pitch: np.ndarray, onset: np.ndarray, *, min_onsets: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The key at every step from the melody heard so far (steps 0..t), as ``estimate_key``.

    Parameters
    ----------
    pitch : np.ndarray [shape=(T,), dtype=int]
        Pitch per step, -1 for a rest.
    onset : np.ndarray [shape=(T,), dtype=bool]
    min_onsets : int
        Before this many sounding onsets have been heard the key is C major.

    Returns
    -------
    tonic : np.ndarray [shape=(T,), dtype=int64]
    minor : np.ndarray [shape=(T,), dtype=bool]
    """
    pitch_arr, onset_arr = check_melody(pitch, onset)
    if isinstance(min_onsets, bool) or not isinstance(min_onsets, (int, np.integer)) or min_onsets < 0:
        raise ParameterError(f"min_onsets is {min_onsets!r}; use a whole number >= 0")
    n = len(pitch_arr)
    counts = np.zeros((n, 12), dtype=np.float64)
    sounding = pitch_arr >= 0
    counts[np.flatnonzero(sounding), pitch_arr[sounding] % 12] = 1.0
    tonic, minor = _best_keys(np.cumsum(counts, axis=0))
    early = np.cumsum(onset_arr & sounding) < min_onsets
    tonic[early] = 0
    minor[early] = False
    return tonic.astype(np.int64), minor
