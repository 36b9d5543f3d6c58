"""The ``chiptuner`` command: argument parsing, logging set-up, progress and errors.

Subcommands: ``convert`` (MIDI corpus to training shards). Bad input (a missing folder,
no MIDI file found, an unwritable output folder) is one line on stderr and exit code 2,
never a traceback; exit code 1 means some files ``failed`` (see the report).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import typing
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

from chiptuner import __version__
from chiptuner.convert import REPORT_NAME, convert_corpus
from chiptuner.errors import ChiptunerError
from chiptuner.melody import MaxOnsets

__all__ = ["main", "build_parser", "ProgressBar"]

logger = logging.getLogger("chiptuner")

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class ProgressBar:
    r"""A one-line progress bar redrawn with ``\r`` on a terminal.

    Parameters
    ----------
    stream : TextIO
        Where to draw (stderr).
    width : int
        Characters of the bar itself.
    min_interval_sec : float
        Redraws closer together than this are skipped (the last one is always drawn).
    """

    def __init__(self, stream: TextIO, *, width: int = 28, min_interval_sec: float = 0.1) -> None:
        self.stream = stream
        self.width = width
        self.min_interval_sec = min_interval_sec
        self.t0 = time.monotonic()
        self.last_draw = -1e9
        self.drawn = False

    def __call__(self, done: int, total: int, counts: Mapping[str, int]) -> None:
        """Redraw for ``done`` of ``total`` files."""
        now = time.monotonic()
        if done < total and now - self.last_draw < self.min_interval_sec:
            return
        self.last_draw = now
        fraction = done / total if total else 1.0
        filled = int(round(fraction * self.width))
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"{(total - done) / rate:4.0f}s left" if rate > 0 and done < total else ""
        line = (
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
            f"ok {counts.get('ok', 0)} rej {counts.get('rejected', 0)} fail {counts.get('failed', 0)} "
            f"{rate:5.1f} files/s {eta}"
        )
        self.stream.write(line.ljust(100)[:120])
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {minimum} or more")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the ``chiptuner`` argument parser with its subcommands."""
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv: all)"
    )
    verbosity.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="less log output")

    parser = _Parser(
        prog="chiptuner",
        description="Turn a simple melody into a four-voice NES / Game Boy arrangement.",
        parents=[verbosity],
    )
    parser.add_argument("--version", action="version", version=f"chiptuner {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    convert = commands.add_parser(
        "convert",
        parents=[verbosity],
        help="convert MIDI files into training shards",
        description=(
            "Convert every MIDI file (.mid .midi .kar .rmi) under SRC into training arrays: sharded .npz "
            f"files and {REPORT_NAME} in OUT_DIR. A re-run with the same OUT_DIR resumes: files already "
            "converted or rejected are skipped. Exit code 1 when some files failed."
        ),
    )
    convert.add_argument("sources", nargs="+", metavar="SRC", help="MIDI files or folders (searched recursively)")
    convert.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="output folder (created if needed)")
    convert.add_argument(
        "--workers", type=_int_at_least(1), default=None, help="worker processes (default: one per CPU)"
    )
    convert.add_argument(
        "--max-onsets",
        choices=typing.get_args(MaxOnsets),
        default="beat",
        help="melody simplification: at most one onset per beat or per half beat (default: beat)",
    )
    convert.add_argument(
        "--timeout", type=_positive_float, default=10.0, metavar="SEC", help="per-file time limit (default: 10)"
    )
    convert.add_argument(
        "--memory-mb",
        type=_int_at_least(0),
        default=1024,
        metavar="MB",
        help="memory each worker may use beyond its start-up, 0 for no cap (default: 1024)",
    )
    convert.add_argument(
        "--songs-per-shard", type=_int_at_least(1), default=256, metavar="N", help="songs per .npz shard (default: 256)"
    )
    convert.set_defaults(run=_run_convert)
    return parser


def _configure_logging(verbose: int, quiet: int) -> None:
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(verbose - quiet, logging.DEBUG)
    if verbose - quiet < -2:
        level = logging.CRITICAL
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if level <= logging.DEBUG else "%(message)s")
    )
    root = logging.getLogger("chiptuner")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose - quiet >= 2:  # -vv: the libraries' own debug output too
        logging.getLogger().setLevel(logging.DEBUG)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chiptuner`` command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` by default.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", 0))
    try:
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
