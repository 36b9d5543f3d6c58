"""Spectral measurements for the synth tests: Hann-windowed FFT, peaks with parabolic interpolation.

Every function takes mono audio, its sample rate and a window ``[start_sec, end_sec)``.
"""

from __future__ import annotations

import numpy as np


def spectrum(audio, sample_rate: int, start_sec: float, end_sec: float, *, pad: int = 4):
    """Magnitude spectrum of a Hann-windowed slice, zero-padded ``pad`` times (to a power of two).

    Returns
    -------
    freq_hz, magnitude : np.ndarray [shape=(K,), dtype=float64]
    """
    segment = np.asarray(audio[int(round(start_sec * sample_rate)) : int(round(end_sec * sample_rate))], np.float64)
    if len(segment) < 16:
        raise ValueError(f"window {start_sec}-{end_sec} s holds {len(segment)} samples; make it longer")
    n_fft = 1 << int(np.ceil(np.log2(len(segment) * pad)))
    magnitude = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n_fft))
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), magnitude


def spectral_peaks(audio, sample_rate: int, start_sec: float, end_sec: float, n: int, *, min_hz: float = 20.0):
    """The ``n`` strongest local maxima of the spectrum, strongest first.

    Each peak's frequency and height come from a parabola through the log magnitudes of
    its bin and the two beside it.

    Returns
    -------
    freq_hz, magnitude : np.ndarray [shape=(<=n,), dtype=float64]
    """
    freq, magnitude = spectrum(audio, sample_rate, start_sec, end_sec)
    log = np.log(magnitude + 1e-300)
    k = np.arange(1, len(magnitude) - 1)
    is_peak = (magnitude[k] > magnitude[k - 1]) & (magnitude[k] >= magnitude[k + 1]) & (freq[k] >= min_hz)
    k = k[is_peak]
    k = k[np.argsort(magnitude[k])[::-1][:n]]
    a, b, c = log[k - 1], log[k], log[k + 1]
    denominator = a - 2 * b + c
    offset = np.where(denominator < 0, 0.5 * (a - c) / np.where(denominator < 0, denominator, 1.0), 0.0)
    bin_hz = freq[1]
    return (k + offset) * bin_hz, np.exp(b - 0.25 * (a - c) * offset)


def dominant_frequencies(audio, sample_rate: int, start_sec: float, end_sec: float, n: int) -> np.ndarray:
    """Frequencies (Hz) of the ``n`` strongest spectral peaks in the window, strongest first."""
    return spectral_peaks(audio, sample_rate, start_sec, end_sec, n)[0]


def fundamental(audio, sample_rate: int, start_sec: float, end_sec: float, *, within_db: float = 12.0) -> float:
    """The lowest of the strong peaks (within ``within_db`` of the strongest): the pitch of one tone.

    The strongest peak alone is not enough: a 12.5 % pulse's second harmonic is nearly
    as strong as its first, and the high-pass takes a few dB off low fundamentals.
    """
    freq, magnitude = spectral_peaks(audio, sample_rate, start_sec, end_sec, 12)
    strong = magnitude >= magnitude[0] * 10 ** (-within_db / 20)
    return float(freq[strong].min())


def harmonic_amplitudes(audio, sample_rate: int, start_sec: float, end_sec: float, f0_hz: float, n: int):
    """Peak magnitude near each harmonic ``k * f0_hz`` (k = 1..n), relative to the first.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float64]
        1.0 first.
    """
    freq, magnitude = spectrum(audio, sample_rate, start_sec, end_sec)
    out = np.empty(n)
    for k in range(1, n + 1):
        near = np.abs(freq - k * f0_hz) <= 0.03 * f0_hz
        out[k - 1] = magnitude[near].max()
    return out / out[0]


def spectral_centroid(audio, sample_rate: int, start_sec: float, end_sec: float) -> float:
    """Power-weighted mean frequency (Hz)."""
    freq, magnitude = spectrum(audio, sample_rate, start_sec, end_sec)
    power = magnitude**2
    return float((freq * power).sum() / power.sum())


def non_harmonic_fraction(
    audio, sample_rate: int, start_sec: float, end_sec: float, f0_hz: float, *, exclude_hz: float = 30.0
) -> float:
    """The share of the power further than ``exclude_hz`` from every harmonic of ``f0_hz`` (and from DC).

    For a periodic tone this is what aliasing put between the harmonics.
    """
    freq, magnitude = spectrum(audio, sample_rate, start_sec, end_sec)
    power = magnitude**2
    distance = np.abs(freq - np.round(freq / f0_hz) * f0_hz)
    outside = distance > exclude_hz
    return float(power[outside].sum() / power.sum())


def decay_time(audio, sample_rate: int, *, drop_db: float = 40.0, frame_sec: float = 0.005) -> float:
    """Seconds from the loudest frame (RMS over ``frame_sec``) to the last frame within ``drop_db`` of it."""
    frame = max(1, int(frame_sec * sample_rate))
    n = len(audio) // frame
    rms = np.sqrt(np.mean(np.asarray(audio[: n * frame], np.float64).reshape(n, frame) ** 2, axis=1))
    peak = int(np.argmax(rms))
    loud = np.flatnonzero(rms >= rms[peak] * 10 ** (-drop_db / 20))
    return (loud.max() - peak) * frame / sample_rate
