"""The chip synth: two band-limited pulses, a stepped triangle, LFSR noise and the NES mixer.

Everything the synth remembers lives in one float64 array ``state`` of shape
(``STATE_ROWS``, ``N_FIELDS``): rows ``PULSE1``, ``PULSE2``, ``TRIANGLE``, ``NOISE`` are the
voices and row ``MIXER`` the output filter. Integer fields (pitch, duty index, the LFSR
register, the noise mode) are stored as exact float64 integers. A caller on another
thread changes notes by calling ``note_on`` / ``note_off`` / ``set_duty`` on the array
(they release the GIL like ``render_block``); ``render_block`` reads the fields it needs
once per block, so a change lands on the next block. Every field has one writer: the note
calls write the note fields (gate, pitch, frequency, volume, duty, the noise settings and
its note-on counter), ``render_block`` the running ones (level, phase, LFSR, envelope clock, hits
seen, the filter), so a note call racing a block on another thread is never overwritten.

Per voice (columns):

- ``V_GATE``: 1.0 while the key is held, 0.0 after its release.
- ``V_PITCH``: the MIDI key of the last note-on (-1 before any); the drum key for noise.
- ``V_FREQ_HZ``: pulses and triangle: the frequency of the chip's timer period for the key
  (``_kernels.chip_model.timer_period``: the period nearest the equal-tempered pitch, folded by
  octaves into what the chip plays, then ``CPU_HZ / (16 (t + 1))``, 32 for the triangle);
  noise: the LFSR clock rate (``NES_CPU_HZ / NOISE_PERIODS[k]``).
- ``V_PHASE``: pulses and triangle: position in the cycle, [0, 1); noise: elapsed part of
  the current LFSR clock period, [0, 1).
- ``V_VOLUME``: the 4-bit level the note strikes at, 1-15, from the note-on velocity (the
  triangle, which has no volume on the chip: always 15).
- ``V_LEVEL``: the level sounding now; it ramps toward the envelope's level (times ``V_GATE``;
  the noise's regardless of the gate) by ``15 / (RAMP_SEC * sample_rate)`` per sample, so
  starts and ends do not click. The envelope is the chip model's, frame by frame from the
  note's own start (``_kernels.chip_model``: ``pulse_level`` for the pulses, ``drum_level`` for the
  noise, a constant 15 for the triangle), so note starts stay sample-accurate.
- ``V_DUTY``: pulse duty index into ``DUTY_CYCLES`` (12.5, 25, 50, 75 %).
- ``V_LFSR``: noise: the 15-bit shift register, 1-32767.
- ``V_SHORT_MODE``: noise: 1.0 for the short (93-step, metallic) sequence, 0.0 for the long one.
- ``V_DECAY_SEC``: noise: the time to fall by 60 dB after a hit.
- ``V_ENV_FRAMES``: frames (at ``FRAME_RATE_HZ``) since the note's onset, the envelope's clock.
- ``V_HITS``: note-ons so far (written by ``note_on``); ``V_HITS_SEEN``: the count the
  renderer has acted on. A block that finds them different restarts the envelope.

Drums are one-shot: a note-off on the noise voice clears its gate and nothing else (drum
notes in MIDI files are often a tick long); the hit fades with its decay. A drum key's
sound comes from a drum table (float64 (128, ``N_DRUM_FIELDS``)) the caller passes to
``note_on``: the clock rate, the mode, the decay time and a gain on the level. A note-on on
a sounding pulse restarts its envelope (the chip model strikes every note); on the
triangle it only changes the pitch.

The sample path, per sample: each voice's level ramp; pulses with a BLEP residual at both
edges (a 4-sample polynomial: the integrated cubic B-spline, ``blep_tail``); the triangle
as the NES 32-step staircase with the same residual at each stair (a smooth triangle
above ``sample_rate / 32``, where stairs come closer than a sample); noise as the LFSR
output averaged over the sample (a box filter against the aliasing of clock rates above
the sample rate); the NES non-linear mixer on the 0-15 levels; the console's output
filters, first-order each: high-passes at ``HIGHPASS_HZ`` and ``HIGHPASS2_HZ``, a low-pass at
``LOWPASS_HZ``; a gain of ``OUTPUT_GAIN``. All recurrences are per sample and the per-block constants
depend only on the state and the sample rate, so rendering in one call or block by block
gives the same samples, bit for bit.
"""

import math

import numpy as np
from numba import njit, types

from chiptuner._kernels.chip_model import CPU_HZ, FRAME_RATE_HZ, drum_level, pulse_level, timer_hz, timer_period
from chiptuner._kernels.chip_model import NOISE_PERIODS as _NOISE_PERIODS

N_VOICES = 4
PULSE1 = 0
PULSE2 = 1
TRIANGLE = 2
NOISE = 3
#: Row of the mixer's filter state.
MIXER = 4
STATE_ROWS = 5

# Voice fields (columns of rows 0-3).
V_GATE = 0
V_PITCH = 1
V_FREQ_HZ = 2
V_PHASE = 3
V_VOLUME = 4
V_LEVEL = 5
V_DUTY = 6
V_LFSR = 7
V_SHORT_MODE = 8
V_DECAY_SEC = 9
V_ENV_FRAMES = 10
V_HITS = 11
V_HITS_SEEN = 12
N_FIELDS = 13

# Mixer fields (columns of row ``MIXER``): the mix's previous value, each filter's previous output.
M_X_PREV = 0
M_Y_PREV = 1
M_HP2_Y = 2
M_LP_Y = 3

# Drum table columns: LFSR clock rate (Hz), short mode (0/1), decay time to -60 dB (s), level gain.
D_RATE_HZ = 0
D_SHORT_MODE = 1
D_DECAY_SEC = 2
D_GAIN = 3
N_DRUM_FIELDS = 4

#: ``event_pitch`` of a note-off.
NOTE_OFF = -1
#: ``event_pitch`` of an event that changes only the duty.
NO_NOTE = -2
#: ``event_duty`` that leaves the duty as it is.
DUTY_UNCHANGED = -1

#: Pulse duty cycles by duty index (CC 1 value // 32).
DUTY_CYCLES = (0.125, 0.25, 0.5, 0.75)
#: Duty index of pulse1 and pulse2 after ``init_state``: 50 % and 25 %, as ``chip_midi.DUTY_CC``.
DEFAULT_DUTY = (2, 1)
#: The NES (NTSC) CPU clock; the noise timer periods below are in its cycles.
NES_CPU_HZ = CPU_HZ
NOISE_PERIODS = tuple(_NOISE_PERIODS.tolist())
#: Length of a full-scale (0 to 15) attack or release ramp.
RAMP_SEC = 0.002
#: The console's output filters (nesdev wiki, "APU Mixer"): high-passes at 90 and 440 Hz, a 14 kHz low-pass.
HIGHPASS_HZ = 90.0
HIGHPASS2_HZ = 440.0
LOWPASS_HZ = 14000.0
#: The triangle's level while it sounds: the chip has no volume for it.
TRIANGLE_LEVEL = 15
#: Gain after the mixer and high-pass (whose output swings within about +-0.3 for the loudest mix):
#: four voices at full velocity peak near 0.8, at velocity 100 near 0.7 (write_wav clips beyond 1).
OUTPUT_GAIN = 2.0
#: The noise voice's shift register at reset (the NES powers up with 1).
LFSR_RESET = 1

_STATE = types.Array(types.float64, 2, "C")
_OUT = types.Array(types.float32, 1, "C")
_DRUMS = types.Array(types.float64, 2, "C", readonly=True)
_RENDER_BLOCK_SIG = types.void(_STATE, _OUT, types.float64)
_NOTE_ON_SIG = types.void(_STATE, types.int64, types.int64, types.int64, _DRUMS)
_NOTE_OFF_SIG = types.void(_STATE, types.int64)
_SET_DUTY_SIG = types.void(_STATE, types.int64, types.int64)
_INIT_SIG = types.void(_STATE)


@njit(cache=True, nogil=True)
def velocity_volume(velocity):
    """The 4-bit level (1-15) of a MIDI velocity 1-127; 0 for velocity 0 or less."""
    if velocity <= 0:
        return 0
    return min(15, max(1, (velocity * 15 + 63) // 127))


@njit(cache=True, nogil=True)
def pitch_hz(voice, pitch):
    """The frequency a pitched voice (0, 1 pulse; 2 triangle) plays for a MIDI key: its timer period's."""
    period, _ = timer_period(voice, pitch)
    return timer_hz(voice, period)


@njit(cache=True, nogil=True)
def blep_tail(u):
    """Size of the BLEP residual ``u`` samples (0-2) from a unit step: 1/2 at the step, 0 from 2 on.

    The residual is the integrated cubic B-spline minus the ideal step: before a rising
    step the sample is raised by ``blep_tail(samples until it)``, after it lowered by
    ``blep_tail(samples since it)``. Four samples per step (two each side); the B-spline's
    response is sinc**4, so the images that would alias fall much faster than with the
    two-sample (linear) PolyBLEP.
    """
    if u >= 2.0:
        return 0.0
    if u > 1.0:
        v = 2.0 - u
        return v * v * v * v / 24.0
    u2 = u * u
    return 1.0 / 24.0 + (2.75 - 4.0 * u + 2.0 * u2 * u - 0.75 * u2 * u2) / 6.0


@njit(cache=True, nogil=True)
def blep(since, dt):
    """Residual of a periodic unit rising step at phase 0, at a sample ``since`` (phase, [0, 1)) past it.

    ``dt`` is the phase increment per sample, under 1/2: the step's instance behind and the
    one ahead are both within reach when the period is under four samples.
    """
    r = 0.0
    behind = since / dt
    if behind < 2.0:
        r -= blep_tail(behind)
    ahead = (1.0 - since) / dt
    if ahead < 2.0:
        r += blep_tail(ahead)
    return r


@njit(cache=True, nogil=True)
def pulse_sample(phase, dt, duty):
    """Band-limited unipolar pulse, about 0-1: high for ``phase < duty``, a BLEP residual at both edges."""
    if dt >= 0.5:
        return duty  # at or over Nyquist: only the mean (which the high-pass removes)
    value = 1.0 if phase < duty else 0.0
    fall = phase - duty
    if fall < 0.0:
        fall += 1.0
    return value + blep(phase, dt) - blep(fall, dt)


@njit(cache=True, nogil=True)
def triangle_stair(k):
    """The NES triangle's 32-step sequence: 15, 14, ..., 0, 0, 1, ..., 15 for k = 0-31 (mod 32)."""
    k &= 31
    return 15 - k if k < 16 else k - 16


@njit(cache=True, nogil=True)
def triangle_sample(phase, dt):
    """The NES triangle, 0-1 (1 at phase 0, 0 at phase 1/2), band-limited.

    A staircase of 32 stairs with a BLEP residual at each stair edge within two samples,
    while stairs are at least a sample apart (``32 dt < 1``); above (over ``sample_rate / 32``),
    a smooth triangle of the same shape, whose harmonics fall fast enough by themselves.
    """
    stair_dt = 32.0 * dt
    if stair_dt >= 1.0:
        return abs(2.0 * phase - 1.0)
    x = 32.0 * phase
    k = min(int(x), 31)
    q = x - k
    value = float(triangle_stair(k))
    j = 0
    while True:  # edges behind: the start of stair k - j, (q + j) stairs ago
        behind = (q + j) / stair_dt
        if behind >= 2.0:
            break
        value -= (triangle_stair(k - j) - triangle_stair(k - j - 1)) * blep_tail(behind)
        j += 1
    j = 0
    while True:  # edges ahead: the start of stair k + 1 + j
        ahead = (1.0 - q + j) / stair_dt
        if ahead >= 2.0:
            break
        value += (triangle_stair(k + 1 + j) - triangle_stair(k + j)) * blep_tail(ahead)
        j += 1
    return value / 15.0


@njit(cache=True, nogil=True)
def lfsr_next(register, short_mode):
    """One clock of the NES noise LFSR: feedback = bit 0 xor bit 1 (long) or bit 6 (short), into bit 14."""
    tap = 6 if short_mode else 1
    feedback = (register ^ (register >> tap)) & 1
    return (register >> 1) | (feedback << 14)


@njit(cache=True, nogil=True)
def nes_mix(pulse_sum, triangle, noise):
    """The NES non-linear mixer on 0-15 levels (pulse_sum is pulse1 + pulse2, 0-30); about 0-0.63.

    ``95.88 / (8128 / p + 100) + 159.79 / (1 / (t / 8227 + n / 12241) + 100)``, written
    without the divisions by zero at silence.
    """
    pulse_out = 95.88 * pulse_sum / (8128.0 + 100.0 * pulse_sum)
    y = triangle / 8227.0 + noise / 12241.0
    return pulse_out + 159.79 * y / (1.0 + 100.0 * y)


@njit(cache=True, nogil=True)
def _ramp(level, target, step):
    if level < target:
        return min(level + step, target)
    if level > target:
        return max(level - step, target)
    return level


@njit(cache=True, nogil=True)
def _restart(state, voice):
    """The envelope clock of ``voice`` after any note-on since the last block: 0 at a new one."""
    hits = state[voice, V_HITS]
    if hits != state[voice, V_HITS_SEEN]:
        state[voice, V_HITS_SEEN] = hits
        return 0.0
    return state[voice, V_ENV_FRAMES]


@njit(cache=True, nogil=True)
def _render(state, out, start, stop, sample_rate):
    """Render ``out[start:stop]`` and advance ``state``; no allocation."""
    if stop <= start:
        return
    inv_sr = 1.0 / sample_rate
    ramp = 15.0 / (RAMP_SEC * sample_rate)
    frames_per_sample = FRAME_RATE_HZ * inv_sr
    hp = 1.0 / (1.0 + 2.0 * math.pi * HIGHPASS_HZ * inv_sr)
    hp2 = 1.0 / (1.0 + 2.0 * math.pi * HIGHPASS2_HZ * inv_sr)
    lp = 1.0 - 1.0 / (1.0 + 2.0 * math.pi * LOWPASS_HZ * inv_sr)

    gate1 = state[PULSE1, V_GATE]
    peak1 = int(state[PULSE1, V_VOLUME])
    env1 = _restart(state, PULSE1)
    level1 = state[PULSE1, V_LEVEL]
    phase1 = state[PULSE1, V_PHASE]
    dt1 = state[PULSE1, V_FREQ_HZ] * inv_sr
    duty1 = DUTY_CYCLES[min(max(int(state[PULSE1, V_DUTY]), 0), 3)]

    gate2 = state[PULSE2, V_GATE]
    peak2 = int(state[PULSE2, V_VOLUME])
    env2 = _restart(state, PULSE2)
    level2 = state[PULSE2, V_LEVEL]
    phase2 = state[PULSE2, V_PHASE]
    dt2 = state[PULSE2, V_FREQ_HZ] * inv_sr
    duty2 = DUTY_CYCLES[min(max(int(state[PULSE2, V_DUTY]), 0), 3)]

    target3 = state[TRIANGLE, V_VOLUME] * state[TRIANGLE, V_GATE]  # no envelope: on or off
    _restart(state, TRIANGLE)
    level3 = state[TRIANGLE, V_LEVEL]
    phase3 = state[TRIANGLE, V_PHASE]
    dt3 = state[TRIANGLE, V_FREQ_HZ] * inv_sr

    peak4 = int(state[NOISE, V_VOLUME])
    env4 = _restart(state, NOISE)
    level4 = state[NOISE, V_LEVEL]
    position4 = state[NOISE, V_PHASE]
    clocks4 = state[NOISE, V_FREQ_HZ] * inv_sr  # LFSR clocks per sample
    register = np.int64(state[NOISE, V_LFSR])
    short_mode = state[NOISE, V_SHORT_MODE] != 0.0
    decay_sec = state[NOISE, V_DECAY_SEC]
    frame4 = -1  # the envelope frame whose level target4 holds
    target4 = 0.0

    x_prev = state[MIXER, M_X_PREV]
    y_prev = state[MIXER, M_Y_PREV]
    y2_prev = state[MIXER, M_HP2_Y]
    y3_prev = state[MIXER, M_LP_Y]

    for i in range(start, stop):
        pulse_sum = 0.0
        target1 = 0.0
        if peak1 > 0:  # the clock runs once there is a note, so a reset synth stays as new
            target1 = gate1 * pulse_level(peak1, int(env1))
            env1 += frames_per_sample
        level1 = _ramp(level1, target1, ramp)
        if level1 > 0.0:
            pulse_sum += level1 * pulse_sample(phase1, dt1, duty1)
            phase1 += dt1
            if phase1 >= 1.0:
                phase1 -= math.floor(phase1)
        target2 = 0.0
        if peak2 > 0:
            target2 = gate2 * pulse_level(peak2, int(env2))
            env2 += frames_per_sample
        level2 = _ramp(level2, target2, ramp)
        if level2 > 0.0:
            pulse_sum += level2 * pulse_sample(phase2, dt2, duty2)
            phase2 += dt2
            if phase2 >= 1.0:
                phase2 -= math.floor(phase2)

        triangle = 0.0
        level3 = _ramp(level3, target3, ramp)
        if level3 > 0.0:
            triangle = level3 * triangle_sample(phase3, dt3)
            phase3 += dt3
            if phase3 >= 1.0:
                phase3 -= math.floor(phase3)

        noise = 0.0
        if peak4 > 0:
            frame = int(env4)
            if frame != frame4:  # the envelope steps once a frame
                frame4 = frame
                target4 = float(drum_level(peak4, decay_sec, frame))
            env4 += frames_per_sample
            level4 = _ramp(level4, target4, ramp)
            if level4 > 0.0 and clocks4 > 0.0:
                # The fraction of this sample the LFSR output is on (bit 0 clear), clock by clock.
                on = 1.0 if (register & 1) == 0 else 0.0
                remaining = clocks4
                total = 0.0
                while position4 + remaining >= 1.0:
                    span = 1.0 - position4
                    total += on * span
                    remaining -= span
                    register = lfsr_next(register, short_mode)
                    on = 1.0 if (register & 1) == 0 else 0.0
                    position4 = 0.0
                total += on * remaining
                position4 += remaining
                noise = level4 * (total / clocks4)

        x = nes_mix(pulse_sum, triangle, noise)
        y = hp * (y_prev + x - x_prev)
        y2_prev = hp2 * (y2_prev + y - y_prev)
        y3_prev += lp * (y2_prev - y3_prev)
        x_prev = x
        y_prev = y
        out[i] = y3_prev * OUTPUT_GAIN

    state[PULSE1, V_LEVEL] = level1
    state[PULSE1, V_PHASE] = phase1
    state[PULSE1, V_ENV_FRAMES] = env1
    state[PULSE2, V_LEVEL] = level2
    state[PULSE2, V_PHASE] = phase2
    state[PULSE2, V_ENV_FRAMES] = env2
    state[TRIANGLE, V_LEVEL] = level3
    state[TRIANGLE, V_PHASE] = phase3
    state[NOISE, V_LEVEL] = level4
    state[NOISE, V_PHASE] = position4
    state[NOISE, V_LFSR] = register
    state[NOISE, V_ENV_FRAMES] = env4
    state[MIXER, M_X_PREV] = x_prev
    state[MIXER, M_Y_PREV] = y_prev
    state[MIXER, M_HP2_Y] = y2_prev
    state[MIXER, M_LP_Y] = y3_prev


@njit(_RENDER_BLOCK_SIG, cache=True, nogil=True)
def render_block(state, out, sample_rate):
    """Fill ``out`` with the mix of the four voices and advance ``state`` by ``len(out)`` samples.

    Parameters
    ----------
    state : np.ndarray [shape=(STATE_ROWS, N_FIELDS), dtype=float64]
        The synth's state (module docstring); updated in place.
    out : np.ndarray [shape=(N,), dtype=float32]
        Output samples, about -1 to 1.
    sample_rate : float
        Samples per second.
    """
    _render(state, out, 0, out.shape[0], sample_rate)


@njit(cache=True, nogil=True)
def _note_off(state, voice):
    if 0 <= voice < N_VOICES:
        state[voice, V_GATE] = 0.0


@njit(cache=True, nogil=True)
def _set_duty(state, voice, duty):
    if (voice == PULSE1 or voice == PULSE2) and 0 <= duty < 4:
        state[voice, V_DUTY] = duty


@njit(cache=True, nogil=True)
def _note_on(state, voice, pitch, velocity, drum_table):
    if not 0 <= voice < N_VOICES or not 0 <= pitch < 128:
        return
    volume = velocity_volume(velocity)
    if volume == 0:  # a note-on with velocity 0 is a note-off, as in MIDI
        _note_off(state, voice)
        return
    state[voice, V_PITCH] = pitch
    state[voice, V_GATE] = 1.0
    if voice == NOISE:
        if drum_table.shape[0] <= pitch or drum_table.shape[1] < N_DRUM_FIELDS:
            return
        state[NOISE, V_FREQ_HZ] = drum_table[pitch, D_RATE_HZ]
        state[NOISE, V_SHORT_MODE] = 1.0 if drum_table[pitch, D_SHORT_MODE] != 0.0 else 0.0
        state[NOISE, V_DECAY_SEC] = drum_table[pitch, D_DECAY_SEC]
        state[NOISE, V_VOLUME] = min(15.0, max(1.0, math.floor(volume * drum_table[pitch, D_GAIN] + 0.5)))
    else:
        state[voice, V_FREQ_HZ] = pitch_hz(voice, pitch)
        state[voice, V_VOLUME] = volume if voice != TRIANGLE else TRIANGLE_LEVEL
    state[voice, V_HITS] += 1.0  # the renderer restarts the envelope: it alone writes V_ENV_FRAMES


@njit(_NOTE_ON_SIG, cache=True, nogil=True)
def note_on(state, voice, pitch, velocity, drum_table):
    """Start a note: ``pitch`` is a MIDI key (a drum key for ``NOISE``); velocity 0 is a note-off.

    A pulse that already sounds changes pitch and restarts its envelope (the chip model
    strikes every note); the triangle changes pitch only. A drum restarts its decay.
    Out-of-range voices and pitches are ignored.

    Parameters
    ----------
    state : np.ndarray [shape=(STATE_ROWS, N_FIELDS), dtype=float64]
    voice, pitch, velocity : int
    drum_table : np.ndarray [shape=(128, N_DRUM_FIELDS), dtype=float64]
        The noise settings of each drum key (columns ``D_*``).
    """
    _note_on(state, voice, pitch, velocity, drum_table)


@njit(_NOTE_OFF_SIG, cache=True, nogil=True)
def note_off(state, voice):
    """Release a voice (a drum only loses its gate: its hit fades with its decay)."""
    _note_off(state, voice)


@njit(_SET_DUTY_SIG, cache=True, nogil=True)
def set_duty(state, voice, duty):
    """Set a pulse voice's duty index (0-3 into ``DUTY_CYCLES``); ignored for other voices or indices."""
    _set_duty(state, voice, duty)


@njit(_INIT_SIG, cache=True, nogil=True)
def init_state(state):
    """Silence everything: all fields 0, pitches -1, the LFSR at ``LFSR_RESET``, duties ``DEFAULT_DUTY``."""
    state[:, :] = 0.0
    for v in range(N_VOICES):
        state[v, V_PITCH] = -1.0
    state[NOISE, V_LFSR] = LFSR_RESET
    state[PULSE1, V_DUTY] = DEFAULT_DUTY[0]
    state[PULSE2, V_DUTY] = DEFAULT_DUTY[1]


@njit(cache=True, nogil=True)
def render_events(
    event_sample, event_voice, event_pitch, event_velocity, event_duty, drum_table, state, out, sample_rate
):
    """Render ``out`` with note events applied at exact samples: ``render_block`` between events.

    Parameters
    ----------
    event_sample : np.ndarray [shape=(E,), dtype=int64]
        Sample index of each event, non-decreasing; the event acts before that sample
        (an index of ``len(out)`` acts after the last). Indices out of order or out of
        range are clamped into ``[previous, len(out)]``.
    event_voice : np.ndarray [shape=(E,), dtype=int64]
        0-3; other values are ignored.
    event_pitch : np.ndarray [shape=(E,), dtype=int64]
        A MIDI key for a note-on (a drum key for the noise voice), ``NOTE_OFF`` (-1), or
        ``NO_NOTE`` (-2) for an event that only sets the duty.
    event_velocity : np.ndarray [shape=(E,), dtype=int64]
        1-127 for note-ons (0 makes a note-off); ignored otherwise.
    event_duty : np.ndarray [shape=(E,), dtype=int64]
        Duty index 0-3 set before the note event, or ``DUTY_UNCHANGED`` (-1).
    drum_table : np.ndarray [shape=(128, N_DRUM_FIELDS), dtype=float64]
    state : np.ndarray [shape=(STATE_ROWS, N_FIELDS), dtype=float64]
        Updated in place.
    out : np.ndarray [shape=(N,), dtype=float32]
    sample_rate : float

    Notes
    -----
    Exactly a loop over the online path: for any split of the events into blocks, rendering
    block by block with the same state gives the same samples.
    """
    n = out.shape[0]
    position = 0
    for i in range(event_sample.shape[0]):
        at = min(max(event_sample[i], position), n)
        if at > position:
            _render(state, out, position, at, sample_rate)
            position = at
        voice = event_voice[i]
        if event_duty[i] >= 0:
            _set_duty(state, voice, event_duty[i])
        pitch = event_pitch[i]
        if pitch == NOTE_OFF:
            _note_off(state, voice)
        elif pitch >= 0:
            _note_on(state, voice, pitch, event_velocity[i], drum_table)
    if position < n:
        _render(state, out, position, n, sample_rate)
