"""Tempo and beat phase from onset times, by autocorrelation of a sparse onset train.

The onsets are binned on a fine grid (``bin_sec``, 10 ms by default in the wrapper) and
merged, so simultaneous notes become one weighted impulse. The autocorrelation of that
impulse train is computed from pairs of impulses closer than the longest lag, which costs
O(M * neighbours) rather than O(T * lags) for a dense envelope: cheap enough to run on a
sliding window every beat. The tempo is the peak of a harmonic-summation salience over
the smoothed autocorrelation, weighted by a log-normal prior, refined by parabolic
interpolation.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def merge_onsets(onset_sec, weight, bin_sec, bin_index, bin_weight):
    """Bin and merge onsets into a sparse weighted impulse train, sorted by time.

    Bin ``b`` holds the onsets with ``floor((t - t_first) / bin_sec + 0.5) == b``, where
    ``t_first`` is the earliest usable onset.

    Parameters
    ----------
    onset_sec : np.ndarray [shape=(N,), dtype=float64]
        Onset times in any order; NaN and infinite values are skipped.
    weight : np.ndarray [shape=(N,), dtype=float64]
        Weight of each onset (1.0 for a plain count); non-positive weights are skipped.
    bin_sec : float
        Bin width in seconds (> 0).
    bin_index : np.ndarray [shape=(N,), dtype=int64]
        Output: bin of each distinct impulse, strictly increasing in its first M entries.
    bin_weight : np.ndarray [shape=(N,), dtype=float64]
        Output: summed weight of the onsets in that bin.

    Returns
    -------
    int
        M, the number of distinct impulses written.
    """
    n = onset_sec.shape[0]
    first = math.inf
    last = -math.inf
    for i in range(n):
        t = onset_sec[i]
        if math.isfinite(t) and weight[i] > 0.0:
            if t < first:
                first = t
            if t > last:
                last = t
    if first > last:
        return 0
    span = (last - first) / bin_sec
    m = 0
    if span < 8.0 * n + 8192.0:
        # Dense histogram: O(N + span), no sort; the common case (a song, a live window).
        n_bin = int(math.floor(span + 0.5)) + 1
        dense = np.zeros(n_bin, dtype=np.float64)
        for i in range(n):
            t = onset_sec[i]
            w = weight[i]
            if math.isfinite(t) and w > 0.0:
                dense[int(math.floor((t - first) / bin_sec + 0.5))] += w
        for b in range(n_bin):
            if dense[b] > 0.0:
                bin_index[m] = b
                bin_weight[m] = dense[b]
                m += 1
        return m
    # Sparse onsets over a long span (huge gaps): sort instead.
    order = np.argsort(onset_sec, kind="mergesort")
    for r in range(n):
        i = order[r]
        t = onset_sec[i]
        w = weight[i]
        if not math.isfinite(t) or not (w > 0.0):
            continue
        b = np.int64(math.floor((t - first) / bin_sec + 0.5))
        if m > 0 and bin_index[m - 1] == b:
            bin_weight[m - 1] += w
        else:
            bin_index[m] = b
            bin_weight[m] = w
            m += 1
    return m


@njit(cache=True, nogil=True)
def pair_autocorrelation(bin_index, bin_weight, m, acf):
    """Autocorrelation of a sparse impulse train, from the pairs of impulses.

    ``acf[k] = sum over impulses i <= j with bin_j - bin_i == k of w_i * w_j``, for
    ``0 <= k < len(acf)``: the same as the dense autocorrelation of the binned train.

    Parameters
    ----------
    bin_index : np.ndarray [shape=(M,), dtype=int64]
        Strictly increasing bins (from ``merge_onsets``); only the first ``m`` are read.
    bin_weight : np.ndarray [shape=(M,), dtype=float64]
    m : int
    acf : np.ndarray [shape=(L,), dtype=float64]
        Output, zeroed here.
    """
    n_lag = acf.shape[0]
    for k in range(n_lag):
        acf[k] = 0.0
    for i in range(m):
        bi = bin_index[i]
        wi = bin_weight[i]
        for j in range(i, m):
            k = bin_index[j] - bi
            if k >= n_lag:
                break
            acf[k] += wi * bin_weight[j]


@njit(cache=True, nogil=True)
def smooth_lags(acf, sigma_bins, out):
    """Gaussian smoothing of an autocorrelation along the lag axis (tempo jitter tolerance).

    Parameters
    ----------
    acf : np.ndarray [shape=(L,), dtype=float64]
    sigma_bins : float
        Standard deviation in bins; 0 copies.
    out : np.ndarray [shape=(L,), dtype=float64]
    """
    n_lag = acf.shape[0]
    half = int(math.ceil(3.0 * sigma_bins))
    if half <= 0:
        for k in range(n_lag):
            out[k] = acf[k]
        return
    taps = np.empty(2 * half + 1, dtype=np.float64)
    for d in range(-half, half + 1):
        taps[d + half] = math.exp(-0.5 * (d / sigma_bins) ** 2)
    for k in range(n_lag):
        total = 0.0
        norm = 0.0
        for d in range(-half, half + 1):
            j = k + d
            if j < 1 or j >= n_lag:  # lag 0 (the energy) never leaks into the others
                continue
            total += taps[d + half] * acf[j]
            norm += taps[d + half]
        out[k] = total / norm if norm > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _interp(values, x):
    n = values.shape[0]
    if x < 0.0 or x > n - 1:
        return 0.0
    i = int(math.floor(x))
    if i >= n - 1:
        return values[n - 1]
    f = x - i
    return values[i] * (1.0 - f) + values[i + 1] * f


@njit(cache=True, nogil=True)
def tempo_salience(acf_smooth, min_lag, max_lag, harmonic_weight, prior_lag, prior_sigma_oct, salience):
    """Harmonic-summation salience of each beat lag, weighted by a log-normal prior.

    ``salience[k] = prior(k) * sum_h harmonic_weight[h] * acf_smooth(k * 2**(h - c))``
    for ``min_lag <= k <= max_lag`` (0 elsewhere), where ``c = len(harmonic_weight) // 2``:
    the weights apply to the lags k/2**c ... k ... k*2**c (sub-beats to bars), linearly
    interpolated, 0 beyond the autocorrelation.

    Parameters
    ----------
    acf_smooth : np.ndarray [shape=(L,), dtype=float64]
    min_lag, max_lag : int
        Range of beat lags in bins (inclusive).
    harmonic_weight : np.ndarray [shape=(H,), dtype=float64]
    prior_lag : float
        Centre of the log-normal prior, in bins (0 turns the prior off).
    prior_sigma_oct : float
        Its width in octaves.
    salience : np.ndarray [shape=(L,), dtype=float64]
        Output.
    """
    n_lag = acf_smooth.shape[0]
    centre = harmonic_weight.shape[0] // 2
    for k in range(n_lag):
        salience[k] = 0.0
    for k in range(max(min_lag, 1), min(max_lag, n_lag - 1) + 1):
        total = 0.0
        for h in range(harmonic_weight.shape[0]):
            total += harmonic_weight[h] * _interp(acf_smooth, k * 2.0 ** (h - centre))
        if prior_lag > 0.0:
            octaves = math.log2(k / prior_lag)
            total *= math.exp(-0.5 * (octaves / prior_sigma_oct) ** 2)
        salience[k] = total


@njit(cache=True, nogil=True)
def peak_lag(salience, min_lag, max_lag):
    """Find the lag of the highest salience in [min_lag, max_lag], refined by a parabola.

    Returns
    -------
    float
        The refined lag in bins, or NaN where every salience is <= 0.
    """
    n_lag = salience.shape[0]
    lo = max(min_lag, 1)
    hi = min(max_lag, n_lag - 1)
    best = -1
    best_value = 0.0
    for k in range(lo, hi + 1):
        if salience[k] > best_value:
            best_value = salience[k]
            best = k
    if best < 0:
        return math.nan
    if best <= 0 or best >= n_lag - 1:
        return float(best)
    a = salience[best - 1]
    b = salience[best]
    c = salience[best + 1]
    denom = a - 2.0 * b + c
    if denom >= 0.0:
        return float(best)
    shift = 0.5 * (a - c) / denom
    if shift > 0.5:
        shift = 0.5
    elif shift < -0.5:
        shift = -0.5
    return best + shift


@njit(
    "float64(float64[::1], float64[::1], float64, int64, int64, float64, float64[::1], float64, float64, int64)",
    cache=True,
    nogil=True,
)
def beat_lag(
    onset_sec, weight, bin_sec, min_lag, max_lag, sigma_bins, harmonic_weight, prior_lag, prior_sigma_oct, min_impulses
):
    """Estimate the beat lag in one call: merge, autocorrelate, smooth, score, pick.

    The realtime entry point (explicit signature, one dispatch): a live caller passes the
    onsets of its recent window every beat. Its scratch (O(N + lags)) is allocated here.

    Parameters
    ----------
    onset_sec : np.ndarray [shape=(N,), dtype=float64]
    weight : np.ndarray [shape=(N,) or (0,), dtype=float64]
        Weight of each onset; an empty array weighs every onset 1.
    bin_sec : float
    min_lag, max_lag : int
        Beat lags searched, in bins (inclusive).
    sigma_bins : float
        Lag smoothing (``smooth_lags``).
    harmonic_weight : np.ndarray [shape=(H,), dtype=float64]
        As in ``tempo_salience``.
    prior_lag, prior_sigma_oct : float
        As in ``tempo_salience``.
    min_impulses : int
        Fewer distinct impulses than this (or 2) give NaN.

    Returns
    -------
    float
        The beat lag in bins; NaN with too few distinct impulses or no periodicity in
        the lag range.
    """
    n = onset_sec.shape[0]
    if weight.shape[0] == n:
        w = weight
    else:
        w = np.ones(n, dtype=np.float64)
    bin_index = np.empty(n, dtype=np.int64)
    bin_weight = np.empty(n, dtype=np.float64)
    m = merge_onsets(onset_sec, w, bin_sec, bin_index, bin_weight)
    if m < max(min_impulses, 2):
        return math.nan
    centre = harmonic_weight.shape[0] // 2
    n_lag = int(max_lag * 2.0 ** (harmonic_weight.shape[0] - 1 - centre)) + 2
    acf = np.empty(n_lag, dtype=np.float64)
    acf_smooth = np.empty(n_lag, dtype=np.float64)
    salience = np.empty(n_lag, dtype=np.float64)
    pair_autocorrelation(bin_index, bin_weight, m, acf)
    smooth_lags(acf, sigma_bins, acf_smooth)
    tempo_salience(acf_smooth, min_lag, max_lag, harmonic_weight, prior_lag, prior_sigma_oct, salience)
    return peak_lag(salience, min_lag, max_lag)


@njit(cache=True, nogil=True)
def phase_histogram(onset_sec, weight, period_sec, hist):
    """Onset weight by position within the beat, on ``len(hist)`` circular bins.

    An onset at time t adds its weight to bin ``floor(frac(t / period_sec) * P + 0.5) % P``
    (P = len(hist)); NaN and infinite times and non-positive weights are skipped.

    Parameters
    ----------
    onset_sec, weight : np.ndarray [shape=(N,), dtype=float64]
    period_sec : float
        The beat period (> 0).
    hist : np.ndarray [shape=(P,), dtype=float64]
        Output, zeroed here.
    """
    n_phase = hist.shape[0]
    for p in range(n_phase):
        hist[p] = 0.0
    for i in range(onset_sec.shape[0]):
        t = onset_sec[i]
        w = weight[i]
        if not math.isfinite(t) or not (w > 0.0):
            continue
        x = t / period_sec
        x -= math.floor(x)
        p = int(math.floor(x * n_phase + 0.5))
        if p >= n_phase:
            p -= n_phase
        hist[p] += w


@njit(cache=True, nogil=True)
def circular_smooth(hist, sigma_bins, out):
    """Gaussian smoothing of a circular histogram (window clipped to one turn)."""
    n = hist.shape[0]
    half = min(int(math.ceil(3.0 * sigma_bins)), (n - 1) // 2)
    taps = np.empty(2 * half + 1, dtype=np.float64)
    for d in range(-half, half + 1):
        taps[d + half] = math.exp(-0.5 * (d / sigma_bins) ** 2) if sigma_bins > 0.0 else 1.0
    for p in range(n):
        total = 0.0
        for d in range(-half, half + 1):
            total += taps[d + half] * hist[(p + d) % n]
        out[p] = total


@njit(cache=True, nogil=True)
def bar_accent(onset_sec, weight, period_sec, first_beat_sec, tolerance_sec, accent):
    """Onset weight near each beat of the bar, for the downbeat.

    Beat k (k = 0, 1, ...) lies at ``first_beat_sec + k * period_sec``; an onset within
    ``tolerance_sec`` of its nearest beat k adds its weight to ``accent[k % B]``
    (B = len(accent)); onsets before ``first_beat_sec - tolerance_sec`` are skipped.

    Parameters
    ----------
    onset_sec, weight : np.ndarray [shape=(N,), dtype=float64]
    period_sec, first_beat_sec, tolerance_sec : float
    accent : np.ndarray [shape=(B,), dtype=float64]
        Output, zeroed here.
    """
    n_beat = accent.shape[0]
    for b in range(n_beat):
        accent[b] = 0.0
    for i in range(onset_sec.shape[0]):
        t = onset_sec[i]
        w = weight[i]
        if not math.isfinite(t) or not (w > 0.0):
            continue
        x = (t - first_beat_sec) / period_sec
        k = math.floor(x + 0.5)
        if k < 0.0:
            continue
        if abs(x - k) * period_sec <= tolerance_sec:
            accent[int(k % n_beat)] += w
