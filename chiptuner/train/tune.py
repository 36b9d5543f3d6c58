"""Fine-tuning a trained arranger on its own free-running play, rewarded by a discriminator.

A model fitted by likelihood plays well one step ahead of the real song, yet free-running it
drifts into a band that a classifier tells from real chip music almost every time (the
classifier two-sample test of ``chiptuner.evaluate.c2st``). Here the model learns from what
it actually plays, as ReaLchords does with reinforcement learning:

1. **Rollouts.** Training songs' melodies are arranged free-running by the numba step
   (``model.arranger.Arranger``, sampling as trained: no rest biases, no steering), each
   window with its real song's settings (style, the window's energy bucket, and bar by bar
   the voices the real bar uses, as training reads them), from the song's start or from a
   bar line, in keys or buttons mode. A voice set on is judged against real bars where it
   plays, so sounding real never means leaving holes the player did not ask for.
2. **Discriminators.** Gradient-boosted classifiers (scikit-learn's
   ``HistGradientBoostingClassifier``) are refitted every ``refit_every`` rounds on the 2-bar
   windows of recent rollouts against the same songs' real four-voice reductions, on the
   window features of ``c2st.window_features``: one on every feature, and one per voice on
   its own features (pulse2's and the triangle's with the consonances). Each rollout window
   is scored by discriminators fitted *before* it was played: a voice's reward is the
   log-odds that the window is real on every feature plus on the voice's own, so each
   voice answers mostly for what it plays, less ``band_penalty`` where it breaks the band
   in that window (``band_faults``: left on and silent, holding one note throughout, or
   repeating one pitch for more notes in a row than nearly every real song does).
   Real songs rest and hold a lot, so without it the reward pays for the holes that the
   band's targets forbid.
3. **Policy gradient.** REINFORCE, each voice's reward standardised over the round's
   windows: the log-probability of every token the model drew in a window (not the lead
   notes the player forced, not a voice its setting turned off) is raised in proportion to
   its voice's advantage in that window. The
   plain NLL of real training windows (as ``train`` fits it, scheduled sampling included)
   is added to the loss in every round, so the model keeps its likelihood while it learns
   to sound real; the validation NLL is reported beside the validation test.
4. **Selection.** Every ``eval_every`` rounds the model arranges validation chip songs
   (never test songs) as trained and the classifier two-sample test of ``c2st`` is run on
   them; the model with the lowest AUC is kept, provided its validation NLL is within
   ``max_nll_rise`` of the starting model's, its voices never play or fall silent for 4
   bars no more often than the start's, its longest runs of one pitch stay within the real songs'
   (see ``TuneConfig``), and its AUC on the other validation chip songs (those the
   selection never reads) is below the start's there: the lowest of many AUCs on one set
   of songs is partly luck. It is then calibrated (``model.calibration.calibrate``).

The network is the exported model's own arrays, made trainable (``FoldedNet``): any model
file can be tuned, and exporting is a copy.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from chiptuner import __version__
from chiptuner._kernels.arranger import N_CONDITIONS
from chiptuner.corpus.dataset import model_songs, open_conversion, songs_with_ids
from chiptuner.errors import ParameterError
from chiptuner.evaluate import c2st
from chiptuner.evaluate.evaluation import AS_TRAINED
from chiptuner.metrics import pool, song_statistics, voice_presence
from chiptuner.model.arranger import (
    ACCOMPANIMENT,
    ENERGY_LEVELS,
    HOLD,
    REST,
    Arranger,
    ArrangerModel,
    condition_rows,
    load_model,
    tokens_to_arrangement,
)
from chiptuner.model.calibration import calibrate, pool_real, song_starts
from chiptuner.train.arranger import (
    _fixed_windows,
    _held_tokens,
    _nll,
    _pair_maps,
    _targets,
    _to_torch,
    _Windows,
    _with_own_samples,
    masked_log_prob,
    owned_array,
    pair_rows,
    song_styles,
    step_rows,
    window_energy,
)

__all__ = ["TuneConfig", "FoldedNet", "tune"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneConfig:
    """Settings of ``tune`` (stored in the model's metadata).

    Attributes
    ----------
    max_minutes : float
        Wall-clock budget of the fine-tuning rounds.
    lr : float
        Adam learning rate.
    rollouts : int
        Free-running windows per round.
    rollout_steps : int
        Steps per rollout window (a multiple of ``c2st.WINDOW_STEPS``).
    batch : int
        Real training windows per round for the likelihood term.
    reward_weight : float
        Weight of the policy-gradient term against the NLL term.
    band_penalty : float
        Taken off the reward of a voice in each 2-bar window where it breaks the band: its
        setting is on and it never sounds, or it holds one note through the whole window,
        or it repeats one pitch for more notes in a row than ``run_percentile`` of real
        songs do. The discriminators cannot pay for that: real songs rest and hold a lot
        (47% of real chip songs have a 4-bar hole), but a voice the player leaves on must
        play; and a round that sounds real by repeating a note in a few songs is refused.
    run_percentile : float
        Per pitched voice, this percentile over the rollouts' training songs (their first
        ``val_steps`` steps) of the longest run of notes of one pitch is the longest run
        the reward lets pass. Below 98 because the test is the p98 over songs of the
        longest run of any of three voices.
    refit_every : int
        Rounds between discriminator fits; each fit reads the last ``2 * refit_every`` rounds.
    eval_every : int
        Rounds between validation tests.
    val_songs : int
        Validation chip songs arranged for each test (their first ``val_steps`` steps).
    val_steps : int
    max_nll_rise : float
        A model whose validation NLL is more than this above the starting model's is not kept.
    max_holes_rise : float
        Nor one whose share of validation arrangements with a voice that never plays or falls
        silent for 4 bars is more than this above the start's,
    max_stuck_rise : float
        nor one whose p98 longest run of notes of one pitch is more than this fraction above the larger of the
        start's and the real validation songs' (the target: at most real's p98).
    seed : int
    """

    max_minutes: float = 40.0
    lr: float = 3e-4
    rollouts: int = 32
    rollout_steps: int = 256
    batch: int = 32
    reward_weight: float = 2.0
    band_penalty: float = 4.0
    run_percentile: float = 95.0
    refit_every: int = 10
    eval_every: int = 150
    val_songs: int = 160
    val_steps: int = 1024
    max_nll_rise: float = 0.02
    max_holes_rise: float = 0.01
    max_stuck_rise: float = 0.0
    seed: int = 0

    def check(self) -> None:
        """Raise ParameterError for a value no fine-tuning can use."""
        for name in ("rollouts", "batch", "refit_every", "eval_every", "val_songs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ParameterError(f"{name} is {value!r}; it must be a whole number above 0")
        for name in ("rollout_steps", "val_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < c2st.WINDOW_STEPS or value % c2st.WINDOW_STEPS:
                raise ParameterError(f"{name} is {value!r}; it must be a multiple of {c2st.WINDOW_STEPS}")
        if not 0 < self.run_percentile <= 100:
            raise ParameterError(f"run_percentile is {self.run_percentile!r}; it must be above 0 and at most 100")
        if not self.lr > 0 or not self.max_minutes > 0:
            raise ParameterError("lr and max_minutes must be above 0")
        if not (self.reward_weight >= 0 and self.band_penalty >= 0 and self.max_nll_rise >= 0):
            raise ParameterError("reward_weight, band_penalty and max_nll_rise must be at least 0")


class FoldedNet(nn.Module):
    """An exported ``ArrangerModel`` as a trainable torch module (the batch form of the numba step).

    The folded input table holds each row's GRU input, so the GRU's input matrix is the
    identity (fixed); the heads read the GRU state and the rows' direct part; the pair
    table is masked as ``ArrangerNet``'s, so a voice's token only reaches the voices drawn
    after it. ``forward`` takes and gives what ``ArrangerNet.forward`` does.
    """

    def __init__(self, model: ArrangerModel) -> None:
        super().__init__()
        hidden = model.hidden
        gates = 3 * hidden
        self.model = model
        self.in_gates = nn.Parameter(torch.from_numpy(np.array(model.in_table[:, :gates])))
        self.in_direct = nn.Parameter(torch.from_numpy(np.array(model.in_table[:, gates:])))
        self.gru = nn.GRU(gates, hidden, batch_first=True)
        with torch.no_grad():
            self.gru.weight_ih_l0.copy_(torch.eye(gates))
            self.gru.bias_ih_l0.copy_(torch.from_numpy(np.array(model.b_ih)))
            self.gru.weight_hh_l0.copy_(torch.from_numpy(np.array(model.w_hh_t.T)))
            self.gru.bias_hh_l0.copy_(torch.from_numpy(np.array(model.b_hh)))
        self.gru.weight_ih_l0.requires_grad_(False)
        self.w_out = nn.Parameter(torch.from_numpy(np.array(model.w_out_t.T)))
        self.b_out = nn.Parameter(torch.from_numpy(np.array(model.b_out)))
        self.pair = nn.Parameter(torch.from_numpy(np.array(model.pair_table)))
        self.register_buffer("pair_mask", torch.from_numpy(_pair_maps()[0]), persistent=False)

    def forward(
        self, rows: torch.Tensor, pair_rows: torch.Tensor | None = None, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, L, V) and the last state, from input rows (B, L, N_ROWS + N_CONDITIONS)."""
        batch, length, n_rows = rows.shape
        flat = rows.reshape(batch * length, n_rows)
        gates = nn.functional.embedding_bag(flat, self.in_gates, mode="sum").reshape(batch, length, -1)
        direct = nn.functional.embedding_bag(flat, self.in_direct, mode="sum").reshape(batch, length, -1)
        out, h = self.gru(gates, h0)
        logits = nn.functional.linear(out, self.w_out, self.b_out) + direct
        if pair_rows is not None:
            table = self.pair * self.pair_mask
            pairs = nn.functional.embedding_bag(pair_rows.reshape(batch * length, 3), table, mode="sum")
            logits = logits + pairs.reshape(logits.shape)
        return logits, h

    def export(self, metadata: dict | None = None) -> ArrangerModel:
        """The model with this module's weights, copied (metadata and extras kept unless ``metadata`` is given)."""
        with torch.no_grad():
            in_table = torch.cat((self.in_gates, self.in_direct), dim=1)
            return dataclasses.replace(
                self.model,
                in_table=owned_array(in_table),
                b_ih=owned_array(self.gru.bias_ih_l0),
                b_hh=owned_array(self.gru.bias_hh_l0),
                w_hh_t=owned_array(self.gru.weight_hh_l0.T),
                w_out_t=owned_array(self.w_out.T),
                b_out=owned_array(self.b_out),
                pair_table=owned_array(self.pair * self.pair_mask),
                metadata=dict(self.model.metadata if metadata is None else metadata),
            )


def _voice_columns() -> list[np.ndarray]:
    """The ``c2st.FEATURE_NAMES`` columns judged per voice: its own, and the consonances for pulse2 and the triangle."""
    names = c2st.FEATURE_NAMES
    consonance = [c for c, name in enumerate(names) if "consonance" in name]
    columns = []
    for v, voice in enumerate(("pulse1", "pulse2", "triangle", "noise")):
        own = [c for c, name in enumerate(names) if name.startswith(f"{voice}_") and "consonance" not in name]
        columns.append(np.array(own + (consonance if v in (1, 2) else []), dtype=np.int64))
    return columns


VOICE_COLUMNS = _voice_columns()


class _Discriminators:
    """Gradient-boosted classifiers of real against generated windows: one on every feature, one per voice."""

    def __init__(self, real: np.ndarray, fake: np.ndarray, seed: int) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415 (slow to import)

        x = np.nan_to_num(np.concatenate((real, fake)), nan=-1.0)
        y = np.r_[np.ones(len(real)), np.zeros(len(fake))]
        self.every = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x, y)
        self.voices = [
            HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x[:, columns], y)
            for columns in VOICE_COLUMNS
        ]

    def reward(self, features: np.ndarray) -> np.ndarray:
        """Per window and voice (W, 4): the log-odds that it is real on every feature plus on the voice's own."""
        x = np.nan_to_num(features, nan=-1.0)
        every = _log_odds(self.every.predict_proba(x)[:, 1])
        own = [
            _log_odds(d.predict_proba(x[:, columns])[:, 1])
            for d, columns in zip(self.voices, VOICE_COLUMNS, strict=True)
        ]
        return every[:, None] + np.stack(own, axis=1)


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def band_faults(tokens: np.ndarray, voice_on: np.ndarray, run_limits: np.ndarray | None = None) -> np.ndarray:
    """Per 2-bar window and voice (W, 4), whether the voice breaks the band there.

    A fault is an accompaniment voice whose setting is on somewhere in the window that
    never sounds in it, or any pitched voice that sounds one held note through the whole
    window (no note starts), or, given ``run_limits`` (3,), a pitched voice whose note
    starting in the window repeats the pitch of more than its limit of notes in a row (the
    "stuck notes" of ``metrics.song_statistics``). ``tokens`` (T, 4); ``voice_on`` (T, 3)
    the accompaniment voices' settings per step.
    """
    windows = len(tokens) // c2st.WINDOW_STEPS
    used = windows * c2st.WINDOW_STEPS
    token = np.asarray(tokens)[:used].reshape(windows, c2st.WINDOW_STEPS, 4)
    on = np.asarray(voice_on, dtype=bool)[:used].reshape(windows, c2st.WINDOW_STEPS, 3).any(axis=1)
    sounds = (token != REST).any(axis=1)
    # Held through: every step a hold, the first included (the note started before the window).
    faults = (token == HOLD).all(axis=1)
    faults[:, 3] = False  # a drum hit has no length to hold
    faults[:, 1:] |= on & ~sounds[:, 1:]
    if run_limits is not None and used:
        arranged = tokens_to_arrangement(np.asarray(tokens)[:used])
        for v, limit in enumerate(run_limits):
            steps = np.flatnonzero(arranged.onset[:, v] & (arranged.pitch[:, v] >= 0))
            pitch = arranged.pitch[steps, v]
            count = np.arange(len(steps))
            first = np.maximum.accumulate(np.where(np.r_[True, pitch[1:] != pitch[:-1]], count, 0))
            faults[steps[count - first + 1 > limit] // c2st.WINDOW_STEPS, v] = True
    return faults


def _window_features(tokens: np.ndarray, position: np.ndarray) -> np.ndarray:
    arranged = tokens_to_arrangement(tokens)
    return c2st.window_features(arranged.pitch, arranged.onset, position)


class _Rollouts:
    """Free-running windows of training songs, each with its real song's settings and real features."""

    def __init__(
        self, corpus, targets, songs: np.ndarray, styles: list[str], edges: np.ndarray, steps: int, seed: int,
        run_limits: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.corpus, self.targets, self.songs, self.styles = corpus, targets, songs, styles
        self.edges, self.steps, self.run_limits = edges, steps, run_limits
        self.rng = np.random.default_rng(seed)
        lengths = np.diff(corpus.offsets)[songs]
        self.songs = songs[lengths >= steps]
        weight = lengths[lengths >= steps].astype(np.float64)
        self.p = weight / weight.sum()

    def play(self, model: ArrangerModel, n: int, round_index: int) -> dict:
        """``n`` rollouts: their batch inputs for torch, which tokens were drawn, and both sides' features."""
        corpus, targets, steps = self.corpus, self.targets, self.corpus.steps
        songs = self.rng.choice(self.songs, size=n, p=self.p)
        index = np.zeros((n, self.steps), dtype=np.int64)
        drawn = np.zeros((n, self.steps, 4), dtype=np.int64)
        free = np.zeros((n, self.steps, 4), dtype=bool)
        buttons = self.rng.random(n) < 0.5
        real_features, model_features, faults = [], [], []
        settings = np.zeros((n, self.steps, N_CONDITIONS), dtype=np.int64)
        for i, song in enumerate(songs.tolist()):
            begin, end = int(corpus.offsets[song]), int(corpus.offsets[song + 1])
            start = begin
            if self.rng.random() < 0.5:  # else from a bar line inside the song
                bars = np.flatnonzero(steps["step_in_bar"][begin : end - self.steps + 1] == 0)
                if len(bars):
                    start = begin + int(self.rng.choice(bars))
            index[i] = np.arange(start, start + self.steps)
            real = targets.tokens[index[i]].astype(np.int64)
            energy = int(np.searchsorted(self.edges, window_energy(real[None], np.ones((1, self.steps)))[0], "right"))
            on = targets.voice_on[index[i]].astype(bool)  # each bar's voices, as training reads them
            position = steps["step_in_bar"][index[i]].astype(np.int64)
            melody = steps["lane" if buttons[i] else "melody_pitch"][index[i]].astype(np.int64)
            onset = steps["lane_onset" if buttons[i] else "melody_onset"][index[i]].astype(bool)
            arranger = Arranger(
                model, mode="buttons" if buttons[i] else "keys", seed=round_index * 1000 + i,
                style=self.styles[targets.song_style[song]], energy=ENERGY_LEVELS[min(energy, 2)], **AS_TRAINED,
            )  # fmt: skip
            # Bar by bar, each with its real bar's voices: a voice the real bar leaves out rests,
            # and one it plays is judged against real bars where it plays.
            bar_starts = np.flatnonzero(np.diff(on, axis=0).any(axis=1) | (np.diff(position) < 0)) + 1
            for begin_bar, end_bar in zip(np.r_[0, bar_starts], np.r_[bar_starts, self.steps], strict=True):
                voices = [name for name, o in zip(ACCOMPANIMENT, on[begin_bar], strict=True) if o]
                arranger.set_settings(voices=voices)
                drawn[i, begin_bar:end_bar] = arranger.run(
                    melody[begin_bar:end_bar], onset[begin_bar:end_bar], position[begin_bar:end_bar]
                )
            free[i, :, 1:] = on
            free[i, :, 0] = ~(onset & (melody >= 0))  # the lead's onsets are the player's
            settings[i] = condition_rows(targets.song_style[song], min(energy, 2), on)
            model_features.append(_window_features(drawn[i], position))
            faults.append(band_faults(drawn[i], on, self.run_limits))
            real_features.append(
                c2st.window_features(steps["voice_pitch"][index[i]], steps["voice_onset"][index[i]], position)
            )
        # The parallel pass reads the rollout as its real tokens: its log-probabilities are the rollout's.
        previous = np.concatenate((np.full((n, 1, 4), REST), drawn[:, :-1]), axis=1)
        held = np.stack([_held_tokens(d) for d in drawn])
        rows = step_rows(
            steps["melody_pitch"][index], steps["melody_onset"][index], steps["lane"][index],
            steps["lane_onset"][index], steps["step_in_bar"][index], previous,
            np.broadcast_to(buttons[:, None], index.shape),
        )  # fmt: skip
        batch = {
            "rows": np.concatenate((rows, settings), axis=-1),
            "pair_rows": pair_rows(drawn[..., :3], held[..., :3]),
            "previous": previous,
            "target": drawn,
        }
        return {"batch": batch, "free": free, "real": real_features, "model": model_features, "faults": faults}


ProgressCallback = Callable[[dict], None]


def _run_limits(corpus, songs: np.ndarray, config: TuneConfig) -> np.ndarray:
    """Per pitched voice (3,): ``config.run_percentile`` over ``songs`` of their longest run of notes of one pitch."""
    picked = songs[:: max(len(songs) // 400, 1)]  # 400 songs pin a p95 within a note or two, in seconds
    runs = [
        song_statistics(s["melody_pitch"], s["melody_onset"], s["voice_pitch"], s["voice_onset"]).longest_run
        for s in song_starts(songs_with_ids(corpus, picked), config.val_steps)
    ]
    return np.percentile(np.array(runs), config.run_percentile, axis=0) if runs else np.full(3, np.inf)


def _chip_index(styles: list[str]) -> int:
    return styles.index("chip") if "chip" in styles else 0


def _validation(model: ArrangerModel, songs: list[dict], real: list[np.ndarray]) -> dict:
    """``model`` playing ``songs`` as trained (keys mode, seed = song index, every voice on) against ``real``.

    ``auc``: the two-sample AUC; ``holes``: the share of arrangements where an accompaniment
    voice never plays or is silent ``metrics.HOLE_BARS`` bars or more after the start;
    ``stuck_p98``: the p98 over songs of the longest run of notes of one pitch in a pitched voice.
    """
    generated, presence, stats = [], [], []
    for i, song in enumerate(songs):
        tokens = Arranger(model, seed=i, style=song["style"], **AS_TRAINED).run(
            song["melody_pitch"], song["melody_onset"], song["step_in_bar"]
        )
        arranged = tokens_to_arrangement(tokens)
        generated.append(c2st.window_features(arranged.pitch, arranged.onset, song["step_in_bar"]))
        band = voice_presence(arranged.pitch, arranged.onset)
        presence.append(bool((band.never_plays[1:] | band.holes[1:]).any()))
        stats.append(song_statistics(song["melody_pitch"], song["melody_onset"], arranged.pitch, arranged.onset))
    ids = list(range(len(songs)))
    return {
        "auc": c2st.two_sample_auc(real, generated, groups=(ids, ids)),
        "holes": float(np.mean(presence)),
        "stuck_p98": float(pool(stats)["stuck_p98"]),
    }


def tune(
    model_path: str | os.PathLike,
    converted_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    config: TuneConfig | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    command: str = "",
) -> ArrangerModel:
    """Fine-tune the model at ``model_path`` on its free-running play and write the best to ``out_path``.

    Parameters
    ----------
    model_path : str or os.PathLike
        A model written by ``chiptuner train`` on ``converted_dir`` (its metadata lists the
        validation and test songs; every other song of the conversion is a training song).
    converted_dir : str or os.PathLike
        The conversion it was trained on.
    out_path : str or os.PathLike
        The ``.npz`` to write (the best model so far, rewritten at each improvement, then
        calibrated at the end); ``out_path + ".ckpt.pt"`` holds the state for ``resume``.
    config : TuneConfig
    resume : bool
        Continue from the checkpoint beside ``out_path``.
    progress : callable
        Called with a dict after every round (round, nll, reward, running_nll, running_reward,
        elapsed_sec, and after a validation test val_auc, val_nll, val_holes, val_stuck and
        best_val_auc, the AUC of the model kept so far).
    command : str
        The command line, recorded in the model's metadata.

    Returns
    -------
    ArrangerModel
        The kept model, calibrated.
    """
    config = config or TuneConfig()
    config.check()
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise ParameterError(f"{out_path.parent}: no such folder for the model; create it first")
    started = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    model = load_model(model_path)
    for field in ("energy_edges", "val_songs", "test_songs"):
        if field not in model.metadata:
            raise ParameterError(f"{model_path}: the model lists no {field}; tune a model written by `chiptuner train`")
    corpus = open_conversion(converted_dir, out_path)
    val = model_songs(model, corpus.song_ids, "val", converted_dir)
    test = model_songs(model, corpus.song_ids, "test", converted_dir)
    held_out = np.zeros(len(corpus), dtype=bool)
    held_out[val] = True
    held_out[test] = True
    train_songs = np.flatnonzero(~held_out)
    style_names, song_style = song_styles(corpus.song_ids, model.metadata.get("style_sources"))
    if style_names != list(model.styles):
        raise ParameterError(
            f"{converted_dir}: its songs make the styles {style_names}, the model has {list(model.styles)}; "
            "tune on the conversion the model was trained on"
        )
    chip = _chip_index(style_names)
    targets = _targets(corpus, song_style)
    edges = np.array(model.metadata["energy_edges"], dtype=np.float64)
    trained = model.metadata.get("config", {})
    windows = _Windows(
        corpus, targets, train_songs, int(trained.get("window", 128)), config.seed, edges,
        float(trained.get("voice_dropout", 0.2)),
    )  # fmt: skip
    chip_train = train_songs[song_style[train_songs] == chip]
    run_limits = _run_limits(corpus, chip_train, config)
    rollouts = _Rollouts(
        corpus, targets, chip_train, style_names, edges, config.rollout_steps, config.seed, run_limits
    )  # fmt: skip
    if len(rollouts.songs) == 0:
        raise ParameterError(
            f"{converted_dir}: no training song of style {style_names[chip]} is {config.rollout_steps} steps long "
            "(the rollouts' length); tune on a corpus of longer songs"
        )
    device = torch.device("cpu")
    val_keys = _to_torch(_fixed_windows(corpus, targets, val, 256, 384, False, edges), device)
    val_buttons = _to_torch(_fixed_windows(corpus, targets, val, 256, 384, True, edges), device)
    every_val_chip = val[song_style[val] == chip]
    val_chip = every_val_chip[:: max(len(every_val_chip) // config.val_songs, 1)][: config.val_songs]

    def chip_songs(indices: np.ndarray) -> tuple[list[dict], list[np.ndarray]]:
        songs = [
            {**song, "style": style_names[chip]}
            for song in song_starts(songs_with_ids(corpus, indices), config.val_steps)
        ]
        return songs, [c2st.window_features(s["voice_pitch"], s["voice_onset"], s["step_in_bar"]) for s in songs]

    val_songs, val_real = chip_songs(val_chip)
    # The lowest of many AUCs on one set of songs is partly luck: a kept model must also beat
    # the start on the validation chip songs the selection never reads.
    confirm_songs, confirm_real = chip_songs(np.setdiff1d(every_val_chip, val_chip))
    real_stuck = pool_real(val_songs)["stuck_p98"]
    if len(val_songs) < 5:
        raise ParameterError(f"{converted_dir}: {len(val_songs)} validation songs are too few for the two-sample test")
    logger.info(
        "tuning on %d training songs (%d %s for the rollouts, longest runs of one pitch let pass %s); "
        "%d validation songs for the test",
        len(train_songs), len(rollouts.songs), style_names[chip], run_limits.tolist(), len(val_songs),
    )  # fmt: skip

    net = FoldedNet(model)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    checkpoint = out_path.with_name(out_path.name + ".ckpt.pt")
    round_index, spent_sec = 0, 0.0
    start, start_nll = _validation(model, val_songs, val_real), _nll(net, val_keys)
    confirms = len(confirm_songs) >= 5
    start_confirm = _validation(model, confirm_songs, confirm_real)["auc"] if confirms else None
    start_auc = start["auc"]
    best_auc, best_round = start_auc, 0
    if resume:
        if not checkpoint.is_file():
            raise ParameterError(f"{checkpoint}: no checkpoint to resume from; tune without --resume")
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        round_index, spent_sec = int(state["round"]), float(state["spent_sec"])
        best_auc, best_round = float(state["best_auc"]), int(state["best_round"])
        logger.info("resumed at round %d (best validation AUC %.3f)", round_index, best_auc)
    logger.info(
        "start: validation AUC %.3f (%d songs; %s on %d others that confirm a kept model), NLL %.4f, holes %.3f, "
        "stuck p98 %.0f (real %.0f)",
        start_auc, len(val_songs), "-" if start_confirm is None else f"{start_confirm:.3f}", len(confirm_songs),
        start_nll, start["holes"], start["stuck_p98"], real_stuck,
    )  # fmt: skip

    def save(metadata_extra: dict) -> ArrangerModel:
        tuned = net.export()
        metadata = {
            **model.metadata, **metadata_extra, "chiptuner_version": __version__, "torch_version": torch.__version__,
            "date": datetime.date.today().isoformat(),
        }  # fmt: skip
        tuned = dataclasses.replace(tuned, metadata=metadata)
        tuned.save(out_path)
        return tuned

    kept: ArrangerModel | None = None
    if not out_path.is_file() or not resume:
        kept = save({
            "tune": {
                "command": command, "config": asdict(config), "rounds": 0, "val_auc_before": start_auc,
                "val_nll_before": start_nll, "val_confirm_auc_before": start_confirm,
                "confirm_songs": len(confirm_songs), "run_limits": run_limits.tolist(),
            },
        })  # fmt: skip
    budget_sec = config.max_minutes * 60.0 - spent_sec
    loop_start = time.monotonic()
    discriminator = None
    recent_real: list[np.ndarray] = []
    recent_model: list[np.ndarray] = []
    running_nll, running_reward = math.nan, math.nan
    while True:
        round_index += 1
        played = rollouts.play(net.export(), config.rollouts, round_index)
        per_rollout = played["model"][0].shape[0]
        recent_real.append(np.concatenate(played["real"]))
        recent_model.append(np.concatenate(played["model"]))
        del recent_real[: -2 * config.refit_every], recent_model[: -2 * config.refit_every]
        net.train()
        batch = _to_torch(windows.batch(config.batch), device)
        corpus.release()
        share = float(trained.get("sampled_inputs", 0.25))
        if share > 0:
            batch["rows"] = _with_own_samples(net, batch, share)
        logits, _ = net(batch["rows"], batch["pair_rows"])
        mask = batch["mask"].unsqueeze(-1)
        nll = -(masked_log_prob(logits, batch["previous"], batch["target"]) * mask).sum() / (mask.sum() * 4)
        loss = nll
        report: dict = {"round": round_index, "nll": float(nll.detach())}
        if discriminator is not None and config.reward_weight > 0:
            reward = discriminator.reward(recent_model[-1]).reshape(config.rollouts, per_rollout, 4)
            faults = np.stack(played["faults"])
            reward = reward - config.band_penalty * faults
            report["faults"] = float(faults[..., 1:].mean())
            advantage = (reward - reward.mean(axis=(0, 1))) / (reward.std(axis=(0, 1)) + 1e-6)
            rollout = _to_torch(played["batch"], device)
            logits, _ = net(rollout["rows"], rollout["pair_rows"])
            log_prob = masked_log_prob(logits, rollout["previous"], rollout["target"])
            free = torch.from_numpy(played["free"]).float()
            step_advantage = torch.from_numpy(np.repeat(advantage, c2st.WINDOW_STEPS, axis=1)).float()
            policy = -(step_advantage * log_prob * free).sum() / free.sum().clamp(min=1.0)
            loss = loss + config.reward_weight * policy
            report["reward"] = float(reward.mean()) / 2  # per discriminator
            previous = report["reward"] if math.isnan(running_reward) else running_reward
            running_reward = 0.95 * previous + 0.05 * report["reward"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        if round_index % config.refit_every == 0 or discriminator is None:
            discriminator = _Discriminators(np.concatenate(recent_real), np.concatenate(recent_model), config.seed)
        running_nll = report["nll"] if math.isnan(running_nll) else 0.95 * running_nll + 0.05 * report["nll"]
        elapsed = time.monotonic() - loop_start
        report.update(elapsed_sec=spent_sec + elapsed, running_nll=running_nll, running_reward=running_reward)
        out_of_time = elapsed >= budget_sec
        if round_index % config.eval_every == 0 or out_of_time:
            net.eval()
            checked = _validation(net.export(), val_songs, val_real)
            val_auc, val_nll = checked["auc"], _nll(net, val_keys)
            report.update(val_auc=val_auc, val_nll=val_nll, val_holes=checked["holes"], val_stuck=checked["stuck_p98"])
            # A band that sounds more real by leaving holes or holding notes longer is not kept.
            no_more_holes = checked["holes"] <= start["holes"] + config.max_holes_rise
            no_longer_notes = checked["stuck_p98"] <= max(start["stuck_p98"], real_stuck) * (1 + config.max_stuck_rise)
            keeps_the_band = no_more_holes and no_longer_notes
            better = val_auc < best_auc and val_nll <= start_nll + config.max_nll_rise and keeps_the_band
            if better and confirms:
                report["val_confirm_auc"] = _validation(net.export(), confirm_songs, confirm_real)["auc"]
                better = report["val_confirm_auc"] < start_confirm
            if better:
                best_auc, best_round = val_auc, round_index
                kept = save({
                    "val_nll": val_nll, "val_joint_nll": 4 * val_nll, "val_nll_buttons": _nll(net, val_buttons),
                    "tune": {
                        "command": command, "config": asdict(config), "rounds": round_index,
                        "val_auc_before": start_auc, "val_auc": val_auc, "val_nll_before": start_nll,
                        "val_holes_before": start["holes"], "val_holes": checked["holes"],
                        "val_stuck_p98_before": start["stuck_p98"], "val_stuck_p98": checked["stuck_p98"],
                        "val_confirm_auc_before": start_confirm, "val_confirm_auc": report.get("val_confirm_auc"),
                        "confirm_songs": len(confirm_songs), "run_limits": run_limits.tolist(),
                        "seconds": round(spent_sec + elapsed, 1),
                    },
                })  # fmt: skip
            report["best_val_auc"] = best_auc
            torch.save(
                {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "round": round_index,
                 "spent_sec": spent_sec + elapsed, "best_auc": best_auc, "best_round": best_round},
                checkpoint,
            )  # fmt: skip
        if progress is not None:
            progress(report)
        if out_of_time:
            break
    if kept is None:
        kept = ArrangerModel.load(out_path)
    styled_val = [
        {**song, "style": style_names[song_style[i]]} for i, song in zip(val, songs_with_ids(corpus, val), strict=True)
    ]
    kept = calibrate(kept, styled_val)
    kept.save(out_path)
    corpus.release()
    logger.info(
        "tuned in %.0f s; kept round %d: validation AUC %.3f (from %.3f)",
        time.monotonic() - started, best_round, best_auc, start_auc,
    )  # fmt: skip
    return kept
