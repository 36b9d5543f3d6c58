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
from chiptuner.evaluate.evaluation import (
    BARE,
    BASELINES,
    Evaluation,
    corpus_label,
    evaluate,
    load_bare_melodies,
    load_songs,
    report_markdown,
    write_report,
)
from chiptuner.model.arranger import load_model
from chiptuner.pipeline import convert_file
from tests.test_plot import read_png

EXAMPLES = resources.files("chiptuner") / "examples"
MELODY = str(EXAMPLES / "ode_to_joy_melody.mid")
BAND = str(EXAMPLES / "ode_to_joy_band.mid")

#: docs/targets.md "Musical quality": metric -> the voices it has a row for ("" = all voices at once).
TARGET_ROWS = {
    "accompaniment silence": {""},
    "voice density": {"pulse1", "pulse2", "triangle", "noise"},
    "pitch variety": {"pulse1", "pulse2", "triangle"},
    "stuck notes (p98)": {""},
    "harmony ratio": {""},
    "in-key ratio": {""},
    "lead agreement": {""},
}
#: The rows counted per arrangement (song x seed) and the two-model rows.
PER_ARRANGEMENT_ROWS = {
    "voices that stay: never plays": {""},
    "voices that stay: silent 4+ bars": {""},
    "first drum onset by bar 2": {""},
    "held-out NLL": {""},
}


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def songs(model):
    return load_songs([BAND], model)


@pytest.fixture(scope="module")
def keys_eval(model, songs):
    return evaluate(model, songs, mode="keys", seeds=(0, 1, 2))


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
    (table,) = ev.corpora
    assert table.name == "examples"  # the song's folder
    assert table.n_steps == len(songs[0]["melody_pitch"])
    assert table.seeds == [0, 1, 2]
    seen: dict[str, set] = {}
    for row in table.rows:
        seen.setdefault(row.metric, set()).add(row.voice)
    for metric, voices in {**TARGET_ROWS, **PER_ARRANGEMENT_ROWS}.items():
        assert voices <= seen.get(metric, set()), metric
    for row in table.rows:
        assert isinstance(row.value, float) and isinstance(row.real, float)
        assert row.passed in (True, False, None)
    assert set(table.stats) == {"model", "as_trained", "real", *BASELINES}
    # one record per (song, seed, generated source)
    assert len(ev.arrangements) == 3 * (2 + len(BASELINES))


def test_nll_for_model_and_three_baselines_finite_and_positive(keys_eval):
    nll = keys_eval.corpora[0].nll
    assert set(nll) == {"model", "unigram", "markov", "rules"}
    for name, value in nll.items():
        assert math.isfinite(value) and value > 0, (name, value)
    # a per-step, per-voice figure in nats: far below log(vocabulary), not a sum over the song
    assert all(value < 10 for value in nll.values())


def test_lead_agreement_of_the_model_is_total_in_keys_mode(keys_eval):
    (row,) = [row for row in keys_eval.corpora[0].rows if row.metric == "lead agreement"]
    assert row.value == pytest.approx(1.0)
    assert row.passed is True
    assert 0.0 <= row.real <= 1.0


def test_evaluate_is_repeatable_and_seeded(model, songs, keys_eval):
    again = evaluate(model, songs, mode="keys", seeds=(0, 1, 2))
    assert again.as_dict() == keys_eval.as_dict()
    other = evaluate(model, songs, mode="keys", seeds=(5, 6, 7))
    ours, theirs = keys_eval.corpora[0], other.corpora[0]
    assert theirs.nll == ours.nll  # teacher forcing does not sample
    assert theirs.stats["model"] != ours.stats["model"]  # the free run does
    assert theirs.stats["real"] == ours.stats["real"]


def test_parallel_workers_give_the_same_evaluation(model, songs, keys_eval):
    parallel = evaluate(model, list(songs), mode="keys", workers=2)
    assert parallel.as_dict() == keys_eval.as_dict()


def test_sampling_as_trained_is_its_own_column(keys_eval):
    table = keys_eval.corpora[0]
    assert table.stats["as_trained"] != table.stats["model"]
    harmony = {s: [r for r in rows if r.metric == "harmony ratio"][0].value for s, rows in table.source_rows.items()}
    assert harmony["as_trained"] != harmony["model"]


def test_buttons_mode_reports_the_contour_violations(model, songs):
    ev = evaluate(model, songs, mode="buttons", seeds=(0,))
    table = ev.corpora[0]
    assert set(table.nll) == {"model", "unigram", "markov", "rules"}
    assert all(math.isfinite(v) and v > 0 for v in table.nll.values())
    (row,) = [row for row in table.rows if row.metric == "contour violations"]
    assert 0.0 <= row.value <= 1.0 and row.target == "at most 5%"
    assert 0.0 <= row.real < 0.5  # the input melody against its own lanes: only the lane rule's re-centring
    assert table.contour["rules"] == 0.0  # the rule-based lead follows the lanes by construction


def test_drums_that_never_enter_are_counted_per_arrangement(model, songs):
    # A rest bias of -20 on the noise voice makes its rest all but certain: the band without drums.
    silent_drums = dataclasses.replace(model, metadata={**model.metadata, "rest_bias": [0.0, 0.0, 0.0, -20.0]})
    ev = evaluate(silent_drums, songs, mode="keys", seeds=(0, 1, 2))
    table = ev.corpora[0]
    assert table.presence["model"]["never_plays_voice"]["noise"] == 1.0
    assert table.presence["model"]["never_plays"] == 1.0
    assert table.presence["real"]["never_plays"] == 0.0
    records = [r for r in ev.arrangements if r["source"] == "model"]
    assert len(records) == 3 and all(r["never_plays"] == ["noise"] for r in records)
    assert all(r["first_onset_bar"]["noise"] == -1 for r in records)
    (worst,) = table.worst
    assert worst["failing_seeds"] == [0, 1, 2] and worst["never_plays"] == ["noise"]


def test_chip_table_targets_and_comes_first(model, songs):
    chip = [{**songs[0], "song_id": f"vgmusic_nes_gb/midis/s{i}.mid", "corpus": "chip"} for i in range(2)]
    pop = [{**songs[0], "song_id": "pop909/POP909/001/001.mid", "corpus": "pop"}]
    ev = evaluate(model, [*pop, *chip], mode="keys", seeds=(0,))
    assert [c.name for c in ev.corpora] == ["chip", "pop"]
    targets = {c.name: {r.metric: r.target for r in c.rows} for c in ev.corpora}
    assert targets["chip"]["voices that stay: never plays"] == "0"
    assert targets["pop"]["voices that stay: never plays"] == "reported"  # pop songs may have no drums


def test_bare_melodies_get_the_rows_that_need_no_real_arrangement(model, songs):
    bare = load_bare_melodies([MELODY])
    assert [b["song_id"] for b in bare] == ["ode_to_joy_melody.mid"] and "voice_pitch" not in bare[0]
    ev = evaluate(model, songs, mode="keys", seeds=(0, 1, 2), bare=bare)
    table = ev.corpus(BARE)
    metrics = {row.metric for row in table.rows}
    assert {"voice density", "pitch variety", "harmony ratio", "in-key ratio", "lead agreement"} <= metrics
    assert {"voices that stay: never plays", "voices that stay: silent 4+ bars", "stuck notes (p98)"} <= metrics
    assert "accompaniment silence" not in metrics and "held-out NLL" not in metrics
    assert table.nll == {} and table.c2st == {}
    assert table.presence["model"]["arrangements"] == 3
    # compared with the real figures of the songs that have them (no chip corpus here)
    density = [row for row in table.rows if row.metric == "voice density" and row.voice == "noise"][0]
    assert density.real == pytest.approx(ev.corpora[0].stats["real"]["density"][3])


def test_progress_and_examples(model, songs):
    calls = []
    ev = evaluate(
        model, list(songs) * 3, seeds=(0,), progress=lambda done, total: calls.append((done, total)), n_examples=2
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert ev.n_songs == 3
    assert len(ev.examples) == 2
    for example in ev.examples:
        assert len(example["melody"]) == min(512, len(songs[0]["melody_pitch"]))
        assert example["model"][0].shape == example["real"][0].shape == (len(example["melody"]), 4)


def test_passed_needs_every_table(keys_eval):
    table = keys_eval.corpora[0]
    ok_rows = [dataclasses.replace(row, passed=True if row.passed is not None else None) for row in table.rows]
    good = Evaluation("keys", [dataclasses.replace(table, rows=ok_rows)])
    assert good.passed
    failed = [*ok_rows[:-1], dataclasses.replace(ok_rows[-1], passed=False)]
    assert not Evaluation(
        "keys", [dataclasses.replace(table, rows=ok_rows), dataclasses.replace(table, rows=failed)]
    ).passed


def test_report_markdown_table(keys_eval):
    text = report_markdown([keys_eval])
    assert "## Input: keys" in text and "### examples: 1 songs x 3 seeds" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| metric |"))
    for name in ("model, sampling as trained", "voice-wise unigram", "first-order Markov", "rule-based arranger"):
        assert name in lines[header]
    assert set(lines[header + 1]) <= {"|", "-"}
    n_columns = lines[header].count("|")
    table = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        table.append(line)
        assert line.count("|") == n_columns, line
    assert len(table) == len(keys_eval.corpora[0].rows)
    assert table[-1].startswith("| held-out NLL")
    assert f"{keys_eval.corpora[0].nll['model']:.3f}" in table[-1]
    for metric in {**TARGET_ROWS, **PER_ARRANGEMENT_ROWS}:
        assert any(line.startswith(f"| {metric} |") for line in table), metric
    assert "Worst songs" in text


def test_write_report(tmp_path, model, songs, keys_eval):
    buttons = evaluate(model, songs, mode="buttons", seeds=(0,))
    folder = tmp_path / "report" / "nested"
    path = write_report([keys_eval, buttons], folder)
    assert path == folder / "report.md"
    text = path.read_text()
    assert "| metric |" in text and "## Input: keys" in text and "## Input: buttons" in text
    data = json.loads((folder / "report.json").read_text())
    assert [entry["mode"] for entry in data] == ["keys", "buttons"]
    (corpus,) = data[0]["corpora"]
    assert set(corpus["nll"]) == {"model", "unigram", "markov", "rules"}
    assert corpus["nll"]["model"] == pytest.approx(keys_eval.corpora[0].nll["model"])
    assert len(corpus["targets"]) == len(keys_eval.corpora[0].rows)
    assert data[0]["passed"] == keys_eval.passed
    assert len(data[0]["arrangements"]) == len(keys_eval.arrangements)
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == len(keys_eval.examples) >= 1
    for png in pngs:
        image = read_png(png)
        assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({png.name})" in text  # linked from the report


def test_conversion_folder_gives_the_models_held_out_songs(model, tmp_path, caplog):
    from chiptuner.corpus.convert import convert_corpus  # noqa: PLC0415 (only this test converts a corpus)
    from chiptuner.corpus.dataset import load_shards, split_by_song  # noqa: PLC0415

    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        shutil.copy(BAND, source / f"s{i}.mid")
    convert_corpus([source], tmp_path / "shards", workers=1)
    corpus = load_shards(tmp_path / "shards")
    # The model lists its test songs: exactly those are held out, whatever the folder holds besides.
    listed = dataclasses.replace(model, metadata={**model.metadata, "test_songs": ["s4.mid", "s1.mid", "x.mid"]})
    assert [s["song_id"] for s in load_songs([tmp_path / "shards"], listed)] == ["s1.mid", "s4.mid"]
    # A model that lists none: the split is remade from its seed, with a warning that it may not be its own.
    unlisted = dataclasses.replace(model, metadata={k: v for k, v in model.metadata.items() if k != "test_songs"})
    with caplog.at_level("WARNING", logger="chiptuner.evaluate.evaluation"):
        songs = load_songs([tmp_path / "shards"], unlisted)
    assert any("does not list its test songs" in record.getMessage() for record in caplog.records)
    config = model.metadata["config"]
    _, test = split_by_song(corpus.song_ids, test_size=float(config["test_size"]), seed=int(config["seed"]))
    assert 0 < len(songs) < 6  # held-out songs only, never the training ones
    assert [s["song_id"] for s in songs] == [str(corpus.song_ids[i]) for i in test]
    assert {s["corpus"] for s in songs} == {"files"}  # one source folder: ids have no folder
    no_split = dataclasses.replace(model, metadata={})
    with pytest.raises(chiptuner.ParameterError, match="no training split"):
        load_songs([tmp_path / "shards"], no_split)


def test_the_shipped_model_lists_its_held_out_songs(model):
    test_songs = model.metadata["test_songs"]
    assert len(test_songs) == model.metadata["songs"]["test"] == 855
    assert {corpus_label(s) for s in test_songs} == {"chip", "pop", "chorale"}
    val_songs = model.metadata["val_songs"]
    assert len(val_songs) == model.metadata["songs"]["val"] == 439
    assert not set(val_songs) & set(test_songs)


def test_corpus_labels():
    assert corpus_label("vgmusic_nes_gb/midis/zelda1.mid") == "chip"
    assert corpus_label("pop909/POP909/001/001.mid") == "pop"
    assert corpus_label("bach_chorales/bwv1.6.mid") == "chorale"
    assert corpus_label("nottingham/MIDI/jigs1.mid") == "folk"
    assert corpus_label("mine/song.mid") == "mine"
    assert corpus_label("song.mid") == "files"


def test_model_without_stored_baselines_fits_them_on_the_songs(model, songs, caplog):
    bare = dataclasses.replace(model, extras={})
    with caplog.at_level("WARNING", logger="chiptuner.evaluate.evaluation"):
        ev = evaluate(bare, songs, seeds=(0,))
    nll = ev.corpora[0].nll
    assert set(nll) == {"model", "unigram", "markov", "rules"}
    assert all(math.isfinite(v) and v > 0 for v in nll.values())
    assert sum("baseline" in record.getMessage() for record in caplog.records) == 3


def test_keys_mode_checks_the_settings(keys_eval):
    """No bare melodies here: the energy and voices checks use the given songs' melodies (the band example)."""
    settings = keys_eval.settings
    assert set(settings) >= {"energy", "voices"}
    levels = settings["energy"]["onsets_per_bar"]
    assert list(levels) == ["low", "mid", "high"]
    assert settings["energy"]["passed"] == (levels["low"] < levels["mid"] < levels["high"])
    assert all(share == 0.0 for share in settings["voices"]["off_voice_sounds"].values())
    assert keys_eval.as_dict()["settings"] == settings
    assert "## Settings (keys input)" in report_markdown([keys_eval])


def test_energy_that_changes_nothing_fails_its_check(model, songs):
    """A model whose energy rows are all alike plays every energy the same: the check must say so."""
    from chiptuner.evaluate.evaluation import settings_checks  # noqa: PLC0415
    from chiptuner.model.arranger import CONDITION_BLOCK, ROW_OFFSET  # noqa: PLC0415

    table = np.array(model.in_table)
    block = slice(int(ROW_OFFSET[CONDITION_BLOCK + 1]), int(ROW_OFFSET[CONDITION_BLOCK + 2]))
    table[block] = table[block].mean(axis=0)
    flat = dataclasses.replace(model, in_table=table)
    checks = settings_checks(flat, songs, [], seeds=(0,))
    levels = checks["energy"]["onsets_per_bar"]
    assert levels["low"] == levels["mid"] == levels["high"]
    assert checks["energy"]["passed"] is False
