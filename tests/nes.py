"""Two NES references nobody here wrote, for the chip-file tests and measurements.

- ``NsfMachine``: py65's 6502 simulator running an NSF's INIT and PLAY as a player does,
  with the NSF bank registers ($5FF8-$5FFF) mapping 4 KB banks, recording every APU write.
- ``gme_render``: Game_Music_Emu (Debian's libgme0) through ctypes: an NSF rendered by its
  emulated 2A03, with chosen voices muted (``gme_mute_voices``).

And the measurements made on its audio: a note's pitch by the autocorrelation (YIN
difference) period, interpolated, and a note's onset by the rise of its short-time energy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

try:
    from py65.devices.mpu6502 import MPU
    from py65.memory import ObservableMemory
except ImportError:  # the test extra brings py65; tests that need it skip without it
    MPU = ObservableMemory = None

GME_PATHS = ("/lib/x86_64-linux-gnu/libgme.so.0", "libgme.so.0")
#: Voice indices of gme's NSF emulator: Square 1, Square 2, Triangle, Noise, DMC.
GME_VOICES = 5
NSF_BANK_SIZE = 0x1000
_TRAMPOLINE = 0x0300


def load_gme():
    """The libgme library, or None where it is not installed."""
    for path in (*GME_PATHS, ctypes.util.find_library("gme")):
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.gme_open_data.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        lib.gme_open_data.restype = ctypes.c_char_p
        lib.gme_start_track.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.gme_start_track.restype = ctypes.c_char_p
        lib.gme_play.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_short)]
        lib.gme_play.restype = ctypes.c_char_p
        lib.gme_mute_voices.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.gme_ignore_silence.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.gme_voice_count.argtypes = [ctypes.c_void_p]
        lib.gme_voice_count.restype = ctypes.c_int
        lib.gme_voice_name.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.gme_voice_name.restype = ctypes.c_char_p
        lib.gme_delete.argtypes = [ctypes.c_void_p]
        return lib
    return None


#: Game_Music_Emu's NES clock as its sample buffer takes it (a whole number of Hz), and the bits
#: of the fixed-point ratio that turns clocks into samples (Blip_Buffer's BLIP_BUFFER_ACCURACY).
GME_CLOCK_HZ = 1789772
GME_RATIO_BITS = 16


def gme_rate(sample_rate: int) -> float:
    """Samples Game_Music_Emu makes per second of emulated time when asked for ``sample_rate``.

    Its buffer converts clocks to samples with a 16-bit fixed-point ratio, rounded: asked for
    44,100 Hz it makes 44,105.3 samples per emulated second (119 ppm more, 0.43 frame a
    minute), asked for 22,050 Hz 22,039.0 (500 ppm fewer). Timing read from its audio uses
    this rate.
    """
    scale = 1 << GME_RATIO_BITS
    return GME_CLOCK_HZ * np.floor(sample_rate / GME_CLOCK_HZ * scale + 0.5) / scale


def gme_render(
    data: bytes, seconds: float, *, sample_rate: int = 44100, solo: int | None = None
) -> tuple[np.ndarray, float]:
    """Render an NSF with Game_Music_Emu: mono float64 audio (the left channel), about -1 to 1.

    ``solo`` mutes every voice but that one (0-3: pulse1, pulse2, triangle, noise). Returns
    the audio, ``seconds`` of emulated time long, and its samples per emulated second
    (``gme_rate``).
    """
    lib = load_gme()
    if lib is None:
        raise RuntimeError("libgme is not installed (Debian: apt-get install libgme0)")
    emu = ctypes.c_void_p()
    buffer = ctypes.create_string_buffer(bytes(data), len(data))
    error = lib.gme_open_data(buffer, len(data), ctypes.byref(emu), sample_rate)
    if error:
        raise RuntimeError(error.decode())
    try:
        names = [lib.gme_voice_name(emu, i).decode() for i in range(lib.gme_voice_count(emu))]
        assert names[:4] == ["Square 1", "Square 2", "Triangle", "Noise"], names
        lib.gme_ignore_silence(emu, 1)
        if solo is not None:
            lib.gme_mute_voices(emu, ((1 << GME_VOICES) - 1) & ~(1 << solo))
        error = lib.gme_start_track(emu, 0)
        if error:
            raise RuntimeError(error.decode())
        rate = gme_rate(sample_rate)
        n = int(round(seconds * rate))
        out = (ctypes.c_short * (2 * n))()
        error = lib.gme_play(emu, 2 * n, out)
        if error:
            raise RuntimeError(error.decode())
        return np.frombuffer(out, dtype=np.int16)[0::2].astype(np.float64) / 32768.0, rate
    finally:
        lib.gme_delete(emu)


class NsfMachine:
    """An NSF player on py65: INIT once, then PLAY once per frame, APU writes recorded per call."""

    def __init__(self, data: bytes) -> None:
        if MPU is None:
            raise RuntimeError("py65 is not installed (pip install py65)")
        assert data[:5] == b"NESM\x1a", "not an NSF"
        self.load, self.init, self.play = (int.from_bytes(data[i : i + 2], "little") for i in (8, 10, 12))
        self.initial_banks = list(data[0x70:0x78])
        assert any(self.initial_banks), "this runner maps banked NSFs only"
        image = data[0x80:]
        padding = self.load & 0x0FFF
        image = bytes(padding) + image
        self.banks = [
            image[i : i + NSF_BANK_SIZE].ljust(NSF_BANK_SIZE, b"\0") for i in range(0, len(image), NSF_BANK_SIZE)
        ]
        self.memory = ObservableMemory()
        self.memory.subscribe_to_write(range(0x5FF8, 0x6000), self._switch)
        self.memory.subscribe_to_write(range(0x4000, 0x4018), self._apu)
        self.mpu = MPU(memory=self.memory)
        self.writes: list[tuple[int, int]] = []
        self.bank_switches = 0
        for slot, bank in enumerate(self.initial_banks):
            self._map(slot, bank)

    def _map(self, slot: int, bank: int) -> None:
        content = self.banks[bank] if bank < len(self.banks) else bytes(NSF_BANK_SIZE)
        start = 0x8000 + slot * NSF_BANK_SIZE
        self.memory._subject[start : start + NSF_BANK_SIZE] = list(content)

    def _switch(self, address: int, value: int) -> None:
        self.bank_switches += 1
        self._map(address - 0x5FF8, value)

    def _apu(self, address: int, value: int) -> None:
        self.writes.append((address - 0x4000, value))

    def call(self, address: int, a: int = 0, x: int = 0, max_steps: int = 100_000) -> list[tuple[int, int]]:
        """JSR to ``address`` with A and X set; the APU writes it made."""
        self.writes = []
        self.memory._subject[_TRAMPOLINE : _TRAMPOLINE + 3] = [0x20, address & 0xFF, address >> 8]
        self.mpu.pc, self.mpu.a, self.mpu.x, self.mpu.sp = _TRAMPOLINE, a, x, 0xFD
        for _ in range(max_steps):
            if self.mpu.pc == _TRAMPOLINE + 3:
                return self.writes
            self.mpu.step()
        raise RuntimeError(f"the routine at ${address:04X} ran over {max_steps} instructions")

    def run(self, n_frames: int) -> list[list[tuple[int, int]]]:
        """INIT (song 0, NTSC) as frame 0, then ``n_frames - 1`` PLAY calls: the writes of each."""
        return [self.call(self.init, 0, 0)] + [self.call(self.play) for _ in range(n_frames - 1)]


def yin_period(segment: np.ndarray, expected: float, *, spread: float = 1.4, min_lag: float = 200.0) -> float:
    """The period (samples, fractional) of a periodic segment, searched within ``expected``/spread-x spread.

    The YIN difference ``d(tau) = mean((x[t] - x[t + tau])**2)``, minimised over integer lags in
    the range, refined by a parabola through the minimum and its neighbours. A short period
    is measured over as many cycles as reach ``min_lag`` samples (the lag's rounding then
    counts that many times less), the search narrowed so as not to reach the next cycle.
    """
    x = np.asarray(segment, np.float64)
    cycles = max(1, int(min_lag // expected))
    if cycles > 1:
        return yin_period(x, expected * cycles, spread=1.0 + 0.4 / cycles, min_lag=0.0) / cycles
    low, high = max(2, int(expected / spread)), int(np.ceil(expected * spread)) + 1
    if len(x) < 2 * high + 2:
        raise ValueError(f"segment of {len(x)} samples is too short for periods up to {high}")
    n = len(x) - high - 1
    taus = np.arange(low - 1, high + 2)
    d = np.array([np.mean((x[:n] - x[tau : tau + n]) ** 2) for tau in taus])
    i = int(np.argmin(d[1:-1])) + 1
    a, b, c = d[i - 1], d[i], d[i + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) > 0 else 0.0
    return float(taus[i] + shift)


def onset_time(
    audio: np.ndarray, sample_rate: int, around_sec: float, *, search_sec: float, window: int | None = None,
    hop_sec: float = 0.0005,
) -> float:  # fmt: skip
    """The time (s) within ``around_sec +- search_sec`` where the short-time energy rises most steeply.

    The energy is the RMS over ``window`` samples (one period of the note keeps it flat
    over a steady note; 4 ms by default), sliding by ``hop_sec``. Its rise across a level
    step is a ramp one window long: the centre of the steepest ramp (where the rise stays
    over half its peak) is the onset.
    """
    hop = max(1, int(round(hop_sec * sample_rate)))
    win = max(int(window or 0), int(round(0.004 * sample_rate)))
    start = max(0, int(round((around_sec - search_sec) * sample_rate)) - win)
    stop = min(len(audio), int(round((around_sec + search_sec) * sample_rate)) + win)
    x = np.asarray(audio[start:stop], np.float64)
    if len(x) < 2 * win:
        return float("nan")
    power = np.concatenate(([0.0], np.cumsum(x**2)))
    positions = np.arange(0, len(x) - win, hop)
    energy = np.sqrt((power[positions + win] - power[positions]) / win)
    rise = np.diff(energy)
    k = int(np.argmax(rise))
    low, high = k, k
    while low > 0 and rise[low - 1] > 0.5 * rise[k]:
        low -= 1
    while high + 1 < len(rise) and rise[high + 1] > 0.5 * rise[k]:
        high += 1
    centre = positions[low] + (positions[high + 1] - positions[low]) / 2
    return (start + centre + win) / sample_rate


def _shifted(x: np.ndarray, start: int, length: int, lag: float) -> np.ndarray:
    """``x[start + lag : start + lag + length]`` for a fractional ``lag``, by linear interpolation."""
    whole = int(np.floor(lag))
    part = lag - whole
    a = x[start + whole : start + whole + length]
    b = x[start + whole + 1 : start + whole + 1 + length]
    return (1.0 - part) * a + part * b


def periodic_from(
    audio: np.ndarray, sample_rate: int, around_sec: float, period: float, *, search_sec: float, hop_sec: float = 0.0005
) -> float:
    """The first time (s) within ``around_sec +- search_sec`` from which the audio repeats with ``period`` samples.

    For a note that changes the pitch at a steady level (where the energy does not rise):
    ``mean((x[i] - x[i + period])**2) / mean(x[i]**2)`` over one period from ``t`` falls
    under 0.05 once ``t`` is past the onset (before it, the window straddles the old note).
    """
    lag = int(round(period))
    hop = max(1, int(round(hop_sec * sample_rate)))
    start = max(0, int(round((around_sec - search_sec) * sample_rate)))
    stop = min(len(audio) - 2 * lag - 2, int(round((around_sec + search_sec) * sample_rate)))
    x = np.asarray(audio, np.float64)
    for t in range(start, stop, hop):
        now = x[t : t + lag]
        power = np.mean(now**2)
        if power > 0 and np.mean((now - _shifted(x, t, lag, period)) ** 2) / power < 0.05:
            return t / sample_rate
    return float("nan")


def breaks_from(
    audio: np.ndarray, sample_rate: int, around_sec: float, period: float, *, search_sec: float, hop_sec: float = 0.0005
) -> float:
    """The first time (s) near ``around_sec`` at which the audio stops repeating ``period`` samples back.

    For a note whose period is a multiple of the one before (an octave down), where the old
    note already repeats with the new period. The break must hold over a whole old period.
    """
    lag = int(round(period))
    hop = max(1, int(round(hop_sec * sample_rate)))
    start = max(lag + 2, int(round((around_sec - search_sec) * sample_rate)))
    stop = min(len(audio) - hop, int(round((around_sec + search_sec) * sample_rate)))
    x = np.asarray(audio, np.float64)
    stop = min(stop, len(audio) - lag - 1)
    for t in range(start, stop, hop):
        before = x[t - lag : t]
        power = np.mean(before**2)
        if power > 0 and np.mean((x[t : t + hop] - _shifted(x, t, hop, -period)) ** 2) / power > 0.05:
            # It must last: a level step inside the old note (its envelope) breaks the repeat for an instant only.
            if np.mean((x[t : t + lag] - _shifted(x, t, lag, -period)) ** 2) / power > 0.2:
                return t / sample_rate
    return float("nan")


def resumes_at(audio: np.ndarray, sample_rate: int, around_sec: float, *, search_sec: float) -> float:
    """The time (s) near ``around_sec`` where a stepped wave moves again after a pause (a triangle's repeat).

    The largest sample-to-sample step within each millisecond stays up while the triangle's
    stairs run and falls to almost nothing while it is stopped (frozen, or silent): the
    onset is where it first climbs back over half its level in the note that follows.
    """
    x = np.asarray(audio, np.float64)
    width = max(1, int(round(0.001 * sample_rate)))
    start = max(0, int(round((around_sec - search_sec) * sample_rate)))
    stop = min(len(x) - 1, int(round((around_sec + search_sec) * sample_rate)))
    step = np.abs(np.diff(x[start : stop + 1]))
    if len(step) < 4 * width:
        return float("nan")
    moving = np.array([step[i : i + width].max() for i in range(len(step) - width)])
    centre = int(round(around_sec * sample_rate)) - start
    quiet = int(np.argmin(moving[: max(centre + width, 1)]))
    after = moving[centre + width : centre + 20 * width]
    level = np.median(after) if len(after) else moving.max()
    rising = np.flatnonzero(moving[quiet:] > 0.5 * level)
    if not len(rising):
        return float("nan")
    return (start + quiet + rising[0] + width) / sample_rate


def note_onset(
    audio: np.ndarray, sample_rate: int, around_sec: float, *, search_sec: float, old_period: float | None,
    new_period: float | None, paused: bool = False,
) -> float:  # fmt: skip
    """A note's onset (s) near ``around_sec``, by what changes there.

    ``old_period``/``new_period`` are the periods (samples) of the note sounding just before
    and of this one (None: silence before, or an unpitched voice). A note after silence or
    on the same period (a new attack) starts where the energy rises; a new period where
    the audio starts repeating with it, or, where the old note already did (the new period
    a multiple of the old), where it stops repeating the old one. ``paused``: the voice
    stopped for a moment before the note (the triangle's repeat): where it moves again.
    """
    pad = int(round(search_sec * sample_rate)) + 1
    x = np.concatenate((np.zeros(pad), np.asarray(audio, np.float64)))  # silence before the start
    at = around_sec + pad / sample_rate
    if paused:
        t = resumes_at(x, sample_rate, at, search_sec=search_sec)
    elif old_period is None or new_period is None or abs(new_period / old_period - 1) < 1e-3:
        # Whole periods over at least 8 ms keep the energy of a steady note flat. Noise: the energy
        # of its sample-to-sample steps, over 8 ms, where a bright hit stands out of a dull tail.
        if new_period:
            window = int(round(new_period * max(1, np.ceil(0.008 * sample_rate / new_period))))
            t = onset_time(x, sample_rate, at, search_sec=search_sec, window=window)
        else:
            steps = np.concatenate(([0.0], np.diff(x)))
            t = onset_time(steps, sample_rate, at, search_sec=search_sec, window=int(round(0.008 * sample_rate)))
    else:
        ratio = new_period / old_period
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.02:
            t = breaks_from(x, sample_rate, at, old_period, search_sec=search_sec)
        else:
            t = periodic_from(x, sample_rate, at, new_period, search_sec=search_sec)
    return t - pad / sample_rate


def gme_available() -> bool:
    return load_gme() is not None and os.environ.get("CHIPTUNER_NO_GME") is None
