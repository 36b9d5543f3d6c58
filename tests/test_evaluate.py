"""``evaluate``: every TARGETS metric, finite NLLs for the model and the three baselines, the report files."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from importlib import resources

import numpy as np
import pytest

import chiptuner
from chiptuner.evaluate import BASELINES, Evaluation, evaluate, load_songs, report_markdown, write_report
from chiptuner.model import load_model
from chiptuner.pipeline import convert_file
from tests.test_plot import read_png

EXAMPLES = resources.files("chiptuner") / "examples"
MELODY = str(EXAMPLES / "ode_to_joy_melody.mid")
BAND = str(EXAMPLES / "ode_to_joy_band.mid")

#: TARGETS.md "Musical quality": metric -> the voices it has a row for ("" = all voices at once).
TARGET_ROWS = {
    "accompaniment silence": {""},
    "voice density": {"pulse1", "pulse2", "triangle", "noise"},
    "pitch variety": {"pulse1", "pulse2", "triangle"},
    "stuck notes (p98)": {""},
    "harmony ratio": {""},
    "in-key ratio": {""},
    "lead agreement": {""},
}


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def songs(model):
    return load_songs([BAND], model)


@pytest.fixture(scope="module")
def keys_eval(model, songs):
    return evaluate(model, songs, mode="keys", seed=0)


def test_load_songs_converts_the_band_example(songs):
    assert len(songs) == 1
    song = songs[0]
    assert song["song_id"] == "ode_to_joy_band.mid"
    reference = convert_file(BAND)
    for key in ("melody_pitch", "melody_onset", "voice_pitch", "voice_onset", "step_in_bar", "lane", "lane_onset"):
        assert np.array_equal(song[key], reference[key]), key
    n = len(song["melody_pitch"])
    assert song["voice_pitch"].shape == (n, 4)
    assert song["voice_onset"][:, 1:].any(axis=0).all()  # the real arrangement has accompaniment


def test_melody_only_file_is_skipped(model, tmp_path):
    assert [s["song_id"] for s in load_songs([MELODY, BAND], model)] == ["ode_to_joy_band.mid"]
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(MELODY, folder / "melody.mid")
    shutil.copy(BAND, folder / "band.mid")
    assert [s["song_id"] for s in load_songs([folder], model)] == ["band.mid"]


def test_nothing_usable_is_a_parameter_error(model, tmp_path):
    with pytest.raises(chiptuner.ParameterError, match="no song to evaluate"):
        load_songs([MELODY], model)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(chiptuner.ParameterError, match="no MIDI file"):
        load_songs([empty], model)
    (tmp_path / "junk.mid").write_bytes(b"MThd junk")
    with pytest.raises(chiptuner.ParameterError):
        load_songs([tmp_path / "junk.mid"], model)


def test_missing_path_is_a_parameter_error(model, tmp_path):
    missing = tmp_path / "missing.mid"
    with pytest.raises(chiptuner.ParameterError, match="missing.mid"):
        load_songs([missing], model)
    with pytest.raises(chiptuner.ParameterError, match="no such file"):
        load_songs([BAND, missing], model)  # one bad source fails the run, even after a good one


def test_max_songs_spreads_the_pick(model, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5):
        shutil.copy(BAND, folder / f"song{i}.mid")
    all_songs = load_songs([folder], model)
    assert sorted(s["song_id"] for s in all_songs) == [f"song{i}.mid" for i in range(5)]
    picked = load_songs([folder], model, max_songs=3)
    ids = [s["song_id"] for s in all_songs]
    assert [s["song_id"] for s in picked] == [ids[0], ids[2], ids[4]]


def test_evaluate_has_a_row_for_every_target(keys_eval, songs):
    ev = keys_eval
    assert ev.mode == "keys"
    assert ev.n_songs == 1
    assert ev.n_steps == len(songs[0]["melody_pitch"])
    seen: dict[str, set] = {}
    for row in ev.rows:
        seen.setdefault(row.metric, set()).add(row.voice)
    for metric, voices in TARGET_ROWS.items():
        assert voices <= seen.get(metric, set()), metric
    for row in ev.rows:
        assert isinstance(row.value, float) and isinstance(row.real, float)
        assert row.passed in (True, False, None)
    assert set(ev.stats) == {"model", "real", *BASELINES}


def test_nll_for_model_and_three_baselines_finite_and_positive(keys_eval):
    assert set(keys_eval.nll) == {"model", "unigram", "markov", "rules"}
    for name, value in keys_eval.nll.items():
        assert math.isfinite(value) and value > 0, (name, value)
    # a per-step, per-voice figure in nats: far below log(vocabulary), not a sum over the song
    assert all(value < 10 for value in keys_eval.nll.values())


def test_lead_agreement_of_the_model_is_total_in_keys_mode(keys_eval):
    (row,) = [row for row in keys_eval.rows if row.metric == "lead agreement"]
    assert row.value == pytest.approx(1.0)
    assert row.passed is True
    assert 0.0 <= row.real <= 1.0


def test_evaluate_is_repeatable_and_seeded(model, songs, keys_eval):
    again = evaluate(model, songs, mode="keys", seed=0)
    assert again.nll == keys_eval.nll
    assert again.as_dict() == keys_eval.as_dict()
    other = evaluate(model, songs, mode="keys", seed=5)
    assert other.nll == keys_eval.nll  # teacher forcing does not sample
    assert other.stats["model"] != keys_eval.stats["model"]  # the free run does
    assert other.stats["real"] == keys_eval.stats["real"]


def test_buttons_mode(model, songs):
    ev = evaluate(model, songs, mode="buttons")
    assert ev.mode == "buttons"
    assert set(ev.nll) == {"model", "unigram", "markov", "rules"}
    assert all(math.isfinite(v) and v > 0 for v in ev.nll.values())


def test_progress_and_examples(model, songs):
    calls = []
    ev = evaluate(model, list(songs) * 3, progress=lambda done, total: calls.append((done, total)), n_examples=2)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert ev.n_songs == 3
    assert len(ev.examples) == 2
    for example in ev.examples:
        assert len(example["melody"]) == min(128, len(songs[0]["melody_pitch"]))
        assert example["model"][0].shape == example["real"][0].shape == (len(example["melody"]), 4)


def test_passed_needs_every_target_and_the_nll_below_each_baseline(keys_eval):
    ok_rows = [dataclasses.replace(row, passed=True if row.passed is not None else None) for row in keys_eval.rows]
    good = Evaluation("keys", 1, 10, {}, {"model": 1.0, "unigram": 2.0, "markov": 2.0, "rules": 1.5}, ok_rows)
    assert good.passed
    beaten = Evaluation("keys", 1, 10, {}, {"model": 1.6, "unigram": 2.0, "markov": 2.0, "rules": 1.5}, ok_rows)
    assert not beaten.passed
    failed_row = [*ok_rows[:-1], dataclasses.replace(ok_rows[-1], passed=False)]
    assert not Evaluation("keys", 1, 10, {}, good.nll, failed_row).passed


def test_report_markdown_table(keys_eval):
    text = report_markdown([keys_eval])
    assert "## Input: keys (1 songs" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| metric |"))
    for name in ("voice-wise unigram", "first-order Markov", "rule-based arranger"):
        assert name in lines[header]
    assert set(lines[header + 1]) <= {"|", "-"}
    n_columns = lines[header].count("|")
    table = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        table.append(line)
        assert line.count("|") == n_columns, line
    assert len(table) == len(keys_eval.rows) + 1  # one per target row, then the NLL
    assert table[-1].startswith("| held-out NLL")
    assert f"{keys_eval.nll['model']:.3f}" in table[-1]
    for metric in TARGET_ROWS:
        assert any(line.startswith(f"| {metric} |") for line in table), metric


def test_write_report(tmp_path, model, songs, keys_eval):
    buttons = evaluate(model, songs, mode="buttons")
    folder = tmp_path / "report" / "nested"
    path = write_report([keys_eval, buttons], folder)
    assert path == folder / "report.md"
    text = path.read_text()
    assert "| metric |" in text and "## Input: keys" in text and "## Input: buttons" in text
    data = json.loads((folder / "report.json").read_text())
    assert [entry["mode"] for entry in data] == ["keys", "buttons"]
    assert set(data[0]["nll"]) == {"model", "unigram", "markov", "rules"}
    assert data[0]["nll"]["model"] == pytest.approx(keys_eval.nll["model"])
    assert len(data[0]["targets"]) == len(keys_eval.rows)
    assert data[0]["passed"] == keys_eval.passed
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == len(keys_eval.examples) >= 1
    for png in pngs:
        image = read_png(png)
        assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({png.name})" in text  # linked from the report


def test_conversion_folder_gives_the_models_held_out_songs(model, tmp_path):
    from chiptuner.convert import convert_corpus  # noqa: PLC0415 (only this test converts a corpus)
    from chiptuner.dataset import load_shards, split_by_song  # noqa: PLC0415

    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        shutil.copy(BAND, source / f"s{i}.mid")
    convert_corpus([source], tmp_path / "shards", workers=1)
    songs = load_songs([tmp_path / "shards"], model)
    corpus = load_shards(tmp_path / "shards")
    config = model.metadata["config"]
    _, test = split_by_song(corpus.song_ids, test_size=float(config["test_size"]), seed=int(config["seed"]))
    assert 0 < len(songs) < 6  # held-out songs only, never the training ones
    assert [s["song_id"] for s in songs] == [str(corpus.song_ids[i]) for i in test]
    no_split = dataclasses.replace(model, metadata={})
    with pytest.raises(chiptuner.ParameterError, match="no training split"):
        load_songs([tmp_path / "shards"], no_split)


def test_model_without_stored_baselines_fits_them_on_the_songs(model, songs, caplog):
    bare = dataclasses.replace(model, extras={})
    with caplog.at_level("WARNING", logger="chiptuner.evaluate"):
        ev = evaluate(bare, songs)
    assert set(ev.nll) == {"model", "unigram", "markov", "rules"}
    assert all(math.isfinite(v) and v > 0 for v in ev.nll.values())
    assert sum("baseline" in record.getMessage() for record in caplog.records) == 3
