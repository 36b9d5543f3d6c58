"""The ``chiptuner`` command: argument parsing, logging set-up, progress and errors.

Subcommands: ``convert`` (MIDI corpus to training shards), ``train`` (a model from
shards or MIDI folders) and ``tune`` (fine-tuning it on its own play; these two import
torch, lazily), ``calibrate`` (its sampling biases), ``arrange`` (a MIDI
file to its four-voice arrangement), ``render`` (a MIDI file through the chip synth to WAV),
``export`` (an arrangement to NSF, FamiTracker text or WAV), ``evaluate`` (the quality report).
Bad input (a missing folder,
no MIDI file found, an unwritable output folder, a full disk) is one line on stderr and exit code 2,
never a traceback; exit code 1 means some files ``failed`` (see the report).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from chiptuner import __version__, options
from chiptuner.chip_files import FORMATS, export_file, output_format
from chiptuner.corpus.convert import REPORT_NAME, convert_corpus
from chiptuner.errors import ChiptunerError, ParameterError
from chiptuner.melody import MaxOnsets
from chiptuner.model.arranger import (
    ACCOMPANIMENT,
    ENERGY_LEVELS,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    InputMode,
    load_model,
    parse_voices,
    style_index,
)
from chiptuner.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["main", "build_parser", "ProgressBar"]

logger = logging.getLogger("chiptuner")

EXIT_FAILED_FILES = 1


class ProgressBar:
    """A progress bar on one line of a terminal (tqdm's), fed as convert's ``progress`` callback.

    Shows the bar, done/total, time spent and left, the rate and, where given, the files
    ``ok``, ``rejected`` and ``failed`` so far. The commands draw it only where stderr is a
    terminal and INFO is logged; elsewhere the library's periodic log lines stand in.

    Parameters
    ----------
    stream : TextIO
        Where to draw (stderr).
    unit : str
        What is counted ("files", "songs").
    min_interval_sec : float
        Redraws closer together than this are skipped (the last one is always drawn).
    """

    def __init__(self, stream: TextIO, *, unit: str = "files", min_interval_sec: float = 0.1) -> None:
        self.stream = stream
        self.unit = unit
        self.min_interval_sec = min_interval_sec
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int, counts: Mapping[str, int]) -> None:
        """Move the bar to ``done`` of ``total``; ``counts`` may hold ok / rejected / failed."""
        if self._bar is None:  # made on the first call, which brings the total
            self._bar = tqdm(
                total=total, file=self.stream, unit=f" {self.unit}", mininterval=self.min_interval_sec,
                dynamic_ncols=True, leave=True,
            )  # fmt: skip
        bar = self._bar
        bar.total = total
        if counts:
            bar.set_postfix_str(
                f"ok {counts.get('ok', 0)} rej {counts.get('rejected', 0)} fail {counts.get('failed', 0)}",
                refresh=False,
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.refresh()

    def close(self) -> None:
        """End the bar's line."""
        if self._bar is not None:
            self._bar.close()


def build_parser() -> argparse.ArgumentParser:
    """Build the ``chiptuner`` argument parser with its subcommands."""
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv: all)"
    )
    verbosity.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="less log output")

    parser = options.OneLineParser(
        prog="chiptuner",
        description="Turn a simple melody into a four-voice NES / Game Boy arrangement.",
        parents=[verbosity],
    )
    parser.add_argument("--version", action="version", version=f"chiptuner {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=options.OneLineParser)
    commands.required = True

    commands.add_parser(
        "live",
        add_help=False,  # `chiptuner live --help` is the live command's own help
        help="play a melody on a MIDI keyboard, five buttons or in the browser; hear the band in real time",
        description="Play live (see `chiptuner live --help`).",
    )

    convert = commands.add_parser(
        "convert",
        parents=[verbosity],
        help="convert MIDI files into training shards",
        description=(
            "Convert every MIDI file (.mid .midi .kar .rmi) under SRC into training arrays: sharded .npz "
            f"files and {REPORT_NAME} in OUT_DIR. A re-run with the same OUT_DIR resumes: files already "
            "converted or rejected are skipped. One run at a time per OUT_DIR. Exit code 1 when some files failed."
        ),
    )
    convert.add_argument("sources", nargs="+", metavar="SRC", help="MIDI files or folders (searched recursively)")
    convert.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="output folder (created if needed)")
    convert.add_argument(
        "--workers", type=options.int_at_least(1), default=None, help="worker processes (default: one per CPU)"
    )
    convert.add_argument(
        "--max-onsets",
        choices=typing.get_args(MaxOnsets),
        default="beat",
        help="melody simplification: at most one onset per beat or per half beat (default: beat)",
    )
    convert.add_argument(
        "--timeout", type=options.positive_float, default=10.0, metavar="SEC", help="per-file time limit (default: 10)"
    )
    convert.add_argument(
        "--memory-mb",
        type=options.int_at_least(0),
        default=1024,
        metavar="MB",
        help="memory each worker may use beyond its start-up, 0 for no cap (default: 1024)",
    )
    convert.add_argument(
        "--songs-per-shard",
        type=options.int_at_least(1),
        default=256,
        metavar="N",
        help="songs per .npz shard (default: 256)",
    )
    convert.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help=(
            "convert on a Dask cluster: a scheduler's address (tcp://HOST:PORT), or local:N for N local worker "
            "processes; SRC and OUT_DIR must be at the same paths on every worker (needs chiptuner[cluster]; "
            "not with --workers)"
        ),
    )
    convert.set_defaults(run=_run_convert)

    train = commands.add_parser(
        "train",
        parents=[verbosity],
        help="train an arranger model (needs torch: pip install 'chiptuner[train]')",
        description=(
            "Train the arranger on a `chiptuner convert` output folder, or on MIDI files and folders "
            "(converted first into OUT.data/, resumable). Writes the best model by validation NLL to OUT "
            "after every improvement and a torch checkpoint to OUT.ckpt.pt."
        ),
    )
    train.add_argument("sources", nargs="+", metavar="SRC", help="a conversion folder, or MIDI files/folders")
    train.add_argument("-o", "--out", required=True, metavar="MODEL.npz", help="model file to write")
    train.add_argument("--minutes", type=options.positive_float, default=20.0, help="wall-clock budget (default: 20)")
    train.add_argument("--hidden", type=options.int_at_least(8), default=192, help="GRU state size (default: 192)")
    train.add_argument("--batch", type=options.int_at_least(1), default=64, help="windows per batch (default: 64)")
    train.add_argument("--window", type=options.int_at_least(16), default=128, help="steps per window (default: 128)")
    train.add_argument("--lr", type=options.positive_float, default=2e-3, help="learning rate (default: 0.002)")
    train.add_argument(
        "--eval-every",
        type=options.int_at_least(1),
        default=200,
        metavar="N",
        help="batches between validations (default: 200)",
    )
    train.add_argument(
        "--patience",
        type=options.int_at_least(1),
        default=5,
        help="validations without improvement before stopping (default: 5)",
    )
    train.add_argument(
        "--seed", type=options.int_at_least(0), default=0, help="seed of the split and the training (default: 0)"
    )
    train.add_argument(
        "--style",
        action="append",
        default=[],
        metavar="SOURCE=STYLE",
        help=(
            "the style the songs of a source folder train as (repeatable); by default each folder is its own "
            "style, named chip, pop or chorale for the corpora we know, else after the folder"
        ),
    )
    train.add_argument(
        "--sampled-inputs",
        type=float,
        default=0.25,
        metavar="SHARE",
        help="share of previous-token inputs replaced by the model's own samples (default: 0.25; 0 teacher-forced)",
    )
    train.add_argument("--resume", action="store_true", help="continue from OUT.ckpt.pt")
    train.set_defaults(run=_run_train)

    tune = commands.add_parser(
        "tune",
        parents=[verbosity],
        help="fine-tune a trained model on its own free-running play (needs torch)",
        description=(
            "Fine-tune MODEL on the melodies of its training songs, played free-running and rewarded by a "
            "discriminator that tells its windows from the real ones, with its likelihood on real windows kept "
            "in the loss. Keeps the model whose validation two-sample AUC is lowest, calibrates it and writes it "
            "to OUT (a torch checkpoint to OUT.ckpt.pt)."
        ),
    )
    tune.add_argument("model", metavar="MODEL.npz", help="a model written by `chiptuner train`")
    tune.add_argument("data", metavar="CONVERTED", help="the conversion folder the model was trained on")
    tune.add_argument("-o", "--out", required=True, metavar="OUT.npz", help="model file to write")
    tune.add_argument("--minutes", type=options.positive_float, default=40.0, help="wall-clock budget (default: 40)")
    tune.add_argument("--lr", type=options.positive_float, default=3e-4, help="learning rate (default: 0.0003)")
    tune.add_argument(
        "--reward-weight",
        type=options.positive_float,
        default=2.0,
        metavar="W",
        help="weight of the discriminators' reward against the likelihood (default: 2)",
    )
    tune.add_argument(
        "--band-penalty",
        type=options.positive_float,
        default=4.0,
        metavar="P",
        help="taken off the reward of a voice left on that is silent, or holds one note, for 2 bars (default: 4)",
    )
    tune.add_argument(
        "--eval-every", type=options.int_at_least(1), default=150, metavar="N",
        help="rounds between validation tests (default: 150)",
    )  # fmt: skip
    tune.add_argument("--seed", type=options.int_at_least(0), default=0, help="seed of the rollouts (default: 0)")
    tune.add_argument("--resume", action="store_true", help="continue from OUT.ckpt.pt")
    tune.set_defaults(run=_run_tune)

    calibrate = commands.add_parser(
        "calibrate",
        parents=[verbosity],
        help="refit a trained model's sampling biases on its validation songs (no torch needed)",
        description=(
            "Refit the rest biases and the harmony/key steering of MODEL on its own validation songs "
            "(those the model lists, else the split rebuilt from its training settings) and save MODEL in place. "
            "`chiptuner train` does this at its end; use it after changing chiptuner or on an older model."
        ),
    )
    calibrate.add_argument("model", metavar="MODEL.npz", help="a model written by `chiptuner train`")
    calibrate.add_argument("data", metavar="CONVERTED", help="the conversion folder the model was trained on")
    calibrate.set_defaults(run=_run_calibrate)

    arrange = commands.add_parser(
        "arrange",
        parents=[verbosity],
        help="arrange the melody of a MIDI file for the four chip voices",
        description=(
            "Read any MIDI file, take its melody (simplified as for training), play it through the model "
            "step by step as live, and write pulse1, pulse2, triangle and noise tracks to OUT."
        ),
    )
    arrange.add_argument("source", metavar="MELODY.mid", help="a MIDI file (a melody or a full song)")
    arrange.add_argument(
        "-o", "--out", required=True, metavar="OUT", help="file to write: .mid, or a chip file (.nsf, .txt, .wav)"
    )
    arrange.add_argument(
        "--format", choices=FORMATS, default=None, help="output format (default: from OUT's extension)"
    )
    arrange.add_argument(
        "--input",
        choices=typing.get_args(InputMode),
        default="keys",
        help="give the model pitches (keys) or only the 5-lane contour (buttons)",
    )
    arrange.add_argument("--seed", type=options.int_at_least(0), default=0, help="sampling seed (default: 0)")
    arrange.add_argument(
        "--temperature",
        type=options.temperature,
        default=1.0,
        help=f"sampling temperature, {MIN_TEMPERATURE}-{MAX_TEMPERATURE:g} (default: 1.0)",
    )
    arrange.add_argument("--model", default=None, metavar="PATH", help="model file (default: the shipped model)")
    arrange.add_argument("--gm-drums", action="store_true", help="noise voice on channel 10 (General MIDI drums)")
    arrange.add_argument(
        "--max-onsets", choices=typing.get_args(MaxOnsets), default="beat", help="melody simplification (default: beat)"
    )
    arrange.add_argument(
        "--style",
        default=None,
        metavar="NAME",
        help="the band's style, one of the model's (default: chip where it has it, else its first)",
    )
    arrange.add_argument(
        "--energy", choices=ENERGY_LEVELS, default="mid", help="how busy the accompaniment is (default: mid)"
    )
    arrange.add_argument(
        "--voices",
        default=None,
        metavar="LIST",
        help=f"accompaniment voices that play: any of {','.join(ACCOMPANIMENT)} (comma-separated), "
        "or none for the lead alone (default: all)",
    )
    arrange.add_argument("--scale", type=options.scale, default=None, metavar="TONIC:MODE", help=options.SCALE_HELP)
    arrange.add_argument("--swing", type=options.swing, default=0.0, metavar="S", help=options.SWING_HELP)
    arrange.set_defaults(run=_run_arrange)

    export = commands.add_parser(
        "export",
        parents=[verbosity],
        help="write a four-voice arrangement as a chip file (NSF, FamiTracker text, WAV)",
        description=(
            "Convert a four-voice arrangement (as `chiptuner arrange` writes it) into an NSF file for NSF players, "
            "FamiTracker text for FamiTracker, 0CC-/Dn-FamiTracker or FamiStudio, or WAV, all from one model of "
            "the NES's sound chip."
        ),
    )
    export.add_argument("source", metavar="ARRANGEMENT.mid", help="a four-voice arrangement MIDI file")
    export.add_argument("-o", "--out", required=True, metavar="OUT", help="file to write: .nsf, .txt or .wav")
    export.add_argument("--format", choices=FORMATS, default=None, help="output format (default: from OUT's extension)")
    export.add_argument(
        "--swing", type=options.swing, default=0.0, metavar="S",
        help="the swing the arrangement was written with (chiptuner arrange --swing S): the chip file swings too",
    )  # fmt: skip
    export.set_defaults(run=_run_export)

    render = commands.add_parser(
        "render",
        parents=[verbosity],
        help="play a MIDI file through the built-in chip synth into a WAV file",
        description=(
            "Render IN with the built-in NES-style synth (two pulses, triangle, noise) to 16-bit mono WAV. "
            "A file that follows the output contract (as `chiptuner arrange` writes it: channels 1-4, or 10 "
            "for drums) plays as written, CC 1 setting the pulse duty; any other song is first reduced to the "
            "four chip voices."
        ),
    )
    render.add_argument("source", metavar="IN.mid", help="a MIDI file")
    render.add_argument("-o", "--out", required=True, metavar="OUT.wav", help="WAV file to write")
    render.add_argument(
        "--sample-rate",
        type=options.int_at_least(8000),
        default=44100,
        metavar="HZ",
        help="samples per second (default: 44100)",
    )
    render.add_argument(
        "--gm-drums",
        action="store_true",
        help="the noise voice is on channel 10 (General MIDI drums); by default channel 4 or 10, whichever is used",
    )
    render.set_defaults(run=_run_render)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[verbosity],
        help="score a model's causal arrangements against real ones and three baselines",
        description=(
            "Arrange each song's melody causally, exactly as live, once per seed, by the model as shipped and "
            "sampling as trained (steering and rest biases off), and report per corpus (chip first) and per "
            "arrangement: the musical-quality metrics of the model, the real arrangements and three baselines, "
            "whether every voice plays, a classifier "
            "two-sample test against the real songs, and held-out NLL. SOURCES are MIDI files/folders or "
            "`chiptuner convert` folders (of which the model's held-out test songs are used)."
        ),
    )
    evaluate.add_argument("sources", nargs="+", metavar="SOURCES")
    evaluate.add_argument("--model", default=None, metavar="PATH", help="model file (default: the shipped model)")
    evaluate.add_argument(
        "--input",
        choices=(*typing.get_args(InputMode), "both"),
        default="both",
        help="input mode(s) to evaluate (default: both)",
    )
    evaluate.add_argument(
        "--max-songs", type=options.int_at_least(1), default=None, help="songs evaluated, spread evenly (default: all)"
    )
    evaluate.add_argument(
        "--bare",
        nargs="+",
        default=(),
        metavar="PATH",
        help="MIDI files/folders of bare melodies (a tune alone, as a player gives it), reported in a table of "
        "their own against the chip corpus's real figures",
    )
    evaluate.add_argument(
        "--max-bare", type=options.int_at_least(1), default=40, help="bare melodies used, spread evenly (default: 40)"
    )
    evaluate.add_argument("--seed", type=options.int_at_least(0), default=0, help="the first seed (default: 0)")
    evaluate.add_argument(
        "--seeds", type=options.int_at_least(1), default=3, help="seeds per song: --seed, --seed + 1, ... (default: 3)"
    )
    evaluate.add_argument("--temperature", type=options.temperature, default=1.0)
    evaluate.add_argument(
        "--workers", type=options.int_at_least(1), default=None, help="worker processes (default: one per CPU)"
    )
    evaluate.add_argument(
        "--report", default=None, metavar="DIR", help="write report.md, report.json and PNG piano rolls here"
    )
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.set_defaults(run=_run_evaluate)
    return parser


@contextlib.contextmanager
def logging_to_stderr(verbose: int, quiet: int) -> Iterator[None]:
    """Send chiptuner's log to stderr at the level of ``-v``/``-q`` while a command runs.

    The ``chiptuner`` logger is put back as it was afterwards, so calling ``main`` from
    Python (tests, notebooks) leaves no handler behind. ``chiptuner.live.command`` uses it too.
    """
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(verbose - quiet, logging.DEBUG)
    if verbose - quiet < -2:
        level = logging.CRITICAL
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if level <= logging.DEBUG else "%(message)s")
    )
    package_logger = logging.getLogger("chiptuner")
    root = logging.getLogger()
    saved = (package_logger.handlers[:], package_logger.level, package_logger.propagate, root.level)
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False
    if verbose - quiet >= 2:  # -vv: the libraries' own debug output too
        root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        package_logger.handlers[:], package_logger.level, package_logger.propagate = saved[:3]
        root.setLevel(saved[3])


def _run_convert(args: argparse.Namespace) -> int:
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and logger.isEnabledFor(logging.INFO) else None
    try:
        summary = convert_corpus(
            args.sources,
            args.out,
            workers=args.workers,
            max_onsets=args.max_onsets,
            timeout_sec=args.timeout,
            memory_mb=args.memory_mb,
            songs_per_shard=args.songs_per_shard,
            progress=bar,
            scheduler=args.scheduler,
        )
    finally:
        if bar is not None:
            bar.close()
    print(summary.line())
    if summary.top_reasons:
        logger.info("top rejection reasons: %s", "; ".join(f"{n} x {reason}" for reason, n in summary.top_reasons[:5]))
    if summary.failed:
        logger.warning("%d files failed: see %s/%s", summary.failed, args.out, REPORT_NAME)
        return EXIT_FAILED_FILES
    return EXIT_OK


def _training_data(sources: Sequence[str], out: str) -> str:
    """A conversion folder to train on: the source itself, or OUT.data/ converted from MIDI sources."""
    if len(sources) == 1 and Path(sources[0], REPORT_NAME).is_file():
        return sources[0]
    data_dir = f"{out}.data"
    logger.info("converting %s into %s first", " ".join(sources), data_dir)
    summary = convert_corpus(sources, data_dir)
    logger.info(summary.line())
    return data_dir


def _run_train(args: argparse.Namespace) -> int:
    try:
        from chiptuner.train import arranger as training  # noqa: PLC0415 (torch is heavy and optional)
    except ImportError as error:
        raise ParameterError(
            f"training needs torch ({error}); install it with: pip install 'chiptuner[train]'"
        ) from None
    styles = {}
    for pair in args.style:
        source, _, style = pair.partition("=")
        if not source or not style or "/" in source:
            raise ParameterError(
                f"--style {pair!r}: give SOURCE=STYLE, SOURCE the folder name a song id starts with "
                "(for example vgmusic_nes_gb=chip)"
            )
        styles[source] = style
    config = training.TrainConfig(
        hidden=args.hidden, batch=args.batch, window=args.window, lr=args.lr, max_minutes=args.minutes,
        eval_every=args.eval_every, patience=args.patience, seed=args.seed, sampled_inputs=args.sampled_inputs,
    )  # fmt: skip
    config.check()
    data_dir = _training_data(args.sources, args.out)
    tty = sys.stderr.isatty() and logger.isEnabledFor(logging.INFO)

    def show(report: dict) -> None:
        line = (
            f"batch {report['batch']:6d}  loss {report['loss']:.3f}  {report['steps_per_sec']:,.0f} steps/s  "
            f"{report['elapsed_sec'] / 60:5.1f} min"
        )
        if "val_nll" in report:
            model, real = report["free_run"]["model"], report["free_run"]["real"]
            line += (
                f"  val NLL {report['val_nll']:.3f} (buttons {report['val_nll_buttons']:.3f},"
                f" best {report['best_val_nll']:.3f})"
                f"  silence {model['silence']:.2f}/{real['silence']:.2f}"
                f"  onsets/bar p2 {model['density'][1]:.1f}/{real['density'][1]:.1f}"
                f" tri {model['density'][2]:.1f}/{real['density'][2]:.1f}"
                f" noise {model['density'][3]:.1f}/{real['density'][3]:.1f}"
            )
            if tty:
                sys.stderr.write("\r" + " " * 160 + "\r")
            logger.info(line)
        elif tty and report["batch"] % 10 == 0:
            sys.stderr.write("\r" + line.ljust(100)[:160])
            sys.stderr.flush()

    model = training.train(
        data_dir, args.out, config=config, resume=args.resume, progress=show, command=" ".join(sys.argv),
        styles=styles,
    )  # fmt: skip
    meta = model.metadata
    print(
        f"wrote {args.out}: validation NLL {meta['val_nll']:.3f} after {meta['batch']} batches, "
        f"{meta['train_seconds'] / 60:.1f} min, {model.n_parameters:,} weights"
    )
    return EXIT_OK


def _run_tune(args: argparse.Namespace) -> int:
    try:
        from chiptuner.train import tune as tuning  # noqa: PLC0415 (torch is heavy and optional)
    except ImportError as error:
        raise ParameterError(f"tuning needs torch ({error}); install it with: pip install 'chiptuner[train]'") from None
    config = tuning.TuneConfig(
        max_minutes=args.minutes, lr=args.lr, reward_weight=args.reward_weight, band_penalty=args.band_penalty,
        eval_every=args.eval_every, seed=args.seed,
    )  # fmt: skip
    config.check()

    def show(report: dict) -> None:
        if "val_auc" in report:
            logger.info(
                "round %6d  NLL %.3f  reward %+.2f  band faults %.1f%%  %5.1f min  val AUC %.3f (kept %.3f)%s  "
                "val NLL %.3f  holes %.1f%%  longest run of one pitch p98 %.0f notes",
                report["round"], report["running_nll"], report["running_reward"], 100 * report.get("faults", 0.0),
                report["elapsed_sec"] / 60, report["val_auc"], report["best_val_auc"],
                f"  other songs {report['val_confirm_auc']:.3f}" if "val_confirm_auc" in report else "",
                report["val_nll"], 100 * report["val_holes"], report["val_stuck"],
            )  # fmt: skip

    model = tuning.tune(
        args.model, args.data, args.out, config=config, resume=args.resume, progress=show, command=" ".join(sys.argv)
    )
    tuned = model.metadata["tune"]
    if tuned["rounds"] == 0:
        print(
            f"wrote {args.out}: no round kept the band and beat the start's validation AUC "
            f"({tuned['val_auc_before']:.3f}), so it holds the start's weights, recalibrated"
        )
    else:
        print(
            f"wrote {args.out}: validation AUC {tuned['val_auc_before']:.3f} -> {tuned['val_auc']:.3f} "
            f"(round {tuned['rounds']}), validation NLL {model.metadata['val_nll']:.3f}"
        )
    return EXIT_OK


def _run_calibrate(args: argparse.Namespace) -> int:
    from chiptuner.corpus.dataset import model_songs, open_conversion, songs_with_ids, style_of  # noqa: PLC0415
    from chiptuner.model.calibration import calibrate  # noqa: PLC0415

    model = load_model(args.model)
    corpus = open_conversion(args.data, args.model)
    val = model_songs(model, corpus.song_ids, "val", args.data)
    songs = [{**song, "style": style_of(model, song["song_id"])} for song in songs_with_ids(corpus, val)]
    meta = calibrate(model, songs).metadata
    dataclasses.replace(model, metadata=meta).save(args.model)
    print(
        f"wrote {args.model}: rest bias {meta['rest_bias']}, clash bias {meta['clash_bias']}, "
        f"key bias {meta['key_bias']}"
    )
    return EXIT_OK


def _run_arrange(args: argparse.Namespace) -> int:
    from chiptuner.arrange import arrange_file  # noqa: PLC0415 (keeps `chiptuner convert` start-up light)

    chip_format = output_format(args.out, args.format)
    model = load_model(args.model)
    # The settings are checked against the model before the melody is read (a ParameterError: one line, exit 2).
    voices = parse_voices(args.voices)
    if args.style is not None:
        style_index(model, args.style)
    with tempfile.TemporaryDirectory() as folder:
        # A chip file is exported from the arrangement's MIDI file, exactly as `chiptuner export` does it.
        midi_out = args.out if chip_format == "midi" else os.path.join(folder, "arrangement.mid")
        result = arrange_file(
            args.source, midi_out, model=model, mode=args.input, seed=args.seed, temperature=args.temperature,
            max_onsets=args.max_onsets, gm_drums=args.gm_drums, style=args.style, energy=args.energy, voices=voices,
            scale=args.scale, swing=args.swing,
        )  # fmt: skip
        if chip_format != "midi":
            export_file(midi_out, args.out, format=chip_format, title=Path(args.source).stem, swing=args.swing)
    counts = result.arrangement.onset.sum(axis=0).tolist()
    print(
        f"wrote {args.out}: {result.n_steps} steps; notes pulse1 {counts[0]}, pulse2 {counts[1]}, "
        f"triangle {counts[2]}, noise {counts[3]}"
    )
    return EXIT_OK


def _run_export(args: argparse.Namespace) -> int:
    chip_format, size = export_file(args.source, args.out, format=args.format, swing=args.swing)
    print(f"wrote {args.out}: {chip_format}, {size:,} bytes")
    return EXIT_OK


def _run_render(args: argparse.Namespace) -> int:
    from chiptuner.synth import render_score, write_wav  # noqa: PLC0415 (keeps `chiptuner convert` start-up light)

    audio = render_score(args.source, sample_rate=args.sample_rate, gm_drums=True if args.gm_drums else None)
    write_wav(args.out, audio, sample_rate=args.sample_rate)
    print(f"wrote {args.out}: {len(audio) / args.sample_rate:.1f} s, {args.sample_rate} Hz")
    return EXIT_OK


def _run_evaluate(args: argparse.Namespace) -> int:
    from chiptuner.evaluate.evaluation import (  # noqa: PLC0415 (keeps `chiptuner convert` start-up light)
        evaluate,
        load_bare_melodies,
        load_songs,
        report_markdown,
        write_report,
    )

    model = load_model(args.model)
    songs = load_songs(args.sources, model, max_songs=args.max_songs)
    bare = load_bare_melodies(args.bare, max_songs=args.max_bare) if args.bare else []
    modes = typing.get_args(InputMode) if args.input == "both" else (args.input,)
    seeds = range(args.seed, args.seed + args.seeds)
    workers = args.workers or os.cpu_count() or 1
    results = []
    for mode in modes:
        bar = (
            ProgressBar(sys.stderr, unit="songs") if sys.stderr.isatty() and logger.isEnabledFor(logging.INFO) else None
        )
        try:
            progress = (lambda done, total, bar=bar: bar(done, total, {})) if bar else None
            results.append(
                evaluate(
                    model,
                    songs,
                    mode=mode,
                    seeds=seeds,
                    temperature=args.temperature,
                    bare=bare,
                    workers=min(workers, len(songs) + len(bare)),
                    progress=progress,
                )  # fmt: skip
            )
        finally:
            if bar is not None:
                bar.close()
    if args.report:
        logger.info("wrote %s", write_report(results, args.report))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        print(report_markdown(results))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chiptuner`` command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` by default.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if command is not None and argv[command] == "live":
        # The live command parses its own options (its parser stays light for an instant --help).
        from chiptuner.live.command import main as live  # noqa: PLC0415

        return live([*argv[command + 1 :], *argv[:command]])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with logging_to_stderr(getattr(args, "verbose", 0), getattr(args, "quiet", 0)):
            return args.run(args)
    except ChiptunerError as error:
        print(f"chiptuner {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # disk full, output folder removed under us
        print(f"chiptuner {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"chiptuner {args.command}: interrupted (a re-run resumes where it stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
