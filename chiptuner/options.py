"""The command-line values of every front end, checked in one place (argparse types and the parser).

``chiptuner`` (``cli``) and ``chiptuner live`` (``live.command``) both build their parsers
from these, so a value means the same everywhere and a bad one is refused with the same
one line and exit code 2. Light on purpose: ``--help`` must answer before numba loads.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from chiptuner.errors import ParameterError
from chiptuner.scales import SCALE_CHOICES, SCALE_MODES, parse_scale

__all__ = [
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "OneLineParser",
    "int_at_least",
    "positive_float",
    "temperature",
    "bpm",
    "midi_channel",
    "lanes",
    "port",
    "scale",
    "swing",
    "SCALE_HELP",
    "SWING_HELP",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Exit with code 2 and one line naming the problem."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type = float):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None


def int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {minimum} or more")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = _number(text)
    if not value > 0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def temperature(text: str) -> float:
    """An argparse type: a sampling temperature within the arranger's range (``MIN_TEMPERATURE`` to ``MAX_``)."""
    # Imported when a temperature is given: the arranger module loads the numba kernels,
    # which the command needs next anyway, and --help stays instant.
    from chiptuner.model.arranger import MAX_TEMPERATURE, MIN_TEMPERATURE, TEMPERATURE_RANGE  # noqa: PLC0415

    value = _number(text)
    if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} is outside the range; give a number {TEMPERATURE_RANGE}")
    return value


def bpm(text: str) -> float:
    """An argparse type: a tempo from 20 to 400 BPM."""
    value = _number(text)
    if not 20.0 <= value <= 400.0:
        raise argparse.ArgumentTypeError(f"{text} BPM is outside 20-400")
    return value


def midi_channel(text: str) -> int:
    """An argparse type: a MIDI channel as people count them, 1-16; the value is 0-based."""
    value = _number(text, int)
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"channel {text} is not 1-16")
    return value - 1


def lanes(text: str) -> list[int]:
    """An argparse type: the five different MIDI notes of the five button lanes, e.g. 60,62,64,65,67."""
    try:
        notes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give five MIDI note numbers, e.g. 60,62,64,65,67") from None
    if len(notes) != 5 or len(set(notes)) != 5 or not all(0 <= n <= 127 for n in notes):
        raise argparse.ArgumentTypeError(f"{text!r}: give five different MIDI note numbers 0-127")
    return notes


def port(text: str) -> int:
    """An argparse type: a TCP port, 0-65535 (0: any free one)."""
    value = _number(text, int)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {text} is not 0-65535")
    return value


#: ``--scale``'s help: the accepted modes in full (``scales.SCALE_MODES``).
SCALE_HELP = (
    "lock every note the model picks to a scale, TONIC:MODE, e.g. C:major, A:minor, D:dorian; modes: "
    + ", ".join(SCALE_MODES)
    + " (default: off; in keys mode your own note is never changed)"
)
#: ``--swing``'s help.
SWING_HELP = "delay every off-beat 16th by S of a 16th, 0-0.5 (1/3: triplet feel; default: 0, straight)"


def scale(text: str):
    """An argparse type: a scale lock, ``TONIC:MODE`` (``chiptuner.scales``) or ``off``; None for off."""
    try:
        return parse_scale(text)
    except ParameterError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a scale; give {SCALE_CHOICES}") from None


def swing(text: str) -> float:
    """An argparse type: swing, 0 to 0.5 of a 16th; ``1/3`` (a fraction) is accepted."""
    numerator, slash, denominator = text.partition("/")
    try:
        value = float(numerator) / float(denominator) if slash else float(text)
    except (ValueError, ZeroDivisionError):
        value = float("nan")
    if not 0.0 <= value <= 0.5:  # NaN fails this too
        raise argparse.ArgumentTypeError(
            f"swing {text!r} is not 0-0.5 of a 16th; give e.g. 0 (straight), 1/3 (triplet feel) or 0.5"
        )
    return value
