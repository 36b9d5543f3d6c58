"""The arranger network's step: input rows, GRU cell, four voice heads, sampling.

Every input of a step is categorical (melody pitch or button lane, onset flag, input
mode, position in the bar, the four voices' previous tokens, and the player's settings:
style, energy and which accompaniment voices play), so the embedding, the GRU's input
matrix and the heads' direct input path are folded at export into one table: row ``r``
holds ``[W_ih @ e_r, W_direct @ e_r]``. A step sums ``N_ROWS`` gathered rows onto the
``condition`` vector (the settings' rows, summed once when they change), then does the
two matrix-vector products that remain (recurrent and output).

The voices are drawn in ``SAMPLING_ORDER`` (lead, bass, harmony, drums), and each drawn
voice adds a row of ``pair_table`` to the logits of the voices drawn after it: the row of
the token it plays now (a rest, a new note, or the note it holds), so the bass hears the
lead's note and the harmony both, within the step. A voice the player turned off
(``voice_on``) is forced to rest, and its rest is what the later voices hear.

The weights are stored transposed (``w_hh_t`` is (H, 3H), ``w_out_t`` is (H, V)) so that
each product is a sum of scaled rows: the inner loop runs over independent outputs and
vectorises without reassociating any sum, which keeps ``fastmath`` off and the result
identical on every call. The offline run is a loop over the same step function, so
``run == stack(step)`` holds exactly.

Token layout of one voice: 0 = rest, 1 = hold the sounding note, ``2 + k`` = a new note
of class ``k`` (a pitch above the voice's lowest, or a drum class for the noise voice).
The four voices' logits are concatenated; ``tok_offset[v]:tok_offset[v + 1]`` is voice v.
"""

import math

import numpy as np
from numba import njit, types

from chiptuner._kernels.activation import sigmoid, tanh
from chiptuner._kernels.keys import KEY_SCALES, best_key

#: Rows gathered per step: melody (pitch or lane), onset, mode, position, 4 previous tokens.
N_ROWS = 8
#: Setting rows summed into the ``condition`` vector: style, energy, pulse2/triangle/noise on.
N_CONDITIONS = 5
#: The order the voices are drawn in within a step: lead, bass (triangle), harmony (pulse2), drums.
SAMPLING_ORDER = (0, 2, 1, 3)
REST = 0
HOLD = 1
FIRST_NOTE = 2
#: ``lead`` argument of ``step``: the model samples pulse1 freely.
LEAD_FREE = -1
#: ``lead`` argument of ``step``: pulse1 must start a note, the model picks its pitch.
LEAD_ONSET = -2
#: Intervals above the lead (mod 12) that count as consonant: unison, 3rds, 4th, 5th, 6ths.
CONSONANT_INTERVALS = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9)
#: Length of ``step``'s ``sampling`` argument: temperature, 4 rest biases, clash bias, key bias.
N_SAMPLING = 7
#: Layout of the key-tracking state (float64 (KEY_STATE_SIZE,)): pitch-class durations of
#: the melody so far, its onsets so far, and the key they imply (-1 until ``KEY_MIN_ONSETS``).
KEY_STATE_SIZE = 14
KEY_ONSETS = 12
KEY_INDEX = 13
KEY_MIN_ONSETS = 8
#: Layout of the contour state (int64 (CONTOUR_STATE_SIZE,)) that buttons mode keeps: the lane
#: of the last input onset and pulse1's pitch sounding on its step, both -1 until the first.
CONTOUR_STATE_SIZE = 2
CONTOUR_LANE = 0
CONTOUR_PITCH = 1
#: The ``scale_bits`` of no scale lock: bit ``k`` set allows pitch class ``k``, and all 12 are.
ALL_PITCH_CLASSES = 0xFFF

_F32_1D = types.Array(types.float32, 1, "C")
_F32_1D_RO = types.Array(types.float32, 1, "C", readonly=True)
_F32_2D_RO = types.Array(types.float32, 2, "C", readonly=True)
_I64_1D = types.Array(types.int64, 1, "C")
_I64_1D_RO = types.Array(types.int64, 1, "C", readonly=True)
# Weights are read-only (a loaded model is frozen); writable arrays convert to these types.
_STEP_SIG = types.void(
    _F32_2D_RO, _F32_1D_RO, _F32_1D_RO, _F32_2D_RO, _F32_2D_RO, _F32_1D_RO, _I64_1D_RO,
    _I64_1D, _F32_1D_RO, _F32_2D_RO, _I64_1D_RO, types.Array(types.bool_, 1, "C", readonly=True),
    _F32_1D, _F32_1D, _F32_1D, _F32_1D,
    types.Array(types.float64, 1, "C", readonly=True), types.int64, types.Array(types.uint64, 1, "C"), _I64_1D,
    _I64_1D_RO, _I64_1D, types.Array(types.float64, 1, "C"), types.int64, types.int64, types.int64,
)  # fmt: skip


@njit(cache=True, nogil=True)
def next_uniform(rng_state):
    """A uniform draw in [0, 1) from a xorshift64* generator whose state is ``rng_state[0]``."""
    x = rng_state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng_state[0] = x
    out = x * np.uint64(2685821657736338717)
    return float(out >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def clashes(pitch, lead_class):
    """Whether ``pitch`` sounding against a lead of pitch class ``lead_class`` is dissonant."""
    return (CONSONANT_INTERVALS >> ((pitch - lead_class) % 12)) & 1 == 0


@njit(cache=True, nogil=True)
def in_scale(pitch, scale_bits):
    """Whether ``pitch``'s pitch class is one ``scale_bits`` allows (bit ``k``: pitch class ``k``)."""
    return (scale_bits >> (pitch % 12)) & 1 == 1


@njit(cache=True, nogil=True)
def steering(pitch, lead_class, clash_factor, key, key_factor, scale_bits=ALL_PITCH_CLASSES):
    """The factor on the weight of sounding ``pitch`` (1 where nothing steers it).

    ``clash_factor`` where it clashes with a lead of pitch class ``lead_class`` (>= 0),
    times ``key_factor`` where it lies outside the scale of ``key`` (>= 0); 0 where the
    scale lock ``scale_bits`` forbids it (a hard mask, not a bias).
    """
    if scale_bits != ALL_PITCH_CLASSES and not in_scale(pitch, scale_bits):
        return 0.0
    factor = 1.0
    if lead_class >= 0 and clashes(pitch, lead_class):
        factor *= clash_factor
    if key >= 0 and not KEY_SCALES[key, pitch % 12]:
        factor *= key_factor
    return factor


@njit(cache=True, nogil=True)
def sample_voice(
    logits, start, end, previous, onset_only, temperature, rest_bias, rng_state, scratch,
    low=0, lead_class=-1, held_pitch=-1, clash_bias=0.0, key=-1, key_bias=0.0, first=FIRST_NOTE, stop=-1,
    scale_bits=ALL_PITCH_CLASSES,
):  # fmt: skip
    """Draw one voice's token: rest, hold or a new note as trained, then the note at ``temperature``.

    The choice between rest, hold and a new note is always sampled from the model's own
    probabilities (temperature 1): sharpening that choice is what makes a model fall silent,
    since rests and holds are the likeliest tokens of almost every step. ``temperature``
    only sharpens (< 1) or flattens (> 1) which note a new note is. Hold is allowed only
    after a sounding token; with ``onset_only`` a new note is certain. ``rest_bias`` is
    subtracted from the rest logit (0 samples as trained; see ``model.arranger.Arranger``).
    ``scratch`` (at least ``end - start`` floats) holds the weights.

    Steering (for pitched voices; new note ``k`` is pitch ``low + k - FIRST_NOTE``):
    with ``lead_class >= 0`` (the lead starts a note of that pitch class now),
    ``clash_bias`` is subtracted from the log-weight of every token that would leave this
    voice sounding a dissonance against it (``clashes``: new notes, and holding
    ``held_pitch``); with ``key >= 0``, ``key_bias`` from every new note outside that
    key's scale (``keys.KEY_SCALES``). Steering moves weight between sounding choices
    only: the chance to rest stays as trained, so a steered voice does not fall silent.

    ``first``/``stop`` limit the new note to tokens ``first`` to ``stop - 1`` (``stop`` -1:
    to the voice's last), renormalised over them; given with ``onset_only``, so that only
    which note is chosen changes (``contour_tokens``).

    ``scale_bits`` (bit ``k`` allows pitch class ``k``; ``ALL_PITCH_CLASSES``: no lock) is a
    hard mask: a new note outside it, or holding ``held_pitch`` outside it, has weight 0,
    and the rest keeps its trained share of what remains. The caller makes sure the notes
    ``first`` to ``stop - 1`` hold at least one allowed pitch (``scale_window``).
    """
    n = end - start
    if stop < 0:
        stop = n
    hold_allowed = previous != REST and not onset_only
    clash_factor = math.exp(-clash_bias)
    key_factor = math.exp(-key_bias)
    top = logits[start + first]
    for k in range(first, stop):
        if logits[start + k] > top:
            top = logits[start + k]
    if not onset_only:
        top = max(top, logits[start + REST])
        if hold_allowed:
            top = max(top, logits[start + HOLD])
    trained_mass = 0.0  # of the sounding choices, before steering
    note_mass = 0.0
    for k in range(first, stop):
        weight = math.exp(logits[start + k] - top)
        trained_mass += weight
        weight *= steering(low + k - FIRST_NOTE, lead_class, clash_factor, key, key_factor, scale_bits)
        scratch[k] = weight
        note_mass += weight
    if not onset_only:
        rest_mass = math.exp(logits[start + REST] - top - rest_bias)
        hold_mass = 0.0
        if hold_allowed:
            hold_mass = math.exp(logits[start + HOLD] - top)
            trained_mass += hold_mass
            if held_pitch >= 0:
                hold_mass *= steering(held_pitch, lead_class, clash_factor, -1, 1.0, scale_bits)
        # The rest keeps its trained share of the whole.
        rest_mass *= (hold_mass + note_mass) / trained_mass
        draw = next_uniform(rng_state) * (rest_mass + hold_mass + note_mass)
        if draw < rest_mass:
            return REST
        if draw < rest_mass + hold_mass:
            return HOLD
    total = note_mass
    if temperature != 1.0:
        top_note = logits[start + first] / temperature
        for k in range(first, stop):
            top_note = max(top_note, logits[start + k] / temperature)
        total = 0.0
        for k in range(first, stop):
            weight = math.exp(logits[start + k] / temperature - top_note)
            weight *= steering(low + k - FIRST_NOTE, lead_class, clash_factor, key, key_factor, scale_bits)
            scratch[k] = weight
            total += weight
    draw = next_uniform(rng_state) * total
    running = 0.0
    for k in range(first, stop):
        running += scratch[k]
        if running > draw:
            return k
    return stop - 1  # rounding left the draw past the last weight


@njit(cache=True, nogil=True)
def allowed_token(k, previous, low, held_pitch, scale_bits):
    """Whether token ``k`` of a pitched voice can be drawn.

    Hold only after a sounding token; under a scale lock (``scale_bits``) no new note, and
    no hold of a note, outside the scale.
    """
    if k == HOLD:
        if previous == REST:
            return False
        return held_pitch < 0 or scale_bits == ALL_PITCH_CLASSES or in_scale(held_pitch, scale_bits)
    if k >= FIRST_NOTE and scale_bits != ALL_PITCH_CLASSES:
        return in_scale(low + k - FIRST_NOTE, scale_bits)
    return True


@njit(cache=True, nogil=True)
def voice_log_prob(logits, start, end, previous, target, low=0, held_pitch=-1, scale_bits=ALL_PITCH_CLASSES):
    """Log p(target) of one voice under the unscaled softmax, hold masked after a rest.

    With a scale lock (``scale_bits``, see ``sample_voice``) the softmax is renormalised over
    the tokens the lock allows, and a target it forbids has log p = -inf. ``low`` is the
    voice's lowest pitch and ``held_pitch`` the note a hold would keep (-1 none).
    """
    top = -1e300
    for k in range(end - start):
        if not allowed_token(k, previous, low, held_pitch, scale_bits):
            continue
        if logits[start + k] > top:
            top = logits[start + k]
    total = 0.0
    for k in range(end - start):
        if not allowed_token(k, previous, low, held_pitch, scale_bits):
            continue
        total += math.exp(logits[start + k] - top)
    if not allowed_token(target, previous, low, held_pitch, scale_bits):
        return -math.inf
    return logits[start + target] - top - math.log(total)


# error_model="numpy": the gate loop vectorises (see ``activation``).
@njit(cache=True, nogil=True, error_model="numpy")
def forward(in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, rows, condition, h, acc, gh, logits):
    """The network's step without sampling: sum the input rows onto ``condition``, GRU cell (``h`` in place), logits.

    The cell's sigmoid and tanh are ``activation``'s (float32-accurate, vectorisable).
    ``logits`` are the heads before any voice is drawn (``pair_table`` adds the rest).
    """
    n_hidden = h.shape[0]
    n_gates = 3 * n_hidden
    width = acc.shape[0]
    for i in range(width):
        acc[i] = condition[i]
    for k in range(rows.shape[0]):
        row = in_table[rows[k]]
        for i in range(width):
            acc[i] += row[i]
    for i in range(n_gates):
        gh[i] = b_hh[i]
    for j in range(n_hidden):
        hj = h[j]
        w = w_hh_t[j]
        for i in range(n_gates):
            gh[i] += w[i] * hj
    for i in range(n_hidden):
        r = sigmoid(acc[i] + b_ih[i] + gh[i])
        z = sigmoid(acc[n_hidden + i] + b_ih[n_hidden + i] + gh[n_hidden + i])
        n = tanh(acc[2 * n_hidden + i] + b_ih[2 * n_hidden + i] + r * gh[2 * n_hidden + i])
        h[i] = (1.0 - z) * n + z * h[i]
    n_out = logits.shape[0]
    for i in range(n_out):
        logits[i] = b_out[i] + acc[n_gates + i]
    for j in range(n_hidden):
        hj = h[j]
        w = w_out_t[j]
        for i in range(n_out):
            logits[i] += w[i] * hj


@njit(cache=True, nogil=True)
def pair_row(pair_offset, tok_offset, voice, token, held_pitch, low):
    """The ``pair_table`` row of ``voice`` playing ``token`` this step (-1 for the noise voice).

    A voice's block holds one row per token (rest, an unused hold row, each new note),
    then one per note it can hold: a hold is heard as the note held (``held_pitch``).
    """
    if voice >= 3:
        return -1
    n = tok_offset[voice + 1] - tok_offset[voice]
    if token == HOLD:
        if held_pitch < 0:  # a hold after silence is never drawn; read as the rest it is
            return pair_offset[voice] + REST
        return pair_offset[voice] + n + held_pitch - low
    return pair_offset[voice] + token


@njit(cache=True, nogil=True)
def add_pair_row(pair_table, row, tok_offset, after, logits):
    """Add ``pair_table[row]`` to the logits of the voices drawn after position ``after`` of the order."""
    if row < 0:
        return
    weights = pair_table[row]
    for later in range(after + 1, 4):
        v = SAMPLING_ORDER[later]
        for i in range(tok_offset[v], tok_offset[v + 1]):
            logits[i] += weights[i]


@njit(_STEP_SIG, cache=True, nogil=True)
def step(
    in_table,
    b_ih,
    b_hh,
    w_hh_t,
    w_out_t,
    b_out,
    tok_offset,
    rows,
    condition,
    pair_table,
    pair_offset,
    voice_on,
    h,
    acc,
    gh,
    logits,
    sampling,
    lead,
    rng_state,
    tokens,
    voice_low,
    sounding,
    key_state,
    lead_first,
    lead_stop,
    scale_bits,
):
    """Advance the network one step and sample the four voices' tokens, in ``SAMPLING_ORDER``.

    Parameters
    ----------
    in_table : float32 (R, 3H + V)
        Folded input rows.
    b_ih, b_hh : float32 (3H,)
        GRU biases (gate order r, z, n as in torch).
    w_hh_t : float32 (H, 3H)
    w_out_t : float32 (H, V)
    b_out : float32 (V,)
    tok_offset : int64 (5,)
    rows : int64 (N_ROWS,)
        Rows of ``in_table`` for this step's inputs (see ``input_rows``).
    condition : float32 (3H + V,)
        The sum of the settings' rows of ``in_table`` (style, energy, voices on).
    pair_table : float32 (P, V)
        Per voice and token played this step, what it adds to the later voices' logits.
    pair_offset : int64 (3,)
        First ``pair_table`` row of pulse1, pulse2 and the triangle (``pair_row``).
    voice_on : bool (4,)
        A voice that is off rests on every step.
    h : float32 (H,)
        Hidden state, updated in place.
    acc : float32 (3H + V,), gh : float32 (3H,)
        Scratch.
    logits : float32 (V,)
        Output: the step's logits before masking and temperature, each voice's with the
        rows of the voices drawn before it added.
    sampling : float64 (N_SAMPLING,)
        The temperature (> 0), each voice's rest bias, the clash bias that steers pulse2
        and the triangle away from dissonances when pulse1 starts a note, and the key bias
        that steers their new notes into the lead's key (see ``sample_voice``).
    lead : int64
        ``LEAD_FREE``, ``LEAD_ONSET``, or a pulse1 token (>= 2) to play.
    rng_state : uint64 (1,)
    tokens : int64 (4,)
        In: the previous step's tokens (they decide where hold is possible). Out: this step's.
    voice_low : int64 (3,)
        Lowest pitch of each pitched voice (the pitch of its first note token).
    sounding : int64 (4,)
        The pitch each voice sounds before this step (-1 silent): what a hold would keep.
    key_state : float64 (KEY_STATE_SIZE,)
        The melody's key so far (``track_key``); read here, updated by ``play_step``.
    lead_first, lead_stop : int64
        With ``LEAD_ONSET``, pulse1's new note is one of tokens ``lead_first`` to
        ``lead_stop - 1`` (``contour_tokens``); ``FIRST_NOTE, -1`` leaves it free.
    scale_bits : int64
        The scale lock: bit ``k`` allows pitch class ``k`` (``ALL_PITCH_CLASSES``: no lock).
        Every note the model picks for pulse1, pulse2 or the triangle is in it; a pulse1
        token given in ``lead`` (the player's note) is played as given.
    """
    forward(in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, rows, condition, h, acc, gh, logits)
    lead_class = -1
    for position in range(4):
        v = SAMPLING_ORDER[position]
        forced = -1
        onset_only = False
        if not voice_on[v]:
            forced = REST
        elif v == 0:
            if lead >= FIRST_NOTE:
                forced = lead
            elif lead == LEAD_ONSET:
                onset_only = True
        if forced >= 0:
            tokens[v] = forced
        else:
            # acc is free once the logits are made: it holds the draw's weights.
            tokens[v] = sample_voice(
                logits,
                tok_offset[v],
                tok_offset[v + 1],
                tokens[v],
                onset_only,
                sampling[0],
                sampling[1 + v],
                rng_state,
                acc,
                voice_low[v] if v < 3 else 0,
                lead_class if v < 3 else -1,
                sounding[v],
                sampling[5],
                int(key_state[KEY_INDEX]) if v < 3 else -1,
                sampling[6],
                lead_first if v == 0 else FIRST_NOTE,
                lead_stop if v == 0 else -1,
                scale_bits if v < 3 else ALL_PITCH_CLASSES,
            )
        if v == 0 and tokens[0] >= FIRST_NOTE:
            lead_class = (voice_low[0] + tokens[0] - FIRST_NOTE) % 12
        if position < 3:
            low = voice_low[v] if v < 3 else 0
            add_pair_row(pair_table, pair_row(pair_offset, tok_offset, v, tokens[v], sounding[v], low), tok_offset,
                         position, logits)  # fmt: skip


@njit(cache=True, nogil=True)
def input_rows(row_offset, buttons, melody, onset, position, max_position, tokens, rows):
    """Fill ``rows`` with the ``in_table`` rows of one step's inputs.

    Parameters
    ----------
    row_offset : int64 (10,)
        First row of each input block: keys pitch (129 rows: rest, then MIDI 0-127), lanes
        (6: none, then lanes 0-4), onset (2), mode (2), position (max_position + 1), then
        the previous tokens of voices 0-3; the last entry is the table's row count.
    buttons : bool
        Input mode: False for a pitch, True for a 5-button lane.
    melody : int64
        The pitch (0-127) or lane (0-4) sounding now, -1 for none.
    onset : bool
        A note starts on this step.
    position : int64
        Step in the bar, clipped to ``max_position``.
    tokens : int64 (4,)
        The previous step's tokens.
    """
    if buttons:
        lane = melody if 0 <= melody < 5 else -1
        rows[0] = row_offset[1] + lane + 1
    else:
        pitch = melody if 0 <= melody < 128 else -1
        rows[0] = row_offset[0] + pitch + 1
    rows[1] = row_offset[2] + (1 if onset and melody >= 0 else 0)
    rows[2] = row_offset[3] + (1 if buttons else 0)
    p = position
    if p < 0:
        p = 0
    if p > max_position:
        p = max_position
    rows[3] = row_offset[4] + p
    for v in range(4):
        rows[4 + v] = row_offset[5 + v] + tokens[v]


@njit(cache=True, nogil=True)
def lead_token(buttons, melody, onset, low, high):
    """What pulse1 must do this step: play the player's pitch (folded into range) on an onset."""
    if not onset or melody < 0:
        return LEAD_FREE
    if buttons:
        return LEAD_ONSET
    pitch = melody
    while pitch > high:
        pitch -= 12
    while pitch < low:
        pitch += 12
    return FIRST_NOTE + pitch - low


@njit(cache=True, nogil=True)
def contour_tokens(contour, lane, low, high):
    """pulse1's new-note tokens ``first`` to ``stop - 1`` that follow the player's contour in buttons mode.

    When ``lane`` differs from the last onset's (``contour``, see ``CONTOUR_STATE_SIZE``)
    and a lead pitch sounded there, the new note lies strictly above that pitch for a
    higher lane, strictly below for a lower one. Where the range leaves no such pitch (the
    last lead at pulse1's top and the lane going up, or at its bottom going down) it is the
    range's edge, the nearest pitch to an allowed one: that move breaks the contour.
    Otherwise every pitch of ``low``-``high`` is allowed.
    """
    n_notes = high - low + 1
    previous = contour[CONTOUR_PITCH]
    if previous < 0 or lane == contour[CONTOUR_LANE]:
        return FIRST_NOTE, FIRST_NOTE + n_notes
    k = previous - low
    if lane > contour[CONTOUR_LANE]:
        return FIRST_NOTE + min(k + 1, n_notes - 1), FIRST_NOTE + n_notes
    return FIRST_NOTE, FIRST_NOTE + max(k, 1)


@njit(cache=True, nogil=True)
def scale_window(first, stop, direction, low, n_notes, scale_bits):
    """Narrow pulse1's new-note tokens ``first`` to ``stop - 1`` so that the scale lock leaves one.

    Where the window holds a pitch ``scale_bits`` allows, it is kept (the mask in
    ``sample_voice`` picks among them). Where the contour and the scale leave no pitch, the
    window becomes the one token of the nearest allowed pitch beyond it in the contour's
    ``direction`` (+1 up, -1 down, 0 none), else the nearest allowed pitch at all (on a tie,
    the higher). ``stop`` -1 means the voice's last token; ``n_notes`` is its pitch count.
    """
    if stop < 0:
        stop = FIRST_NOTE + n_notes
    for k in range(first, stop):
        if in_scale(low + k - FIRST_NOTE, scale_bits):
            return first, stop
    if direction > 0:
        for k in range(stop, FIRST_NOTE + n_notes):
            if in_scale(low + k - FIRST_NOTE, scale_bits):
                return k, k + 1
    elif direction < 0:
        for k in range(first - 1, FIRST_NOTE - 1, -1):
            if in_scale(low + k - FIRST_NOTE, scale_bits):
                return k, k + 1
    best, best_distance = -1, n_notes + 1
    for k in range(FIRST_NOTE, FIRST_NOTE + n_notes):
        if not in_scale(low + k - FIRST_NOTE, scale_bits):
            continue
        distance = first - k if k < first else k - (stop - 1)
        if distance <= best_distance:
            best, best_distance = k, distance
    if best < 0:  # no allowed pitch in the whole range (an empty scale is refused before this)
        return first, stop
    return best, best + 1


@njit(cache=True, nogil=True)
def play_step(
    in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, tok_offset, row_offset, max_position, condition, pair_table,
    pair_offset, voice_on, buttons, melody, onset, position, voice_low, voice_high, drum_keys, follow_lead,
    follow_contour, sampling, rng_state, h, acc, gh, logits, rows, tokens, sounding, started, key_state, contour,
    lead_pitch, scale_bits,
):  # fmt: skip
    """One step from the player's input to the four voices: the function live and offline share.

    Builds the input rows from ``melody``/``onset``/``position`` and the previous
    ``tokens``, decides the lead (``lead_token`` when ``follow_lead``), runs ``step``, then
    decodes: ``sounding`` (4,) holds each voice's sounding pitch or drum key (-1 silent),
    ``started`` (4,) whether it started on this step. ``voice_low``/``voice_high`` (3,)
    are the pitched voices' ranges. ``key_state`` follows the melody's key (``track_key``).
    ``lead_pitch`` >= 0 makes pulse1 start that pitch (folded into its range) whatever the
    mode, as when a live engine has already sounded the player's note; -1 leaves the lead
    to ``lead_token``. In buttons mode ``contour`` (int64 (CONTOUR_STATE_SIZE,)) keeps the
    last input onset's lane and lead pitch; with ``follow_contour`` a lead the model picks
    on an onset moves the way the lane moves (``contour_tokens``). ``condition``,
    ``pair_table``, ``pair_offset``, ``voice_on`` and ``scale_bits`` (the scale lock) are
    ``step``'s; under a lock the contour's window is narrowed by ``scale_window``.
    """
    input_rows(row_offset, buttons, melody, onset, position, max_position, tokens, rows)
    lead = LEAD_FREE
    lead_first, lead_stop = FIRST_NOTE, -1
    if lead_pitch >= 0:
        lead = lead_token(False, lead_pitch, True, voice_low[0], voice_high[0])
    elif follow_lead:
        lead = lead_token(buttons, melody, onset, voice_low[0], voice_high[0])
        if lead == LEAD_ONSET and follow_contour:
            lead_first, lead_stop = contour_tokens(contour, melody, voice_low[0], voice_high[0])
        if lead == LEAD_ONSET and scale_bits != ALL_PITCH_CLASSES:
            direction = 0
            if follow_contour and contour[CONTOUR_PITCH] >= 0 and melody != contour[CONTOUR_LANE]:
                direction = 1 if melody > contour[CONTOUR_LANE] else -1
            n_notes = voice_high[0] - voice_low[0] + 1
            lead_first, lead_stop = scale_window(lead_first, lead_stop, direction, voice_low[0], n_notes, scale_bits)
    step(
        in_table,
        b_ih,
        b_hh,
        w_hh_t,
        w_out_t,
        b_out,
        tok_offset,
        rows,
        condition,
        pair_table,
        pair_offset,
        voice_on,
        h,
        acc,
        gh,
        logits,
        sampling,
        lead,
        rng_state,
        tokens,
        voice_low,
        sounding,
        key_state,
        lead_first,
        lead_stop,
        scale_bits,
    )
    for v in range(4):
        token = tokens[v]
        started[v] = token >= FIRST_NOTE
        if token == REST:
            sounding[v] = -1
        elif token >= FIRST_NOTE:
            sounding[v] = drum_keys[token - FIRST_NOTE] if v == 3 else voice_low[v] + token - FIRST_NOTE
    # The key is the player's in keys mode; with buttons the model's pulse1 is the melody.
    if buttons:
        track_key(key_state, sounding[0], started[0])
        # Every onset moves the reference, whoever chose the lead (the engine's lead_pitch
        # too); rests between onsets do not, as the contour is read onset to onset.
        if onset and melody >= 0:
            contour[CONTOUR_LANE] = melody
            contour[CONTOUR_PITCH] = sounding[0]
    else:
        track_key(key_state, melody, onset)


@njit(cache=True, nogil=True)
def track_key(key_state, lead_pitch, lead_started):
    """Count one step of the melody into ``key_state`` and re-estimate the key on its onsets.

    The histogram weighs pitch classes by duration, as ``keys.estimate_key`` does; the
    key is left at -1 (no steering) until the lead has started ``KEY_MIN_ONSETS`` notes.
    """
    if lead_pitch < 0:
        return
    key_state[lead_pitch % 12] += 1.0
    if lead_started:
        key_state[KEY_ONSETS] += 1.0
        if key_state[KEY_ONSETS] >= KEY_MIN_ONSETS:
            key_state[KEY_INDEX] = best_key(key_state[:12])


@njit(cache=True, nogil=True)
def run(
    in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, tok_offset, row_offset, max_position, condition, pair_table,
    pair_offset, voice_on, buttons, melody, onset, position, voice_low, voice_high, drum_keys, follow_lead,
    follow_contour, sampling, rng_state, h, tokens, sounding, key_state, contour, scale_bits, tokens_out,
):  # fmt: skip
    """Arrange a whole melody: ``play_step`` once per row of ``melody``, from the given state.

    ``h``, ``tokens`` (4,), ``sounding`` (4,), ``key_state`` and ``contour`` are the state
    to start from and are left at the last step's; ``scale_bits`` is the scale lock
    (``step``); ``tokens_out`` (T, 4) receives every step's tokens.
    """
    acc = np.zeros(in_table.shape[1], dtype=np.float32)
    gh = np.zeros(3 * h.shape[0], dtype=np.float32)
    logits = np.zeros(b_out.shape[0], dtype=np.float32)
    rows = np.zeros(N_ROWS, dtype=np.int64)
    started = np.zeros(4, dtype=np.bool_)
    for t in range(melody.shape[0]):
        play_step(
            in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, tok_offset, row_offset, max_position, condition, pair_table,
            pair_offset, voice_on, buttons, melody[t], onset[t], position[t], voice_low, voice_high, drum_keys,
            follow_lead, follow_contour, sampling, rng_state, h, acc, gh, logits, rows, tokens, sounding, started,
            key_state, contour, -1, scale_bits,
        )  # fmt: skip
        for v in range(4):
            tokens_out[t, v] = tokens[v]


@njit(cache=True, nogil=True)
def teacher_forced_log_prob(
    in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, tok_offset, row_offset, max_position, pair_table, pair_offset,
    voice_low, buttons, melody, onset, position, condition_rows, target, h, log_prob_out,
    scale_bits=ALL_PITCH_CLASSES, scale_voices=0,
):  # fmt: skip
    """Log p of every real token (T, 4) given the real past and the voices drawn before it (teacher forcing).

    The step is the same cell as ``step``; sampling is replaced by scoring ``target`` in
    ``SAMPLING_ORDER``, each voice given the real tokens of the voices drawn before it this
    step, so the four log-probabilities of a step sum to its joint log-probability.
    ``condition_rows`` (T, N_CONDITIONS) are each step's setting rows of ``in_table``.
    Under a scale lock (``scale_bits``), voice ``v`` with bit ``v`` of ``scale_voices`` set
    is scored over the tokens the lock allows (``voice_log_prob``; -inf where it forbids
    the real token).
    """
    n_hidden = h.shape[0]
    acc = np.zeros(in_table.shape[1], dtype=np.float32)
    gh = np.zeros(3 * n_hidden, dtype=np.float32)
    logits = np.zeros(b_out.shape[0], dtype=np.float32)
    no_condition = np.zeros(in_table.shape[1], dtype=np.float32)
    rows = np.zeros(N_ROWS + N_CONDITIONS, dtype=np.int64)
    previous = np.zeros(4, dtype=np.int64)
    held = np.full(3, -1, dtype=np.int64)
    for t in range(melody.shape[0]):
        input_rows(row_offset, buttons, melody[t], onset[t], position[t], max_position, previous, rows)
        for c in range(N_CONDITIONS):
            rows[N_ROWS + c] = condition_rows[t, c]
        forward(in_table, b_ih, b_hh, w_hh_t, w_out_t, b_out, rows, no_condition, h, acc, gh, logits)
        for position_in_order in range(4):
            v = SAMPLING_ORDER[position_in_order]
            if v < 3 and (scale_voices >> v) & 1:
                log_prob_out[t, v] = voice_log_prob(
                    logits, tok_offset[v], tok_offset[v + 1], previous[v], target[t, v], voice_low[v], held[v],
                    scale_bits,
                )  # fmt: skip
            else:
                log_prob_out[t, v] = voice_log_prob(logits, tok_offset[v], tok_offset[v + 1], previous[v], target[t, v])
            if v < 3:
                row = pair_row(pair_offset, tok_offset, v, target[t, v], held[v], voice_low[v])
                if position_in_order < 3:
                    add_pair_row(pair_table, row, tok_offset, position_in_order, logits)
                if target[t, v] == REST:
                    held[v] = -1
                elif target[t, v] >= FIRST_NOTE:
                    held[v] = voice_low[v] + target[t, v] - FIRST_NOTE
        for v in range(4):
            previous[v] = target[t, v]


@njit(cache=True, nogil=True)
def matvec_floor(w_hh_t, w_out_t, h, gh, logits):
    """The two matrix-vector products of a step and nothing else: the speed floor of ``step``."""
    n_hidden = h.shape[0]
    for i in range(gh.shape[0]):
        gh[i] = 0.0
    for j in range(n_hidden):
        hj = h[j]
        w = w_hh_t[j]
        for i in range(gh.shape[0]):
            gh[i] += w[i] * hj
    for i in range(logits.shape[0]):
        logits[i] = 0.0
    for j in range(n_hidden):
        hj = gh[j]
        w = w_out_t[j]
        for i in range(logits.shape[0]):
            logits[i] += w[i] * hj


@njit(cache=True, nogil=True)
def matvec_floor_steps(w_hh_t, w_out_t, h, gh, logits, n_steps):
    """``matvec_floor`` ``n_steps`` times in one call: the floor of ``run`` per step."""
    for _ in range(n_steps):
        matvec_floor(w_hh_t, w_out_t, h, gh, logits)


@njit(cache=True, nogil=True)
def tokens_to_voices(tokens, low, drum_keys, pitch_out, onset_out):
    """Decode tokens (T, 4) into sounding pitch (-1 silent) and onset flags per step and voice.

    ``low`` (3,) is the lowest pitch of pulse1, pulse2 and triangle; noise classes map to
    ``drum_keys``. A hold after silence (never sampled) is read as silence.
    """
    for v in range(4):
        sounding = -1
        for t in range(tokens.shape[0]):
            token = tokens[t, v]
            onset_out[t, v] = False
            if token == REST:
                sounding = -1
            elif token >= FIRST_NOTE:
                k = token - FIRST_NOTE
                sounding = drum_keys[k] if v == 3 else low[v] + k
                onset_out[t, v] = True
            pitch_out[t, v] = sounding


@njit(cache=True, nogil=True)
def voices_to_tokens(pitch, onset, low, high, drum_keys, tokens_out):
    """Encode sounding pitch and onset flags (T, 4) as tokens; the inverse of ``tokens_to_voices``.

    A pitch change without an onset flag starts a note; a pitch outside a voice's range is
    folded by octaves; a drum key that is none of ``drum_keys`` is a rest.
    """
    for v in range(4):
        previous = -1
        for t in range(pitch.shape[0]):
            p = pitch[t, v]
            if p < 0:
                tokens_out[t, v] = REST
                previous = -1
                continue
            if v == 3:
                k = -1
                for d in range(drum_keys.shape[0]):
                    if drum_keys[d] == p:
                        k = d
                if k < 0:
                    tokens_out[t, v] = REST
                    previous = -1
                    continue
            else:
                while p > high[v]:
                    p -= 12
                while p < low[v]:
                    p += 12
                k = p - low[v]
            if onset[t, v] or p != previous:
                tokens_out[t, v] = FIRST_NOTE + k
            else:
                tokens_out[t, v] = HOLD
            previous = p
