"""Training and export (needs torch): the exported numba model equals the torch network."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types

import numpy as np
import pytest

from chiptuner import cli
from chiptuner._kernels import arranger as _k
from chiptuner.corpus import dataset
from chiptuner.corpus.dataset import load_shards, open_cache, open_conversion, shift_tokens, transpose
from chiptuner.model import calibration
from chiptuner.model.arranger import (
    CONDITION_BLOCK,
    ENERGY_LEVELS,
    FIRST_NOTE,
    HOLD,
    MAX_POSITION,
    MAX_STYLES,
    N_TOKENS,
    PAIR_OFFSET,
    REST,
    ROW_OFFSET,
    TOKEN_OFFSET,
    VOICE_LOW,
    ArrangerModel,
    bar_voice_flags,
    condition_rows,
    teacher_forced_log_prob,
)
from tests.helpers import random_tokens

torch = pytest.importorskip("torch", reason="training tests need torch: pip install 'chiptuner[train]'")
train = pytest.importorskip("chiptuner.train.arranger")


def test_step_rows_equal_the_kernel_rows():
    rng = np.random.default_rng(0)
    n = 500
    pitch = np.where(rng.random(n) < 0.2, -1, rng.integers(0, 128, n))
    lane = np.where(pitch >= 0, rng.integers(0, 5, n), -1)
    onset = rng.random(n) < 0.5
    position = rng.integers(-2, 40, n)
    previous = np.stack([rng.integers(0, k, n) for k in (51, 51, 39, 7)], axis=1)
    buttons = rng.random(n) < 0.5
    rows = train.step_rows(pitch, onset, lane, onset, position, previous, buttons)
    one = np.zeros(_k.N_ROWS, dtype=np.int64)
    for t in range(n):
        melody = lane[t] if buttons[t] else pitch[t]
        _k.input_rows(ROW_OFFSET, bool(buttons[t]), melody, onset[t], position[t], MAX_POSITION, previous[t], one)
        assert rows[t].tolist() == one.tolist()


STYLES = ["chip", "pop", "chorale"]


def random_net(seed: int, hidden: int = 24, embed: int = 12):
    """An ArrangerNet with every parameter moved off its init (the pair tables start at zero), in float64.

    Its weights are exactly what the float32 export holds.
    """
    torch.manual_seed(seed)
    net = train.ArrangerNet(hidden=hidden, embed=embed).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.4)
    return net.float().double()


def torch_log_prob(net, rows, pair_rows, previous, target) -> np.ndarray:
    as_torch = [
        None if x is None else torch.from_numpy(np.ascontiguousarray(x)) for x in (rows, pair_rows, previous, target)
    ]
    with torch.no_grad():
        logits, _ = net(as_torch[0], as_torch[1])
        return train.masked_log_prob(logits, as_torch[2], as_torch[3]).numpy()


@pytest.mark.parametrize("buttons", [False, True])
def test_export_gives_the_torch_log_probabilities(buttons):
    net = random_net(1)
    rng = np.random.default_rng(2)
    n = 80
    pitch = np.where(rng.random(n) < 0.2, -1, rng.integers(30, 100, n))
    lane = np.where(pitch >= 0, rng.integers(0, 5, n), -1)
    onset = rng.random(n) < 0.4
    position = np.arange(n) % 16
    tokens = random_tokens(rng, n)
    previous = np.vstack((np.zeros((1, 4), dtype=np.int64), tokens[:-1]))
    rows = train.step_rows(pitch, onset, lane, onset, position, previous, np.full(n, buttons))
    settings = condition_rows(2, 0, bar_voice_flags(tokens, position))
    rows = np.concatenate((rows, settings), axis=-1)
    pair_rows = train.pair_rows(tokens[:, :3], train._held_tokens(tokens)[:, :3])
    expected = torch_log_prob(net, rows[None], pair_rows[None], previous[None], tokens[None])[0]
    model = train.export(net.float(), metadata={"styles": STYLES})
    got = teacher_forced_log_prob(
        model, lane if buttons else pitch, onset, position, tokens, mode="buttons" if buttons else "keys",
        style="chorale", energy="low",
    )  # fmt: skip
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5
    # The condition rows and the pair rows both count: without either torch scores otherwise.
    assert np.abs(torch_log_prob(net, rows[None, :, : _k.N_ROWS], pair_rows[None], previous[None], tokens[None])[0]
                  - expected).max() > 1e-3  # fmt: skip
    assert np.abs(torch_log_prob(net, rows[None], None, previous[None], tokens[None])[0] - expected).max() > 1e-3


def test_held_tokens_and_pair_rows_by_hand():
    tokens = np.array(
        [
            [9, 0, 4, 2],
            [1, 0, 1, 1],
            [1, 6, 1, 0],
            [0, 1, 3, 3],
            [12, 1, 0, 1],
            [1, 0, 5, 1],
        ]
    )
    held = train._held_tokens(tokens)
    assert held.tolist() == [
        [9, 0, 4, 2],
        [9, 0, 4, 2],
        [9, 6, 4, 0],
        [0, 6, 3, 3],
        [12, 6, 0, 3],
        [12, 0, 5, 3],
    ]
    # A voice's rows: one per token (0 rest, 1 unused, 2.. new notes), then one per note held.
    assert PAIR_OFFSET.tolist() == [0, 100, 200, 276]
    rows = train.pair_rows(tokens[:, :3], held[:, :3])
    assert rows.tolist() == [
        [9, 100, 204],
        [51 + 7, 100, 200 + 39 + 2],
        [51 + 7, 106, 200 + 39 + 2],
        [0, 100 + 51 + 4, 203],
        [12, 100 + 51 + 4, 200],
        [51 + 10, 100, 205],
    ]
    # The kernel's row of each: a hold is heard as the pitch held.
    for t in range(len(tokens)):
        for v in range(3):
            sounding = VOICE_LOW[v] + held[t, v] - FIRST_NOTE if held[t, v] >= FIRST_NOTE else -1
            kernel = _k.pair_row(PAIR_OFFSET, TOKEN_OFFSET, v, tokens[t, v], sounding, VOICE_LOW[v])
            assert kernel == rows[t, v], (t, v)


def test_the_pair_table_only_reaches_voices_drawn_later_in_torch_too():
    net = random_net(5, hidden=12, embed=8)
    rng = np.random.default_rng(6)
    n = 64
    tokens = random_tokens(rng, n)
    previous = np.vstack((np.zeros((1, 4), dtype=np.int64), tokens[:-1]))
    pitch = rng.integers(40, 90, n)
    rows = train.step_rows(pitch, rng.random(n) < 0.5, pitch % 5, rng.random(n) < 0.5, np.arange(n) % 16, previous,
                           np.zeros(n, dtype=bool))  # fmt: skip
    rows = np.concatenate((rows, condition_rows(1, 2, bar_voice_flags(tokens, np.arange(n) % 16))), axis=-1)
    pair_rows = train.pair_rows(tokens[:, :3], train._held_tokens(tokens)[:, :3])
    args = (rows[None], pair_rows[None], previous[None], tokens[None])
    base = torch_log_prob(net, *args)[0]
    for order_position, voice in enumerate(_k.SAMPLING_ORDER[:3]):
        block = slice(int(PAIR_OFFSET[voice]), int(PAIR_OFFSET[voice + 1]))
        saved = net.pair.detach().clone()
        with torch.no_grad():
            net.pair[block] += torch.randn_like(net.pair[block]) * 3
        got = torch_log_prob(net, *args)[0]
        with torch.no_grad():
            net.pair.copy_(saved)
        earlier = list(_k.SAMPLING_ORDER[: order_position + 1])
        later = list(_k.SAMPLING_ORDER[order_position + 1 :])
        assert np.array_equal(got[:, earlier], base[:, earlier]), voice
        assert (np.abs(got[:, later] - base[:, later]).max(axis=0) > 0.1).all(), voice
    # The exported table holds nothing for a voice drawn before the row's own.
    table = train.export(net.float()).pair_table
    for order_position, voice in enumerate(_k.SAMPLING_ORDER[:3]):
        rows_of_voice = table[PAIR_OFFSET[voice] : PAIR_OFFSET[voice + 1]]
        for v in _k.SAMPLING_ORDER[: order_position + 1]:
            assert not rows_of_voice[:, TOKEN_OFFSET[v] : TOKEN_OFFSET[v + 1]].any(), (voice, v)
        for v in _k.SAMPLING_ORDER[order_position + 1 :]:
            assert rows_of_voice[:, TOKEN_OFFSET[v] : TOKEN_OFFSET[v + 1]].any(), (voice, v)


def test_styles_energy_and_own_samples_of_the_batches():
    names, index = train.song_styles(np.array(["pop909/a.mid", "vgmusic_nes_gb/b.mid", "mine/c.mid", "d.mid"]))
    assert names == ["chip", "files", "mine", "pop"] and index.tolist() == [3, 0, 2, 1]
    names, index = train.song_styles(np.array(["pop909/a.mid", "mine/c.mid"]), {"mine": "chip"})
    assert names == ["chip", "pop"] and index.tolist() == [1, 0]
    with pytest.raises(Exception, match="--style"):
        train.song_styles(np.array([f"folder{i}/x.mid" for i in range(MAX_STYLES + 1)]))
    # Accompaniment onsets per 16 steps over the valid steps only.
    target = np.zeros((2, 32, 4), dtype=np.int64)
    target[0, [0, 4, 8], 1] = FIRST_NOTE + 3  # 3 pulse2 onsets ...
    target[0, [1, 9], 3] = FIRST_NOTE  # ... 2 drum hits ...
    target[0, 2, 2] = HOLD  # ... a hold is no onset, nor is the lead
    target[0, :, 0] = FIRST_NOTE + 1
    target[1, [0, 20], 2] = FIRST_NOTE
    valid = np.ones((2, 32), dtype=bool)
    valid[1, 16:] = False
    assert train.window_energy(target, valid).tolist() == [2.5, 1.0]


def test_own_samples_replace_only_previous_token_inputs(monkeypatch):
    net = random_net(7, hidden=12, embed=8)
    rng = np.random.default_rng(8)
    n = 48
    tokens = random_tokens(rng, n)
    previous = np.vstack((np.zeros((1, 4), dtype=np.int64), tokens[:-1]))
    pitch = rng.integers(40, 90, n)
    rows = train.step_rows(pitch, rng.random(n) < 0.5, pitch % 5, rng.random(n) < 0.5, np.arange(n) % 16, previous,
                           np.zeros(n, dtype=bool))  # fmt: skip
    rows = np.concatenate((rows, condition_rows(0, 1, bar_voice_flags(tokens, np.arange(n) % 16))), axis=-1)
    batch = {
        "rows": torch.from_numpy(np.stack([rows] * 4)),
        "pair_rows": torch.from_numpy(
            np.stack([train.pair_rows(tokens[:, :3], train._held_tokens(tokens)[:, :3])] * 4)
        ),
        "previous": torch.from_numpy(np.stack([previous] * 4)),
    }
    assert torch.equal(train._with_own_samples(net, batch, 0.0), batch["rows"])
    torch.manual_seed(9)
    mixed = train._with_own_samples(net, batch, 0.9).numpy()
    real = batch["rows"].numpy()
    assert np.array_equal(mixed[:, 0], real[:, 0])  # the first step's past is the song's
    keep = np.ones(mixed.shape[-1], dtype=bool)
    keep[4:8] = False
    assert np.array_equal(mixed[..., keep], real[..., keep])  # melody, position and settings stay
    changed = mixed[:, 1:, 4:8] != real[:, 1:, 4:8]
    assert 0.3 < changed.mean() < 0.9
    for v in range(4):
        column = mixed[..., 4 + v]
        assert ((column >= ROW_OFFSET[5 + v]) & (column < ROW_OFFSET[6 + v])).all(), v
    # A replaced input of step t + 1 is the token drawn at step t (each voice given the real ones
    # drawn before it, hold impossible after a real rest): with draws made certain, its likeliest.
    with monkeypatch.context() as patch:
        patch.setattr(torch, "multinomial", lambda p, n, **_: p.argmax(-1, keepdim=True))
        mixed = train._with_own_samples(net, batch, 0.9).numpy()
    with torch.no_grad():
        logits, _ = net(batch["rows"], batch["pair_rows"])
    replaced = mixed[:, 1:, 4:8] != real[:, 1:, 4:8]
    assert replaced.mean() > 0.3
    for v in range(4):
        voice = logits[..., int(TOKEN_OFFSET[v]) : int(TOKEN_OFFSET[v + 1])].numpy().copy()
        voice[..., HOLD] = np.where(batch["previous"][..., v].numpy() == REST, -np.inf, voice[..., HOLD])
        drawn = ROW_OFFSET[5 + v] + voice.argmax(-1)[:, :-1]
        assert np.array_equal(mixed[:, 1:, 4 + v][replaced[..., v]], drawn[replaced[..., v]]), v


@pytest.mark.parametrize("buttons", [False, True])
def test_numba_scores_real_training_windows_as_torch_does(converted, buttons):
    """Windows as training makes them (settings rows, pair rows, shifts), scored by torch and by numba.

    Each window is a whole song from its first step, so numba's teacher forcing (from silence,
    the settings made by ``teacher_forced_log_prob``) sees what the window sees.
    """
    corpus = open_cache(converted)
    song_style = np.arange(len(corpus)) % len(STYLES)
    targets = train._targets(corpus, song_style)
    songs = np.arange(0, len(corpus), 3)[:8]
    window = 256
    lengths = np.diff(corpus.offsets)[songs]
    assert (lengths <= window).all() and (lengths > 100).all()
    index = corpus.offsets[songs][:, None] + np.arange(window)[None, :]
    valid = np.arange(window)[None, :] < lengths[:, None]
    index = np.where(valid, index, corpus.offsets[songs][:, None])
    shift = np.array([0, 3, -5, 6, 0, -2, 1, 0])
    rates = train.window_energy(targets.tokens[index].astype(np.int64), valid)
    net = random_net(11, hidden=16, embed=8)
    model = train.export(net.float(), metadata={"styles": STYLES})
    low, high = rates.min(), rates.max()
    for level, edges in enumerate(([high + 1, high + 2], [low - 1, high + 1], [low - 2, low - 1])):
        edges = np.array(edges)
        batch = train._batch_inputs(corpus, targets, songs, index, valid, shift, np.full(len(songs), buttons), edges)
        expected = torch_log_prob(net, batch["rows"], batch["pair_rows"], batch["previous"], batch["target"])
        settings = batch["rows"][:, 0, _k.N_ROWS :]
        assert (batch["rows"][:, :, _k.N_ROWS : _k.N_ROWS + 2] == settings[:, None, :2]).all()  # one per window
        held_rows = batch["pair_rows"] >= PAIR_OFFSET[:3] + np.array(N_TOKENS[:3])
        assert held_rows[valid][:, [0, 2]].any(axis=0).all()  # the lead's and the bass's holds are heard
        for i, song in enumerate(songs.tolist()):
            n = int(lengths[i])
            steps = corpus.song(song)
            tokens = shift_tokens(targets.tokens[corpus.offsets[song] : corpus.offsets[song + 1]], int(shift[i]))
            np.testing.assert_array_equal(tokens, batch["target"][i, :n])
            pitch = transpose({"melody_pitch": np.array(steps["melody_pitch"])}, int(shift[i]))["melody_pitch"]
            melody, onset = (steps["lane"], steps["lane_onset"]) if buttons else (pitch, steps["melody_onset"])
            style = STYLES[int(settings[i, 0] - ROW_OFFSET[CONDITION_BLOCK])]
            energy = ENERGY_LEVELS[int(settings[i, 1] - ROW_OFFSET[CONDITION_BLOCK + 1])]
            assert style == STYLES[song_style[song]] and energy == ENERGY_LEVELS[level]
            got = teacher_forced_log_prob(
                model, melody, onset, steps["step_in_bar"], tokens, mode="buttons" if buttons else "keys",
                style=style, energy=energy,
            )  # fmt: skip
            reference = expected[i, :n]
            assert np.abs(got - reference).max() / np.abs(reference).max() < 1e-5, (level, song)
    corpus.release()


def test_train_cli_converts_trains_exports_and_resumes(midi_folder, tmp_path, capsys):
    out = tmp_path / "model.npz"
    args = [
        "train",
        str(midi_folder),
        "-o",
        str(out),
        "--hidden",
        "16",
        "--batch",
        "8",
        "--window",
        "32",
        "--eval-every",
        "5",
        "--minutes",
        "0.15",
    ]
    assert cli.main(args) == cli.EXIT_OK
    assert "wrote" in capsys.readouterr().out
    model = ArrangerModel.load(out)
    meta = model.metadata
    assert model.hidden == 16 and meta["songs"]["train"] > 0 and meta["songs"]["test"] > 0
    assert np.isfinite(meta["val_nll"]) and meta["config"]["window"] == 32
    # the held-out songs are listed by id, for `chiptuner evaluate` to take exactly those
    corpus = load_shards(tmp_path / "model.npz.data")
    test = train.split_songs(corpus, train.TrainConfig(**meta["config"]))["test"]
    assert meta["test_songs"] == [str(corpus.song_ids[i]) for i in test] and len(test) == meta["songs"]["test"]
    val = train.split_songs(corpus, train.TrainConfig(**meta["config"]))["val"]
    assert meta["val_songs"] == [str(corpus.song_ids[i]) for i in val]
    assert (tmp_path / "model.npz.data" / "report.json").is_file()
    assert any(key.startswith("markov_") for key in model.extras)
    fit = meta["steering_fit"]
    assert (meta["clash_bias"], meta["key_bias"]) == (fit["clash_bias"], fit["key_bias"])
    reached = all(fit["after"][name] >= fit["real"][name] for name in ("harmony", "in_key"))
    strongest = (max(calibration.STEERING_BIASES),) * 2
    assert reached or (meta["clash_bias"], meta["key_bias"]) == strongest
    first_batch = meta["batch"]
    assert cli.main([*args[:-1], "0.3", "--resume"]) == cli.EXIT_OK
    assert ArrangerModel.load(out).metadata["batch"] >= first_batch


def test_calibrate_cli_refits_the_sampling_biases_in_place(midi_folder, tmp_path, capsys):
    out = tmp_path / "model.npz"
    config = train.TrainConfig(hidden=16, embed=8, window=32, batch=8, eval_every=5, max_batches=10)
    from chiptuner.corpus.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], tmp_path / "data", workers=1)
    model = train.train(tmp_path / "data", out, config=config)
    stripped = {k: v for k, v in model.metadata.items() if k not in ("clash_bias", "key_bias", "steering_fit")}
    dataclasses.replace(model, metadata=stripped).save(out)
    assert cli.main(["calibrate", str(out), str(tmp_path / "data")]) == cli.EXIT_OK
    assert "clash bias" in capsys.readouterr().out
    meta = ArrangerModel.load(out).metadata
    assert meta["clash_bias"] in calibration.STEERING_BIASES and meta["steering_fit"]["songs"] > 0
    assert meta["val_nll"] == model.metadata["val_nll"]  # the weights and their record are untouched
    # The validation songs the model lists are the ones calibrated on, whatever the folder's split would say.
    listed = sorted(model.metadata["test_songs"])[:2]
    dataclasses.replace(model, metadata={**stripped, "val_songs": listed}).save(out)
    assert cli.main(["calibrate", str(out), str(tmp_path / "data")]) == cli.EXIT_OK
    assert ArrangerModel.load(out).metadata["steering_fit"]["songs"] == 2
    dataclasses.replace(model, metadata={**stripped, "val_songs": ["not/in/the/folder.mid"]}).save(out)
    assert cli.main(["calibrate", str(out), str(tmp_path / "data")]) == cli.EXIT_USAGE
    assert "none of the model's 1 validation songs" in capsys.readouterr().err
    assert cli.main(["calibrate", str(tmp_path / "missing.npz"), str(tmp_path / "data")]) == cli.EXIT_USAGE
    assert "missing.npz" in capsys.readouterr().err
    # Calibration needs no torch: the command runs with torch made unimportable.
    model.save(out)
    no_torch = (
        "import sys; sys.modules['torch'] = None; from chiptuner.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", no_torch, "calibrate", str(out), str(tmp_path / "data")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == cli.EXIT_OK, done.stderr


def test_the_cache_gives_the_batches_of_the_shards_in_memory(midi_folder, tmp_path):
    from chiptuner.corpus.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], tmp_path / "data", workers=1)
    in_memory, mapped = load_shards(tmp_path / "data"), open_cache(tmp_path / "data")
    tokens = train.song_tokens(in_memory)
    np.testing.assert_array_equal(mapped.tokens, tokens)
    parts = train.split_songs(mapped, train.TrainConfig())
    song_style = np.arange(len(mapped)) % 2
    with_tokens = types.SimpleNamespace(
        tokens=tokens, n_steps=in_memory.n_steps, offsets=in_memory.offsets, steps=in_memory.steps
    )
    targets = [train._targets(with_tokens, song_style), train._targets(mapped, song_style)]
    edges = np.array([4.0, 9.0])
    corpora = (in_memory, mapped)
    windows = [train._Windows(c, t, parts["train"], 32, 3, edges) for c, t in zip(corpora, targets, strict=True)]
    for _ in range(5):
        a, b = (w.batch(8) for w in windows)
        mapped.release()
        assert set(a) == {"rows", "pair_rows", "previous", "target", "mask"}
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    a, b = (
        train._fixed_windows(c, t, parts["val"], 64, 20, True, edges) for c, t in zip(corpora, targets, strict=True)
    )
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["rows"].shape[-1] == _k.N_ROWS + _k.N_CONDITIONS and a["pair_rows"].shape[-1] == 3


def test_train_caches_beside_the_model_when_the_conversion_is_read_only(midi_folder, tmp_path, monkeypatch):
    from chiptuner.corpus.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], tmp_path / "data", workers=1)
    monkeypatch.setattr(dataset.os, "access", lambda path, mode: False)
    corpus = open_conversion(tmp_path / "data", tmp_path / "m.npz")
    assert corpus.folder.parent == tmp_path / "m.npz.train-cache" and not (tmp_path / "data" / ".train-cache").exists()


def test_training_learns_the_pattern(midi_folder, tmp_path):
    """On songs whose bass always plays the same two notes, validation NLL falls well below uniform."""
    data = tmp_path / "data"
    from chiptuner.corpus.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], data, workers=1)
    config = train.TrainConfig(hidden=32, embed=16, window=64, batch=16, eval_every=40, max_batches=160, max_minutes=10)
    model = train.train(data, tmp_path / "m.npz", config=config)
    uniform = np.mean(np.log([51, 51, 39, 7]))
    assert model.metadata["val_nll"] < 0.5 * uniform


def test_train_refuses_bad_settings(tmp_path):
    with pytest.raises(Exception, match="hidden"):
        train.TrainConfig(hidden=0).check()
    with pytest.raises(Exception, match="no such folder"):
        train.train(tmp_path / "missing", tmp_path / "m.npz", config=train.TrainConfig())
