"""Fine-tuning on the model's own play (needs torch): the trainable copy is the numba model, the loop runs."""

from __future__ import annotations

import numpy as np
import pytest

from chiptuner import cli
from chiptuner.model.arranger import (
    FIRST_NOTE,
    HOLD,
    REST,
    Arranger,
    ArrangerModel,
    bar_voice_flags,
    condition_rows,
    teacher_forced_log_prob,
)
from tests.helpers import random_tokens

torch = pytest.importorskip("torch", reason="tuning tests need torch: pip install 'chiptuner[train]'")
train = pytest.importorskip("chiptuner.train.arranger")
tune = pytest.importorskip("chiptuner.train.tune")

from tests.test_train import STYLES, random_net  # noqa: E402


def _random_model(seed: int = 3) -> ArrangerModel:
    return train.export(random_net(seed, hidden=16, embed=8).float(), metadata={"styles": STYLES})


@pytest.mark.parametrize("buttons", [False, True])
def test_the_trainable_copy_scores_every_token_as_the_numba_step(buttons):
    model = _random_model()
    net = tune.FoldedNet(model)
    rng = np.random.default_rng(1)
    n = 96
    tokens = random_tokens(rng, n)
    melody = np.where(rng.random(n) < 0.2, -1, rng.integers(0, 5, n) if buttons else rng.integers(48, 84, n))
    onset = rng.random(n) < 0.4
    position = np.arange(n) % 16
    expected = teacher_forced_log_prob(
        model, melody, onset, position, tokens, mode="buttons" if buttons else "keys", style="pop", energy="high"
    )
    lane = np.where(buttons, melody, -1)
    previous = np.concatenate((np.full((1, 4), REST), tokens[:-1]))
    rows = train.step_rows(melody, onset, lane, onset, position, previous, np.full(n, buttons))
    settings = condition_rows(STYLES.index("pop"), 2, bar_voice_flags(tokens, position))
    held = train._held_tokens(tokens)
    logits, _ = net(
        torch.from_numpy(np.concatenate((rows, settings), axis=-1)[None]),
        torch.from_numpy(train.pair_rows(tokens[:, :3], held[:, :3])[None]),
    )
    got = train.masked_log_prob(logits, torch.from_numpy(previous[None]), torch.from_numpy(tokens[None]))[0]
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_the_trainable_copy_exports_the_same_arrays_and_keeps_the_pair_mask():
    model = _random_model()
    net = tune.FoldedNet(model)
    exported = net.export()
    for name in ("in_table", "b_ih", "b_hh", "w_hh_t", "w_out_t", "b_out", "pair_table"):
        np.testing.assert_array_equal(getattr(exported, name), getattr(model, name), err_msg=name)
    with torch.no_grad():
        net.pair.add_(1.0)  # entries the mask holds at 0 (a voice on itself or on voices drawn before it)
    changed = net.export().pair_table
    assert ((changed != 0) == (net.pair_mask.numpy() != 0)).all()
    assert not net.gru.weight_ih_l0.requires_grad  # the GRU's input matrix stays the identity


@pytest.mark.parametrize("folded", [True, False])
def test_an_exported_model_keeps_its_weights_while_training_goes_on(folded):
    # A kept model is calibrated and saved after the last round: it must hold the kept round's weights.
    net = tune.FoldedNet(_random_model()) if folded else random_net(4, hidden=16, embed=8).float()
    exported = net.export() if folded else train.export(net)
    names = ("in_table", "b_ih", "b_hh", "w_hh_t", "w_out_t", "b_out", "pair_table")
    before = {name: np.array(getattr(exported, name)) for name in names}
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.5)
    for name in names:
        np.testing.assert_array_equal(getattr(exported, name), before[name], err_msg=name)
    later = net.export() if folded else train.export(net)
    assert not np.array_equal(later.b_hh, exported.b_hh) and not np.array_equal(later.w_hh_t, exported.w_hh_t)


def test_rollouts_are_the_numba_step_with_the_real_windows_settings(converted):
    from chiptuner.corpus.dataset import open_cache  # noqa: PLC0415

    corpus = open_cache(converted)
    song_style = np.zeros(len(corpus), dtype=np.int64)
    targets = train._targets(corpus, song_style)
    model = _random_model()
    rollouts = tune._Rollouts(corpus, targets, np.arange(len(corpus)), STYLES, np.array([4.0, 8.0]), 64, seed=0)
    played = rollouts.play(model, 6, round_index=1)
    batch, free = played["batch"], played["free"]
    assert batch["target"].shape == (6, 64, 4) and free.shape == (6, 64, 4)
    assert len(played["real"]) == len(played["model"]) == 6 and played["model"][0].shape[0] == 2  # 2-bar windows
    # the previous-token inputs are the drawn tokens one step late, from silence
    assert (batch["previous"][:, 0] == REST).all()
    np.testing.assert_array_equal(batch["previous"][:, 1:], batch["target"][:, :-1])
    # a voice the window's setting turns off rests and is not trained on; the player's lead notes are not either
    assert (batch["target"][:, :, 1:][~free[:, :, 1:]] == REST).all()
    assert (batch["target"][:, :, 0][~free[:, :, 0]] >= FIRST_NOTE).all()
    # the log-probabilities of the drawn tokens are finite where the model chose them
    logits, _ = tune.FoldedNet(model)(torch.from_numpy(batch["rows"]), torch.from_numpy(batch["pair_rows"]))
    log_prob = train.masked_log_prob(logits, torch.from_numpy(batch["previous"]), torch.from_numpy(batch["target"]))
    assert torch.isfinite(log_prob[torch.from_numpy(free)]).all()
    # each window's band faults are those of its drawn tokens under its settings
    assert len(played["faults"]) == 6
    for i in range(6):
        np.testing.assert_array_equal(played["faults"][i], tune.band_faults(batch["target"][i], free[i, :, 1:]))
    corpus.release()


def test_band_faults_by_hand():
    tokens = np.zeros((64, 4), dtype=np.int64)
    tokens[0, 1], tokens[1:, 1] = FIRST_NOTE + 3, HOLD  # pulse2: one note from the start, held on and on
    tokens[:, 2] = FIRST_NOTE  # the triangle starts a note on every step
    on = np.ones((64, 3), dtype=bool)
    # window 0: pulse2 started its note there, the noise is on and silent; window 1: pulse2 holds through
    assert tune.band_faults(tokens, on).tolist() == [[False, False, False, True], [False, True, False, True]]
    on[:, 2] = False  # the noise turned off: its silence is no fault
    on[40:, 0] = False  # pulse2 off for the last bar: still on in window 1, and holding through it
    assert tune.band_faults(tokens, on).tolist() == [[False] * 4, [False, True, False, False]]
    tokens[:, 0] = HOLD  # a lead held through a window is a fault too (a drum voice never is)
    tokens[:, 3] = HOLD
    assert tune.band_faults(tokens, on)[:, [0, 3]].tolist() == [[True, False], [True, False]]
    assert tune.band_faults(tokens[:40], on[:40]).shape == (1, 4)  # whole windows only
    with pytest.raises(Exception, match="band_penalty"):
        tune.TuneConfig(band_penalty=-1.0).check()
    with pytest.raises(Exception, match="run_percentile"):
        tune.TuneConfig(run_percentile=0.0).check()


def test_band_faults_count_a_pitch_repeated_past_its_limit():
    tokens = np.full((96, 4), REST, dtype=np.int64)
    tokens[::2, 2] = FIRST_NOTE + 5  # the triangle: one pitch on every other step, 48 notes in a row
    tokens[::4, 1] = FIRST_NOTE + np.arange(24) % 2  # pulse2 alternates two pitches: runs of 1
    tokens[::2, 3] = FIRST_NOTE  # the drums repeat freely
    on = np.ones((96, 3), dtype=bool)
    plain = tune.band_faults(tokens, on)
    assert not plain.any()
    # a limit of 20 notes: the 21st starts at step 40 (window 1), every later one faults too
    limited = tune.band_faults(tokens, on, np.array([20.0, 20.0, 20.0]))
    assert limited[:, 2].tolist() == [False, True, True] and not limited[:, [0, 1, 3]].any()
    # a rest between notes does not end a run; a note of another pitch does: runs of 25 (to step 48) and 22
    tokens[50, 2] = FIRST_NOTE + 7
    assert tune.band_faults(tokens, on, np.array([20.0, 20.0, 25.0]))[:, 2].tolist() == [False] * 3
    assert tune.band_faults(tokens, on, np.array([20.0, 20.0, 24.0]))[:, 2].tolist() == [False, True, False]
    assert tune.band_faults(tokens, on, np.array([20.0, 20.0, 21.0]))[:, 2].tolist() == [False, True, True]


def test_tune_keeps_the_best_validation_model_and_resumes(converted, tmp_path, capsys):
    trained = tmp_path / "model.npz"
    # 20% validation songs: the two-sample test folds by song and needs at least 5.
    config = train.TrainConfig(hidden=16, embed=8, window=32, batch=8, eval_every=5, max_batches=10, val_size=0.2)
    start = train.train(converted, trained, config=config)
    out = tmp_path / "tuned.npz"
    # the command's defaults play 256-step windows: these 8-12 bar songs are refused in one line
    code = cli.main(["tune", str(trained), str(converted), "-o", str(out), "--minutes", "0.1"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == cli.EXIT_USAGE and len(errors) == 1 and "is 256 steps long" in errors[0]
    assert not out.exists()
    small = tune.TuneConfig(
        max_minutes=0.15, rollouts=4, rollout_steps=64, batch=4, refit_every=2, eval_every=3, val_songs=8,
        val_steps=64, max_nll_rise=10.0, max_holes_rise=1.0, max_stuck_rise=100.0,
    )  # fmt: skip
    reports = []
    tuned = tune.tune(trained, converted, out, config=small, progress=reports.append)
    # the discriminator was fitted and rewarded rollouts, their band faults counted
    assert reports and "reward" in reports[-1] and 0.0 <= reports[-1]["faults"] <= 1.0
    validated = [r for r in reports if "val_auc" in r]
    assert validated and all(0.0 <= r["val_auc"] <= 1.0 for r in validated)
    meta = tuned.metadata
    assert meta["tune"]["rounds"] in [0] + [r["round"] for r in validated]
    best = min([meta["tune"]["val_auc_before"]] + [r["val_auc"] for r in validated])
    assert meta["tune"].get("val_auc", meta["tune"]["val_auc_before"]) == pytest.approx(best)
    assert meta["test_songs"] == start.metadata["test_songs"] and "rest_bias_fit" in meta  # same split, calibrated
    assert ArrangerModel.load(out).metadata["tune"] == meta["tune"]
    tokens = Arranger(tuned).run(np.full(32, 60), np.arange(32) % 4 == 0, np.arange(32) % 16)
    assert tokens.shape == (32, 4)
    last = reports[-1]["round"]
    more = []
    tune.tune(trained, converted, out, config=small, resume=True, progress=more.append)
    assert more[0]["round"] > validated[-1]["round"] and more[-1]["round"] > last - 3


def test_tune_cli_refuses_a_model_without_its_split_in_one_line(converted, tmp_path, capsys):
    bare = _random_model()
    bare.save(tmp_path / "bare.npz")
    code = cli.main(["tune", str(tmp_path / "bare.npz"), str(converted), "-o", str(tmp_path / "out.npz")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "lists no energy_edges" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


def test_tune_keeps_no_model_whose_band_plays_less(converted, tmp_path, monkeypatch):
    trained = tmp_path / "model.npz"
    config = train.TrainConfig(hidden=16, embed=8, window=32, batch=8, eval_every=5, max_batches=10, val_size=0.2)
    train.train(converted, trained, config=config)
    checks = iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02] + [0.01] * 100)
    real_validation = tune._validation

    def validation(model, songs, real):
        figures = real_validation(model, songs, real)
        auc = next(checks)
        # every later model sounds "more real" by leaving a hole in one more arrangement
        return {**figures, "auc": auc, "holes": figures["holes"] + (0.0 if auc == 0.9 else 0.2)}

    monkeypatch.setattr(tune, "_validation", validation)
    small = tune.TuneConfig(
        max_minutes=0.1, rollouts=4, rollout_steps=64, batch=4, refit_every=2, eval_every=2, val_songs=8,
        val_steps=64, max_nll_rise=10.0,
    )  # fmt: skip
    reports = []
    tuned = tune.tune(trained, converted, tmp_path / "tuned.npz", config=small, progress=reports.append)
    assert any("val_auc" in r for r in reports)
    assert tuned.metadata["tune"]["rounds"] == 0  # every lower AUC came with holes: the start is kept


@pytest.mark.parametrize("carries_over", [False, True])
def test_a_kept_model_must_also_beat_the_start_on_the_songs_the_selection_never_reads(
    converted, tmp_path, monkeypatch, carries_over
):
    trained = tmp_path / "model.npz"
    config = train.TrainConfig(hidden=16, embed=8, window=32, batch=8, eval_every=5, max_batches=10, val_size=0.4)
    train.train(converted, trained, config=config)
    real_validation = tune._validation
    seen: list[int] = []  # the song lists in the order first tested: the selection's, then the confirming one
    selection_aucs = iter([0.9] + [0.9 - 0.01 * k for k in range(1, 200)])

    def validation(model, songs, real):
        figures = real_validation(model, songs, real)
        if id(songs) not in seen:
            seen.append(id(songs))
            return {**figures, "auc": 0.9}  # the start reads 0.9 on both
        if id(songs) == seen[0]:
            return {**figures, "auc": next(selection_aucs), "holes": 0.0, "stuck_p98": 0.0}
        return {**figures, "auc": 0.8 if carries_over else 0.95}

    monkeypatch.setattr(tune, "_validation", validation)
    small = tune.TuneConfig(
        max_minutes=0.1, rollouts=4, rollout_steps=64, batch=4, refit_every=2, eval_every=2, val_songs=6,
        val_steps=64, max_nll_rise=10.0,
    )  # fmt: skip
    reports = []
    tuned = tune.tune(trained, converted, tmp_path / "tuned.npz", config=small, progress=reports.append)
    assert len(seen) == 2 and tuned.metadata["tune"]["confirm_songs"] >= 5
    confirmed = [r["val_confirm_auc"] for r in reports if "val_confirm_auc" in r]
    assert confirmed  # every lower selection AUC was checked on the other songs
    if carries_over:
        assert tuned.metadata["tune"]["rounds"] > 0 and tuned.metadata["tune"]["val_confirm_auc"] == 0.8
    else:
        assert tuned.metadata["tune"]["rounds"] == 0  # the selection's gains did not carry over: the start is kept
