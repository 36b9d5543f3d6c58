"""Training and export (needs torch): the exported numba model equals the torch network."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chiptuner import cli
from chiptuner._kernels import arranger as _k
from chiptuner.dataset import load_shards, open_cache
from chiptuner.midi_io import write_midi
from chiptuner.model import MAX_POSITION, ROW_OFFSET, ArrangerModel, teacher_forced_log_prob
from chiptuner.types import Notes, Score, TempoMap, TimeSignatures

torch = pytest.importorskip("torch", reason="training tests need torch: pip install 'chiptuner[train]'")
train = pytest.importorskip("chiptuner.train")


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


@pytest.mark.parametrize("buttons", [False, True])
def test_export_gives_the_torch_log_probabilities(buttons):
    torch.manual_seed(1)
    net = train.ArrangerNet(hidden=24, embed=12)
    rng = np.random.default_rng(2)
    n = 80
    pitch = np.where(rng.random(n) < 0.2, -1, rng.integers(30, 100, n))
    lane = np.where(pitch >= 0, rng.integers(0, 5, n), -1)
    onset = rng.random(n) < 0.4
    position = np.arange(n) % 16
    tokens = np.stack([rng.integers(2, k, n) for k in (51, 51, 39, 7)], axis=1)
    tokens[rng.random((n, 4)) < 0.3] = 0
    previous = np.vstack((np.zeros((1, 4), dtype=np.int64), tokens[:-1]))
    rows = train.step_rows(pitch, onset, lane, onset, position, previous, np.full(n, buttons))
    with torch.no_grad():
        logits, _ = net.double()(torch.from_numpy(rows)[None])
        expected = train.masked_log_prob(logits, torch.from_numpy(previous)[None], torch.from_numpy(tokens)[None])[
            0
        ].numpy()
    model = train.export(net.float())
    got = teacher_forced_log_prob(
        model, lane if buttons else pitch, onset, position, tokens, mode="buttons" if buttons else "keys"
    )
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5


def _song(shift: int, bars: int = 8) -> Score:
    """A melody over a bass and a hi-hat, in a key moved by ``shift``."""
    beat = 96
    n = bars * 4
    melody_start = np.arange(n, dtype=np.int64) * beat
    bass_start = np.arange(n // 2, dtype=np.int64) * 2 * beat
    start = np.concatenate((melody_start, bass_start, melody_start))
    length = np.concatenate((np.full(n, beat), np.full(n // 2, 2 * beat), np.full(n, beat // 4)))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    pitch = np.concatenate(
        (67 + shift + scale[np.arange(n) % 8], 43 + shift + scale[[0, 4] * (n // 4)], np.full(n, 42))
    )
    channel = np.concatenate((np.zeros(n), np.ones(n // 2), np.full(n, 9))).astype(np.int8)
    notes = Notes(
        start,
        start + length,
        pitch,
        np.full(len(start), 100),
        channel,
        np.zeros(len(start)),
        channel.astype(np.int32),
        channel == 9,
    )
    tempo = TempoMap(np.zeros(1, np.int64), np.full(1, 500_000, np.int64))
    return Score(
        notes,
        tempo,
        TimeSignatures(np.zeros(1, np.int64), np.full(1, 4), np.full(1, 4)),
        beat,
        ("melody", "bass", "drums"),
    )


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    for i in range(40):
        write_midi(_song(i % 12 - 5, bars=8 + i % 5), folder / f"song{i:02d}.mid")
    return folder


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
    strongest = (max(train.STEERING_BIASES),) * 2
    assert reached or (meta["clash_bias"], meta["key_bias"]) == strongest
    first_batch = meta["batch"]
    assert cli.main([*args[:-1], "0.3", "--resume"]) == cli.EXIT_OK
    assert ArrangerModel.load(out).metadata["batch"] >= first_batch


def test_calibrate_cli_refits_the_sampling_biases_in_place(midi_folder, tmp_path, capsys):
    out = tmp_path / "model.npz"
    config = train.TrainConfig(hidden=16, embed=8, window=32, batch=8, eval_every=5, max_batches=10)
    from chiptuner.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], tmp_path / "data", workers=1)
    model = train.train(tmp_path / "data", out, config=config)
    stripped = {k: v for k, v in model.metadata.items() if k not in ("clash_bias", "key_bias", "steering_fit")}
    dataclasses.replace(model, metadata=stripped).save(out)
    assert cli.main(["calibrate", str(out), str(tmp_path / "data")]) == cli.EXIT_OK
    assert "clash bias" in capsys.readouterr().out
    meta = ArrangerModel.load(out).metadata
    assert meta["clash_bias"] in train.STEERING_BIASES and meta["steering_fit"]["songs"] > 0
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


def test_the_cache_gives_the_batches_of_the_shards_in_memory(midi_folder, tmp_path):
    from chiptuner.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], tmp_path / "data", workers=1)
    in_memory, mapped = load_shards(tmp_path / "data"), open_cache(tmp_path / "data")
    tokens = train.song_tokens(in_memory)
    np.testing.assert_array_equal(mapped.tokens, tokens)
    parts = train.split_songs(mapped, train.TrainConfig())
    windows = [
        train._Windows(corpus, t, parts["train"], 32, seed=3)
        for corpus, t in ((in_memory, tokens), (mapped, mapped.tokens))
    ]
    for _ in range(5):
        a, b = (w.batch(8) for w in windows)
        mapped.release()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    a, b = (
        train._fixed_windows(c, t, parts["val"], 64, 20, buttons=True)
        for c, t in ((in_memory, tokens), (mapped, mapped.tokens))
    )
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_train_caches_beside_the_model_when_the_conversion_is_read_only(midi_folder, tmp_path, monkeypatch):
    from chiptuner.convert import convert_corpus  # noqa: PLC0415

    convert_corpus([midi_folder], tmp_path / "data", workers=1)
    monkeypatch.setattr(train.os, "access", lambda path, mode: False)
    corpus = train._open_corpus(tmp_path / "data", tmp_path / "m.npz")
    assert corpus.folder.parent == tmp_path / "m.npz.train-cache" and not (tmp_path / "data" / ".train-cache").exists()


def test_training_learns_the_pattern(midi_folder, tmp_path):
    """On songs whose bass always plays the same two notes, validation NLL falls well below uniform."""
    data = tmp_path / "data"
    from chiptuner.convert import convert_corpus  # noqa: PLC0415

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
