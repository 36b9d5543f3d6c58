"""Training the arranger with torch, and exporting it to the ``.npz`` the numba step plays.

The only module that imports torch. The network is the one ``model`` describes: the sum
of categorical input embeddings feeds a GRU; four heads read the GRU state plus a direct
linear path from the inputs. Everything before the nonlinearities is linear in the
embeddings, so the export folds embeddings, the GRU input matrix and the direct path into
one table of rows (``ArrangerModel.in_table``).

Why it does not collapse to silence or to one note (the two failures this design answers):

- The loss is the plain negative log-likelihood of the next token of every voice, rest
  and hold included, so the model is calibrated, and it is *sampled* (never argmax) when
  it plays: sampling a calibrated model reproduces the real density of notes, where the
  mode of a grid that is mostly holds and rests is silence.
- Hold is a token of its own (onset and duration are separate decisions) and impossible
  after a rest; a new note carries its pitch, so "hold the last note" is never confused
  with "repeat the last note".
- The model is fed its own previous outputs (teacher forcing in training), so it knows
  what it is playing and can leave it; and the current input step (never a future one)
  reaches the heads directly, so the lead can follow the player at once.
- Every evaluation arranges validation songs *free-running* through the exported numba
  step and reports the collapse metrics (accompaniment silence, onsets per bar, pitch
  classes per 4 bars) next to the real ones, so a collapse is visible while training.

Data: ``chiptuner convert`` shards, read through ``dataset.open_cache`` (uncompressed copies,
memory-mapped, so a corpus larger than memory trains); the songs are split by song
(``dataset.split_by_song``) into train, validation (early stopping) and test (never seen;
``chiptuner evaluate``).
Each training window is transposed by a random shift of -5..+6 and given to the model in
keys or buttons mode at random, so one model serves both input kinds.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from chiptuner import __version__
from chiptuner._kernels.arranger import N_ROWS, SAMPLING_ORDER
from chiptuner.corpus.dataset import (
    DEFAULT_TEST_SIZE,
    DEFAULT_VAL_SIZE,
    SHIFTS,
    Corpus,
    MappedCorpus,
    corpus_label,
    open_conversion,
    shift_tokens,
    songs_with_ids,
    source_folder,
    split_parts,
    transpose,
)
from chiptuner.errors import ParameterError
from chiptuner.model.arranger import (
    FIRST_NOTE,
    HOLD,
    MAX_POSITION,
    MAX_STYLES,
    N_TOKENS,
    PAIR_OFFSET,
    REST,
    ROW_OFFSET,
    TOKEN_OFFSET,
    VOICE_HIGH,
    VOICE_LOW,
    ArrangerModel,
    bar_voice_flags,
    condition_rows,
    voices_to_tokens,
)
from chiptuner.model.baselines import MarkovBaseline, RuleBasedArranger, UnigramBaseline
from chiptuner.model.calibration import calibrate, pool_free_run, pool_real, song_starts

__all__ = [
    "TrainConfig",
    "ArrangerNet",
    "export",
    "train",
    "split_songs",
    "song_tokens",
    "step_rows",
    "masked_log_prob",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of ``train`` (all stored in the model's metadata).

    Attributes
    ----------
    hidden : int
        GRU state size (128-256 steps in tens of microseconds on one core).
    embed : int
        Width of the input embeddings (folded away at export).
    window : int
        Steps per training window (16 per 4/4 bar).
    batch : int
        Windows per batch.
    lr : float
        Adam learning rate.
    max_minutes : float
        Wall-clock budget; the best model so far is kept when it runs out.
    eval_every : int
        Batches between validation rounds.
    max_batches : int
        Stop after this many batches (0: no limit but the time budget).
    patience : int
        Validation rounds without a better validation NLL before stopping; each such
        round halves the learning rate.
    test_size, val_size : float
        Fractions of song groups held out for the final test and for early stopping.
    sampled_inputs : float
        Free-running training (scheduled sampling): at most this share of the previous-token
        inputs are the model's own samples instead of the real ones, so that it learns to go
        on from its own mistakes; 0 trains teacher-forced only.
    sampled_ramp : int
        Batches over which that share rises from 0 to ``sampled_inputs``.
    voice_dropout : float
        Share of training windows in which one accompaniment voice, chosen at random, is
        left out: its setting is off, its targets and inputs are rests, and the others
        keep their real parts. The reductions almost never leave the bass out while the
        harmony plays (0.08% of bars), so without this a player's ``--voices
        pulse2,noise`` would be a combination the model never saw.
    seed : int
    """

    hidden: int = 192
    embed: int = 96
    window: int = 128
    batch: int = 64
    lr: float = 2e-3
    max_minutes: float = 20.0
    eval_every: int = 200
    patience: int = 5
    max_batches: int = 0
    test_size: float = DEFAULT_TEST_SIZE
    val_size: float = DEFAULT_VAL_SIZE
    sampled_inputs: float = 0.25
    sampled_ramp: int = 2000
    voice_dropout: float = 0.2
    seed: int = 0

    def check(self) -> None:
        """Raise ParameterError for a value no training can use."""
        for name in ("hidden", "embed", "window", "batch", "eval_every", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ParameterError(f"{name} is {value!r}; it must be a whole number above 0")
        if not 0 <= self.voice_dropout < 1:
            raise ParameterError(f"voice_dropout {self.voice_dropout} must be a fraction from 0 to under 1")
        if not 0 <= self.sampled_inputs < 1 or not isinstance(self.sampled_ramp, int) or self.sampled_ramp < 1:
            raise ParameterError(
                f"sampled_inputs {self.sampled_inputs} must be a fraction from 0 to under 1 and sampled_ramp "
                f"{self.sampled_ramp} a whole number above 0"
            )
        if not self.lr > 0 or not self.max_minutes > 0:
            raise ParameterError(f"lr {self.lr} and max_minutes {self.max_minutes} must be above 0")
        if not (0 < self.test_size < 1 and 0 < self.val_size < 1 and self.test_size + self.val_size < 1):
            raise ParameterError(
                f"test_size {self.test_size} and val_size {self.val_size} must be fractions summing under 1"
            )


def _pitch_class_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which input rows and output tokens are pitches, and their pitch class and octave.

    Returns ``row_class`` (R,) and ``row_octave`` (R,) for the input rows (melody pitches
    and the pitched voices' previous notes; -1 elsewhere), and ``token_class`` (V,): for a
    pitched voice's note token ``12 * voice + pitch class``, -1 elsewhere.
    """
    n_rows, n_out = int(ROW_OFFSET[-1]), int(TOKEN_OFFSET[-1])
    row_class, row_octave = np.full(n_rows, -1), np.full(n_rows, -1)
    pitches = np.arange(128)
    row_class[ROW_OFFSET[0] + 1 + pitches], row_octave[ROW_OFFSET[0] + 1 + pitches] = pitches % 12, pitches // 12
    token_class = np.full(n_out, -1)
    for v in range(3):
        voice_pitches = np.arange(VOICE_LOW[v], VOICE_HIGH[v] + 1)
        rows = ROW_OFFSET[5 + v] + FIRST_NOTE + np.arange(len(voice_pitches))
        row_class[rows], row_octave[rows] = voice_pitches % 12, voice_pitches // 12
        token_class[TOKEN_OFFSET[v] + FIRST_NOTE + np.arange(len(voice_pitches))] = 12 * v + voice_pitches % 12
    return row_class, row_octave, token_class


def _pair_maps() -> tuple[np.ndarray, np.ndarray, int]:
    """Which ``pair_table`` entries exist, and which share an interval weight.

    Returns ``mask`` (P, V): 1 where the row's voice is drawn before the column's voice
    (``SAMPLING_ORDER``); ``interval`` (P, V): for a pitched row (a new or held note) and a
    later pitched voice's note token, the index of their (voice pair, interval mod 12)
    weight, -1 elsewhere; and the number of such weights.
    """
    n_pair, n_out = int(PAIR_OFFSET[-1]), int(TOKEN_OFFSET[-1])
    mask = np.zeros((n_pair, n_out), dtype=np.float32)
    interval = np.full((n_pair, n_out), -1, dtype=np.int64)
    order = list(SAMPLING_ORDER)
    pairs = [(u, v) for u in range(3) for v in range(3) if order.index(u) < order.index(v)]
    for u in range(3):
        n_u = N_TOKENS[u]
        block = slice(int(PAIR_OFFSET[u]), int(PAIR_OFFSET[u + 1]))
        # Row pitches: new notes (rows FIRST_NOTE..n_u-1), then held notes (rows n_u..).
        row_pitch = np.full(2 * n_u - FIRST_NOTE, -1)
        notes = np.arange(n_u - FIRST_NOTE)
        row_pitch[FIRST_NOTE + notes] = VOICE_LOW[u] + notes
        row_pitch[n_u + notes] = VOICE_LOW[u] + notes
        for v in range(4):
            if order.index(v) <= order.index(u):
                continue
            columns = slice(int(TOKEN_OFFSET[v]), int(TOKEN_OFFSET[v + 1]))
            mask[block, columns] = 1.0
            if v < 3:
                column_pitch = np.full(N_TOKENS[v], -1)
                column_pitch[FIRST_NOTE:] = VOICE_LOW[v] + np.arange(N_TOKENS[v] - FIRST_NOTE)
                index = 12 * pairs.index((u, v)) + (column_pitch[None, :] - row_pitch[:, None]) % 12
                valid = (row_pitch[:, None] >= 0) & (column_pitch[None, :] >= 0)
                interval[block, columns] = np.where(valid, index, -1)
    return mask, interval, 12 * len(pairs)


class ArrangerNet(nn.Module):
    """The arranger network in torch (batch form of ``_kernels.arranger.step``).

    The inputs are the same rows the numba step gathers (``ROW_OFFSET`` layout, made by
    ``_batch_inputs`` as ``_kernels.arranger.input_rows`` makes them): one summed
    embedding bag per step feeds the GRU and, through ``direct``, the heads.

    Harmony is a matter of pitch classes, whatever the octave: every pitch row's
    embedding is its own vector plus a pitch-class and an octave vector shared with the
    other pitches, and every note token's output weights add a per-voice pitch-class part.
    These shared parts are sums, so ``effective_weights`` folds them away and the exported
    model has the plain layout.

    Within a step the voices are drawn in ``SAMPLING_ORDER``, and each voice's token adds a
    row of ``pair_table`` to the later voices' logits (a full table plus a weight per voice
    pair and interval, shared by every pitch; folded the same way). Training passes the
    real tokens of the step as those rows (``pair_rows``), so the log-probabilities of a
    step's four voices sum to its joint log-probability.
    """

    def __init__(self, hidden: int = 192, embed: int = 96) -> None:
        super().__init__()
        n_rows, n_out = int(ROW_OFFSET[-1]), int(TOKEN_OFFSET[-1])
        self.embedding = nn.Parameter(torch.randn(n_rows, embed) * 0.5)
        self.class_embedding = nn.Parameter(torch.randn(12, embed) * 0.5)
        self.octave_embedding = nn.Parameter(torch.randn(11, embed) * 0.5)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)
        self.head_class = nn.Linear(hidden, 36)
        self.direct = nn.Linear(embed, n_out, bias=False)
        self.direct_class = nn.Linear(embed, 36, bias=False)
        pair_mask, pair_interval, n_intervals = _pair_maps()
        self.pair = nn.Parameter(torch.zeros(int(PAIR_OFFSET[-1]), n_out))
        self.pair_interval = nn.Parameter(torch.zeros(n_intervals))
        self.register_buffer("pair_mask", torch.from_numpy(pair_mask), persistent=False)
        self.register_buffer("pair_interval_index", torch.from_numpy(pair_interval), persistent=False)
        row_class, row_octave, token_class = _pitch_class_maps()
        self.register_buffer("row_class", torch.from_numpy(row_class), persistent=False)
        self.register_buffer("row_octave", torch.from_numpy(row_octave), persistent=False)
        self.register_buffer("token_class", torch.from_numpy(token_class), persistent=False)

    def effective_weights(self) -> dict[str, torch.Tensor]:
        """Input table (R, E), head weight (V, H) and bias (V,), direct weight (V, E) and pair table (P, V).

        The shared parts are added in: what the export folds into the plain layout.
        """
        has_class = (self.row_class >= 0).unsqueeze(-1)
        table = self.embedding + has_class * (
            self.class_embedding[self.row_class.clamp(min=0)] + self.octave_embedding[self.row_octave.clamp(min=0)]
        )
        is_note = (self.token_class >= 0).unsqueeze(-1)
        index = self.token_class.clamp(min=0)
        return {
            "table": table,
            "head_weight": self.head.weight + is_note * self.head_class.weight[index],
            "head_bias": self.head.bias + is_note[:, 0] * self.head_class.bias[index],
            "direct_weight": self.direct.weight + is_note * self.direct_class.weight[index],
            "pair_table": self.pair_mask
            * (self.pair + (self.pair_interval_index >= 0) * self.pair_interval[self.pair_interval_index.clamp(min=0)]),
        }

    def forward(
        self, rows: torch.Tensor, pair_rows: torch.Tensor | None = None, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, L, V) and the last state, from input rows (B, L, N_ROWS + N_CONDITIONS).

        With ``pair_rows`` (B, L, 3): the ``pair_table`` rows of the step's pulse1, pulse2
        and triangle tokens, each voice's logits given the voices drawn before it; without,
        the logits before any voice is drawn.
        """
        w = self.effective_weights()
        batch, length, n_rows = rows.shape
        x = nn.functional.embedding_bag(rows.reshape(batch * length, n_rows), w["table"], mode="sum")
        x = x.reshape(batch, length, -1)
        out, h = self.gru(x, h0)
        logits = nn.functional.linear(out, w["head_weight"], w["head_bias"])
        logits = logits + nn.functional.linear(x, w["direct_weight"])
        if pair_rows is not None:
            flat = pair_rows.reshape(batch * length, 3)
            logits = logits + nn.functional.embedding_bag(flat, w["pair_table"], mode="sum").reshape(logits.shape)
        return logits, h


def owned_array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 copy of ``tensor``, owned by the array.

    ``.numpy()`` of a float32 CPU parameter shares its memory: an exported model would go on
    changing as training steps the parameter in place.
    """
    return tensor.detach().float().cpu().numpy().copy()


def export(net: ArrangerNet, *, metadata: dict | None = None, extras: dict | None = None) -> ArrangerModel:
    """Fold a trained ``ArrangerNet`` into the plain arrays of an ``ArrangerModel`` (copies: training may go on)."""
    with torch.no_grad():
        w = {name: value.double() for name, value in net.effective_weights().items()}
        table = w["table"]
        in_table = torch.cat((table @ net.gru.weight_ih_l0.double().T, table @ w["direct_weight"].T), dim=1)
        return ArrangerModel(
            in_table=owned_array(in_table),
            b_ih=owned_array(net.gru.bias_ih_l0),
            b_hh=owned_array(net.gru.bias_hh_l0),
            w_hh_t=owned_array(net.gru.weight_hh_l0.T),
            w_out_t=owned_array(w["head_weight"].T),
            b_out=owned_array(w["head_bias"]),
            pair_table=owned_array(w["pair_table"]),
            metadata=dict(metadata or {}),
            extras=dict(extras or {}),
        )


def masked_log_prob(logits: torch.Tensor, previous: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log p of ``target`` (B, L, 4) per voice, hold masked after a rest (as the numba step scores)."""
    out = []
    for v in range(4):
        voice = logits[..., int(TOKEN_OFFSET[v]) : int(TOKEN_OFFSET[v + 1])]
        after_rest = (previous[..., v] == REST).unsqueeze(-1)
        hold = torch.zeros_like(voice, dtype=torch.bool)
        hold[..., HOLD] = True
        voice = voice.masked_fill(hold & after_rest, float("-inf"))
        out.append(torch.log_softmax(voice, dim=-1).gather(-1, target[..., v : v + 1]).squeeze(-1))
    return torch.stack(out, dim=-1)


def song_tokens(corpus: Corpus) -> np.ndarray:
    """Tokens (N, 4) of every song of a corpus, each song encoded on its own."""
    out = np.zeros((corpus.n_steps, 4), dtype=np.int16)
    pitch, onset = corpus.steps["voice_pitch"], corpus.steps["voice_onset"]
    for start, end in zip(corpus.offsets[:-1].tolist(), corpus.offsets[1:].tolist(), strict=True):
        out[start:end] = voices_to_tokens(pitch[start:end], onset[start:end])
    return out


def split_songs(corpus: Corpus, config: TrainConfig) -> dict[str, np.ndarray]:
    """Song indices of the train, validation and test parts (``dataset.split_parts`` with the config's shares)."""
    return split_parts(corpus.song_ids, test_size=config.test_size, val_size=config.val_size, seed=config.seed)


@dataclass(frozen=True)
class _Targets:
    """Per step of the whole corpus, what training windows read besides the corpus's own arrays.

    ``tokens`` (N, 4) the real tokens; ``held`` (N, 4) the note token each voice sounds
    after the step (a hold is read as its note; the ``pair_table`` row of a hold);
    ``voice_on`` (N, 3) whether pulse2, triangle and noise sound in the step's bar;
    ``song_style`` (songs,) each song's style row.
    """

    tokens: np.ndarray
    held: np.ndarray
    voice_on: np.ndarray
    song_style: np.ndarray


def _held_tokens(tokens: np.ndarray) -> np.ndarray:
    """The note token each voice sounds after each step: a hold takes the token of the note it holds."""
    held = np.array(tokens, dtype=np.int64)
    steps = np.arange(len(held))
    for v in range(4):
        last_decision = np.maximum.accumulate(np.where(held[:, v] != HOLD, steps, 0))
        held[:, v] = held[last_decision, v]
    return held


def _targets(corpus: MappedCorpus, song_style: np.ndarray) -> _Targets:
    tokens = np.asarray(corpus.tokens)
    song_start = np.zeros(corpus.n_steps, dtype=bool)
    song_start[corpus.offsets[:-1][corpus.offsets[:-1] < corpus.n_steps]] = True
    flags = bar_voice_flags(tokens, corpus.steps["step_in_bar"], song_start)
    return _Targets(tokens, _held_tokens(tokens).astype(np.int16), flags, song_style)


def song_styles(song_ids: np.ndarray, styles: dict[str, str] | None = None) -> tuple[list[str], np.ndarray]:
    """The style names and each song's style row: ``styles`` maps a source folder to a style.

    A folder not in ``styles`` takes its corpus label (``dataset.corpus_label``: ``chip``
    for ``vgmusic_nes_gb``, ``pop``, ``chorale``, else the folder's own name).
    """
    styles = dict(styles or {})
    per_song = [styles.get(source_folder(song), corpus_label(song)) for song in song_ids]
    names = sorted(set(per_song), key=lambda name: (name != "chip", name))
    if len(names) > MAX_STYLES:
        raise ParameterError(
            f"{len(names)} styles ({', '.join(names)}); a model holds at most {MAX_STYLES}: map sources to fewer "
            "with --style SOURCE=STYLE"
        )
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[name] for name in per_song], dtype=np.int64)


def _styled_songs(corpus: Corpus, indices: np.ndarray, names: list[str], song_style: np.ndarray) -> list[dict]:
    """The songs at ``indices`` (``dataset.songs_with_ids``), each with the ``"style"`` it trains as."""
    songs = songs_with_ids(corpus, indices)
    return [{**song, "style": names[song_style[i]]} for i, song in zip(indices, songs, strict=True)]


def window_energy(target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Accompaniment onsets per 16-step bar of each window (B, L, 4) over its valid steps."""
    onsets = ((target[..., 1:] >= FIRST_NOTE).sum(-1) * valid).sum(-1)
    return onsets / np.maximum(valid.sum(-1) / 16.0, 1e-9)


class _Windows:
    """Random training windows: song choice by length, random start, shift and input mode."""

    def __init__(
        self,
        corpus: Corpus,
        targets: _Targets,
        songs: np.ndarray,
        window: int,
        seed: int,
        energy_edges: np.ndarray,
        voice_dropout: float = 0.0,
    ) -> None:
        self.corpus = corpus
        self.voice_dropout = voice_dropout
        self.targets = targets
        self.songs = songs
        self.window = window
        self.energy_edges = energy_edges
        self.rng = np.random.default_rng(seed)
        lengths = np.diff(corpus.offsets)[songs].astype(np.float64)
        self.p = lengths / lengths.sum()

    def index(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Songs (B,), global step indices (B, L) and validity (B, L) of random windows."""
        songs = self.rng.choice(self.songs, size=size, p=self.p)
        start = self.corpus.offsets[songs]
        length = np.diff(self.corpus.offsets)[songs]
        offset = (self.rng.random(size) * np.maximum(length - self.window + 1, 1)).astype(np.int64)
        index = (start + offset)[:, None] + np.arange(self.window)[None, :]
        valid = index < (start + length)[:, None]
        return songs, np.where(valid, index, start[:, None]), valid

    def batch(self, size: int) -> dict[str, np.ndarray]:
        songs, index, valid = self.index(size)
        shift = self.rng.choice(SHIFTS, size=size)
        buttons = self.rng.random(size) < 0.5
        dropped = np.where(self.rng.random(size) < self.voice_dropout, 1 + self.rng.integers(0, 3, size), -1)
        return _batch_inputs(self.corpus, self.targets, songs, index, valid, shift, buttons, self.energy_edges, dropped)


def energy_edges(windows: _Windows, songs: np.ndarray, n_windows: int = 4096) -> np.ndarray:
    """The terciles of accompaniment onsets per bar over random training windows of ``songs``."""
    sampler = _Windows(windows.corpus, windows.targets, songs, windows.window, 12345, np.zeros(2))
    _, index, valid = sampler.index(n_windows)
    rate = window_energy(windows.targets.tokens[index], valid)
    return np.quantile(rate, [1 / 3, 2 / 3])


def _batch_inputs(
    corpus: Corpus,
    targets: _Targets,
    songs: np.ndarray,
    index: np.ndarray,
    valid: np.ndarray,
    shift: np.ndarray,
    buttons: np.ndarray,
    edges: np.ndarray,
    dropped: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The integer inputs, targets and mask of windows given by global step indices (B, L).

    The settings are the real arrangement's: the song's style, the window's energy
    (``window_energy`` against ``edges``) and each bar's voices (``bar_voice_flags``).
    ``dropped`` (B,): a voice (1-3) left out of each window, -1 for none: it rests in the
    targets and the inputs and its setting is off; the energy stays the whole band's.
    """
    steps = corpus.steps
    target = targets.tokens[index].astype(np.int64)
    held = targets.held[index].astype(np.int64)
    previous = targets.tokens[np.maximum(index - 1, 0)].astype(np.int64)
    # The step before a song's first step is silence, whatever the previous song played.
    previous[np.isin(index, corpus.offsets[:-1])] = REST
    pitch = steps["melody_pitch"][index].astype(np.int64)
    for s in np.unique(shift).tolist():
        rows = shift == s
        if s:
            target[rows] = shift_tokens(target[rows], s)
            held[rows] = shift_tokens(held[rows], s)
            previous[rows] = shift_tokens(previous[rows], s)
            pitch[rows] = transpose({"melody_pitch": pitch[rows]}, s)["melody_pitch"]
    energy = np.searchsorted(edges, window_energy(target, valid), side="right")
    voice_on = targets.voice_on[index]
    if dropped is not None:
        for v in (1, 2, 3):
            out = dropped == v
            target[out, :, v] = REST
            held[out, :, v] = REST
            previous[out, :, v] = REST
            voice_on[out, :, v - 1] = False
    lane = steps["lane"][index].astype(np.int64)
    mode = np.broadcast_to(buttons[:, None], index.shape)
    rows = step_rows(
        pitch,
        steps["melody_onset"][index],
        lane,
        steps["lane_onset"][index],
        steps["step_in_bar"][index],
        previous,
        mode,
    )
    settings = condition_rows(targets.song_style[songs][:, None], energy[:, None], voice_on)
    return {
        "rows": np.concatenate((rows, settings), axis=-1),
        "pair_rows": pair_rows(target[..., :3], held[..., :3]),
        "previous": previous,
        "target": target,
        "mask": valid.astype(np.float32),
    }


def pair_rows(target: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The ``pair_table`` rows (..., 3) of pulse1, pulse2 and triangle tokens (``_kernels.arranger.pair_row``).

    ``held`` is the note token each voice sounds after the step (``_held_tokens``): a hold
    is heard as that note.
    """
    n = np.array(N_TOKENS[:3])
    return np.where(target == HOLD, PAIR_OFFSET[:3] + n + held - FIRST_NOTE, PAIR_OFFSET[:3] + target).astype(np.int64)


def step_rows(
    pitch: np.ndarray,
    pitch_onset: np.ndarray,
    lane: np.ndarray,
    lane_onset: np.ndarray,
    position: np.ndarray,
    previous: np.ndarray,
    buttons: np.ndarray,
) -> np.ndarray:
    """The ``in_table`` rows of many steps at once, as ``_kernels.arranger.input_rows`` makes one.

    Parameters
    ----------
    pitch, lane : np.ndarray [shape=(...), dtype=int]
        Melody pitch (-1 rest) and button lane (-1 none) of each step.
    pitch_onset, lane_onset : np.ndarray [shape=(...), dtype=bool]
    position : np.ndarray [shape=(...), dtype=int]
    previous : np.ndarray [shape=(..., 4), dtype=int]
        The previous step's tokens.
    buttons : np.ndarray [shape=(...), dtype=bool]
        Input mode of each step.

    Returns
    -------
    np.ndarray [shape=(..., N_ROWS), dtype=int64]
    """
    pitch = np.where((pitch >= 0) & (pitch < 128), pitch, -1).astype(np.int64)
    lane = np.where((lane >= 0) & (lane < 5), lane, -1).astype(np.int64)
    onset = np.where(buttons, lane_onset & (lane >= 0), pitch_onset & (pitch >= 0))
    rows = np.empty((*np.shape(pitch), N_ROWS), dtype=np.int64)
    rows[..., 0] = np.where(buttons, ROW_OFFSET[1] + lane + 1, ROW_OFFSET[0] + pitch + 1)
    rows[..., 1] = ROW_OFFSET[2] + onset
    rows[..., 2] = ROW_OFFSET[3] + buttons
    rows[..., 3] = ROW_OFFSET[4] + np.clip(np.asarray(position, dtype=np.int64), 0, MAX_POSITION)
    rows[..., 4:] = ROW_OFFSET[5:9] + previous
    return rows


def _to_torch(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.ascontiguousarray(value)).to(device) for key, value in batch.items()}


def _fixed_windows(
    corpus: Corpus, targets: _Targets, songs: np.ndarray, window: int, limit: int, buttons: bool, edges: np.ndarray
) -> dict[str, np.ndarray]:
    """Consecutive windows from the start of each song (at most ``limit``), for validation."""
    starts, valid_len, window_songs = [], [], []
    for song in songs.tolist():
        begin, end = int(corpus.offsets[song]), int(corpus.offsets[song + 1])
        for s in range(begin, end, window):
            starts.append(s)
            valid_len.append(min(window, end - s))
            window_songs.append(song)
            if len(starts) >= limit:
                break
        if len(starts) >= limit:
            break
    start = np.array(starts, dtype=np.int64)
    index = start[:, None] + np.arange(window)[None, :]
    valid = np.arange(window)[None, :] < np.array(valid_len)[:, None]
    index = np.where(valid, index, start[:, None])
    n = len(start)
    return _batch_inputs(
        corpus, targets, np.array(window_songs), index, valid, np.zeros(n, dtype=np.int64), np.full(n, buttons), edges
    )


def _with_own_samples(net: ArrangerNet, batch: dict[str, torch.Tensor], share: float) -> torch.Tensor:
    """The batch's input rows with ``share`` of the previous-token inputs replaced by the model's own samples.

    Scheduled sampling in one parallel pass: the model, teacher-forced, draws every step's
    tokens (each voice given the real tokens drawn before it), and a random ``share`` of
    (step, voice) inputs then read the drawn token of the step before instead of the real
    one. The targets stay real: the model learns to go back to the song from its own
    slips, which free-running play otherwise never shows it.
    """
    with torch.no_grad():
        logits, _ = net(batch["rows"], batch["pair_rows"])
        drawn = []
        for v in range(4):
            voice = logits[..., int(TOKEN_OFFSET[v]) : int(TOKEN_OFFSET[v + 1])].clone()
            voice[..., HOLD] = voice[..., HOLD].masked_fill(batch["previous"][..., v] == REST, float("-inf"))
            flat = torch.softmax(voice.reshape(-1, voice.shape[-1]), dim=-1)
            drawn.append(torch.multinomial(flat, 1).reshape(voice.shape[:-1]))
        drawn = torch.stack(drawn, dim=-1)
        rows = batch["rows"].clone()
        replace = torch.rand(drawn[:, :-1].shape, device=drawn.device) < share
        offsets = torch.from_numpy(np.array(ROW_OFFSET[5:9])).to(rows.device)
        rows[:, 1:, 4:8] = torch.where(replace, offsets + drawn[:, :-1], rows[:, 1:, 4:8])
    return rows


def _nll(net: ArrangerNet, batch: dict[str, torch.Tensor], chunk: int = 256) -> float:
    """Mean NLL per step and voice over the valid steps of fixed windows (state carried per window).

    Each voice is scored given the voices drawn before it, so 4x this is the joint NLL per step.
    """
    total, count = 0.0, 0.0
    with torch.no_grad():
        n = batch["target"].shape[0]
        for i in range(0, n, chunk):
            part = {key: value[i : i + chunk] for key, value in batch.items()}
            logits, _ = net(part["rows"], part["pair_rows"])
            log_prob = masked_log_prob(logits, part["previous"], part["target"])
            mask = part["mask"].unsqueeze(-1)
            total += float(-(log_prob * mask).sum())
            count += float(mask.sum()) * 4
    return total / max(count, 1.0)


def _each_song(corpus: Corpus, songs: np.ndarray, release_every: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """The songs one at a time; a mapped corpus lets go of the pages read every ``release_every`` songs.

    A pass over all training songs would otherwise leave the whole cache resident.
    """
    for n, index in enumerate(songs.tolist()):
        if n % release_every == 0 and isinstance(corpus, MappedCorpus):
            corpus.release()
        yield corpus.song(int(index))


def fit_baselines(corpus: Corpus, songs: np.ndarray) -> dict[str, np.ndarray]:
    """Fit the three baselines on the given songs; their arrays, prefixed, for the model file."""
    out: dict[str, np.ndarray] = {}
    for prefix, baseline in (
        ("unigram", UnigramBaseline()),
        ("markov", MarkovBaseline()),
        ("rules", RuleBasedArranger()),
    ):
        baseline.fit(_each_song(corpus, songs))
        out.update({f"{prefix}_{key}": value for key, value in baseline.to_arrays().items()})
    return out


ProgressCallback = Callable[[dict], None]


def train(
    converted_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    command: str = "",
    styles: dict[str, str] | None = None,
) -> ArrangerModel:
    """Train an arranger on converted shards and export the best model to ``out_path``.

    Parameters
    ----------
    converted_dir : str or os.PathLike
        Output folder of ``chiptuner convert``.
    out_path : str or os.PathLike
        The ``.npz`` to write (the best validation model, rewritten at every improvement);
        ``out_path + ".ckpt.pt"`` holds the torch state for ``resume``.
    config : TrainConfig
    resume : bool
        Continue from the checkpoint beside ``out_path``.
    progress : callable
        Called with a dict (batch, loss, elapsed_sec, steps_per_sec, and after validation
        rounds val_nll, best_val_nll and the free-run collapse figures).
    command : str
        The command line, recorded in the model's metadata.
    styles : dict of str to str, optional
        The style of each source folder (the first folder of a song id); a folder not
        named takes its corpus label (``song_styles``). The model lists the styles.

    Returns
    -------
    ArrangerModel
        The best model (by validation NLL), also written to ``out_path``.
    """
    config = config or TrainConfig()
    config.check()
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise ParameterError(f"{out_path.parent}: no such folder for the model; create it first")
    started = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    corpus = open_conversion(converted_dir, out_path)
    parts = split_songs(corpus, config)
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise ParameterError(
            f"{converted_dir}: {len(corpus)} songs are too few to split into train and validation; convert more files"
        )
    style_names, song_style = song_styles(corpus.song_ids, styles)
    targets = _targets(corpus, song_style)
    logger.info(
        "%d songs: %d train, %d validation, %d test (split by song); styles %s; %s",
        len(corpus), len(parts["train"]), len(parts["val"]), len(parts["test"]), ", ".join(style_names), device,
    )  # fmt: skip
    windows = _Windows(corpus, targets, parts["train"], config.window, config.seed, np.zeros(2))
    # Energy terciles of the chip corpus where there is one (the band a player asks "low" or
    # "high" of), else of all training songs.
    chip_train = parts["train"][song_style[parts["train"]] == 0] if style_names[0] == "chip" else parts["train"]
    edges = energy_edges(windows, chip_train if len(chip_train) else parts["train"])
    windows = _Windows(corpus, targets, parts["train"], config.window, config.seed, edges, config.voice_dropout)
    logger.info("energy edges (accompaniment onsets per bar): %.2f, %.2f", *edges)
    val_keys = _to_torch(_fixed_windows(corpus, targets, parts["val"], 256, 384, False, edges), device)
    val_buttons = _to_torch(_fixed_windows(corpus, targets, parts["val"], 256, 384, True, edges), device)
    free_run_val = parts["val"][:: max(len(parts["val"]) // 24, 1)][:24]
    free_run_songs = song_starts(_styled_songs(corpus, free_run_val, style_names, song_style), 512)
    free_run_real = pool_real(free_run_songs)

    net = ArrangerNet(config.hidden, config.embed).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    checkpoint = out_path.with_name(out_path.name + ".ckpt.pt")
    batch_index, best, bad_rounds, spent_sec = 0, math.inf, 0, 0.0
    if resume:
        if not checkpoint.is_file():
            raise ParameterError(f"{checkpoint}: no checkpoint to resume from; train without --resume")
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        batch_index, best, bad_rounds, spent_sec = (
            int(state["batch"]),
            float(state["best"]),
            int(state["bad_rounds"]),
            float(state["spent_sec"]),
        )
        logger.info("resumed at batch %d (best validation NLL %.4f)", batch_index, best)
    baselines = fit_baselines(corpus, parts["train"])
    # Every pass over the mapped corpus (the baselines read all training songs, each batch
    # its windows) is followed by a release, so what stays resident is the model's, not the corpus's.
    corpus.release()
    budget_sec = config.max_minutes * 60.0 - spent_sec
    best_model: ArrangerModel | None = None
    # The budget and the reported time run from the start of this call: loading the
    # shards and fitting the baselines count, as they do for the user waiting.
    loop_start = started
    running, trained_steps = 0.0, 0
    first_batch = time.monotonic()
    history: list[dict] = []
    while True:
        net.train()
        batch = _to_torch(windows.batch(config.batch), device)
        corpus.release()
        share = config.sampled_inputs * min(1.0, batch_index / config.sampled_ramp)
        if share > 0:
            batch["rows"] = _with_own_samples(net, batch, share)
        logits, _ = net(batch["rows"], batch["pair_rows"])
        log_prob = masked_log_prob(logits, batch["previous"], batch["target"])
        mask = batch["mask"].unsqueeze(-1)
        loss = -(log_prob * mask).sum() / (mask.sum() * 4)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        batch_index += 1
        trained_steps += int(batch["mask"].sum())
        loss_value = float(loss.detach())
        running = loss_value if batch_index == 1 else 0.98 * running + 0.02 * loss_value
        elapsed = time.monotonic() - loop_start
        report = {
            "batch": batch_index,
            "loss": running,
            "elapsed_sec": spent_sec + elapsed,
            "steps_per_sec": trained_steps / max(time.monotonic() - first_batch, 1e-9),
        }
        out_of_time = elapsed >= budget_sec or 0 < config.max_batches <= batch_index
        if batch_index % config.eval_every == 0 or out_of_time:
            net.eval()
            val_nll = _nll(net, val_keys)
            report["val_nll"] = val_nll
            report["val_nll_buttons"] = _nll(net, val_buttons)
            candidate = export(net, metadata={"styles": style_names, "style_sources": dict(styles or {})})
            report["free_run"] = {"model": pool_free_run(candidate, free_run_songs), "real": free_run_real}
            if val_nll < best - 1e-4:
                best, bad_rounds = val_nll, 0
                metadata = {
                    "chiptuner_version": __version__,
                    "torch_version": torch.__version__,
                    "trained_on": str(converted_dir),
                    "command": command,
                    "config": asdict(config),
                    "styles": style_names,
                    "style_sources": dict(styles or {}),
                    "energy_edges": [float(edge) for edge in edges],
                    "songs": {name: int(len(index)) for name, index in parts.items()},
                    # `chiptuner evaluate` and `calibrate` take exactly these songs, even from a
                    # conversion that has since gained or lost songs (which remakes another split).
                    "test_songs": [str(corpus.song_ids[i]) for i in parts["test"]],
                    "val_songs": [str(corpus.song_ids[i]) for i in parts["val"]],
                    "batch": batch_index,
                    "trained_steps": int(trained_steps),
                    "val_nll": val_nll,
                    "val_joint_nll": 4 * val_nll,
                    "val_nll_buttons": report["val_nll_buttons"],
                    "train_seconds": round(spent_sec + elapsed, 1),
                    "device": str(device),
                    "date": datetime.date.today().isoformat(),
                }
                best_model = export(net, metadata=metadata, extras=baselines)
                best_model.save(out_path)
            else:
                bad_rounds += 1
                for group in optimizer.param_groups:  # no progress at this step size: halve it
                    group["lr"] *= 0.5
            report["best_val_nll"] = best
            history.append({k: v for k, v in report.items() if k != "free_run"})
            torch.save(
                {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "batch": batch_index, "best": best,
                 "bad_rounds": bad_rounds, "spent_sec": spent_sec + elapsed},
                checkpoint,
            )  # fmt: skip
        if progress is not None:
            progress(report)
        if out_of_time or bad_rounds >= config.patience:
            logger.info(
                "stopped after %d batches: %s",
                batch_index,
                "time budget spent" if out_of_time else "no better validation NLL",
            )
            break
    if best_model is None:
        best_model = ArrangerModel.load(out_path)
    best_model = calibrate(best_model, _styled_songs(corpus, parts["val"], style_names, song_style))
    corpus.release()
    metadata = {**best_model.metadata, "train_seconds": round(spent_sec + time.monotonic() - loop_start, 1)}
    best_model = dataclasses.replace(best_model, metadata=metadata)
    best_model.save(out_path)
    logger.info(
        "trained in %.0f s (wall, with data loading); best validation NLL %.4f", time.monotonic() - started, best
    )
    return best_model
