"""``chiptuner live`` (and ``python -m chiptuner.live``): play a melody, hear the four-voice chip band in real time.

The front end of ``chiptuner.live.engine`` for the terminal: it parses the options, warms the
kernels up, opens the MIDI ports (or, with ``--demo``, plays a bundled melody), runs the
engine until Ctrl-C, and writes the session. Heavy modules are imported after the options
are parsed, so ``--help`` answers at once. With ``--web`` the browser front end
(``chiptuner.live.web``) takes over.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from chiptuner import options
from chiptuner.errors import MidiSystemError, ParameterError
from chiptuner.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["main", "build_parser", "demo_melody_path", "DEMO_MELODY"]

logger = logging.getLogger("chiptuner.live.command")  # also when run as __main__

_IMPORTED = time.perf_counter()


def _seconds_since_start() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere since this module loaded)."""
    try:
        with open("/proc/self/stat", "rb") as stat, open("/proc/uptime", "rb") as uptime:
            started_ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


#: Said once while the kernels load slowly, which is numba compiling them (a start from its cache is quick).
COMPILING = "compiling the kernels with numba: about 20 s the first time, then cached (a later start takes about 1 s)"
#: A start from numba's cache loads every kernel in about 0.7 s; a load still running after this is compiling.
COMPILE_NOTICE_AFTER_SEC = 2.0


@contextlib.contextmanager
def compile_notice(after_sec: float = COMPILE_NOTICE_AFTER_SEC) -> Iterator[Callable[[], None]]:
    """Log ``COMPILING`` once if the block (loading the kernels) is still running after ``after_sec``.

    numba cannot say cheaply, before loading a kernel, whether its cache holds it (the cache is
    keyed by the source file's time stamp, the numba version and each signature), so the wait
    tells: a cold cache, a changed kernel or a new numba make the first start compile for about
    20 s, and only then is the line said. Yields a function that ends the wait early.
    """
    timer = threading.Timer(after_sec, logger.info, args=(COMPILING,))
    timer.daemon = True
    timer.start()
    try:
        yield timer.cancel
    finally:
        timer.cancel()


#: The demo's melody, shipped inside the package.
DEMO_MELODY = "examples/ode_to_joy_melody.mid"
#: ``chiptuner.model.arranger.ENERGY_LEVELS``, for ``--energy`` (that module loads numba: too heavy for ``--help``).
ENERGY_LEVELS = ("low", "mid", "high")


def build_parser(prog: str = "chiptuner live") -> argparse.ArgumentParser:
    """The options of ``chiptuner live`` (also ``python -m chiptuner.live``)."""
    parser = options.OneLineParser(
        prog=prog,
        description=(
            "Play a melody on a MIDI keyboard (or five buttons) and hear it back as a four-voice "
            "NES / Game Boy band: pulse1 plays your note at once, pulse2, triangle and noise answer "
            "on every 16th note. The session is recorded to session.mid (and session.wav)."
        ),
    )
    source = parser.add_argument_group("what to play")
    source.add_argument("--demo", action="store_true", help="play the bundled melody through the engine, no devices")
    source.add_argument("--fast", action="store_true", help="with --demo: as fast as possible instead of at tempo")
    source.add_argument("--seconds", type=options.positive_float, default=None, help="stop after this many seconds")
    ports = parser.add_argument_group("MIDI ports")
    ports.add_argument("--list-ports", action="store_true", help="list the MIDI ports and exit")
    ports.add_argument(
        "--in", dest="in_port", metavar="NAME", help="input port (substring); default: virtual chiptuner:in"
    )
    ports.add_argument(
        "--out",
        metavar="NAME|DIR",
        help="output port (substring; default: virtual chiptuner:out); with --demo: the folder for the session",
    )
    ports.add_argument("--midi-api", choices=("auto", "alsa", "jack", "coremidi", "winmm"), default="auto")
    ports.add_argument(
        "--in-channel", type=options.midi_channel, default=None, metavar="1-16", help="only notes on this channel"
    )
    ports.add_argument("--gm-drums", action="store_true", help="noise voice on channel 10 (General MIDI drums)")
    timing = parser.add_argument_group("tempo")
    timing.add_argument("--bpm", type=options.bpm, default=120.0, help="tempo, 16th-note steps (default: 120)")
    follow = timing.add_mutually_exclusive_group()
    follow.add_argument("--follow", action="store_true", help="follow the tempo of your own playing after a count-in")
    follow.add_argument("--clock", action="store_true", help="follow MIDI clock from the input (start/stop/continue)")
    follow.add_argument(
        "--clock-out", action="store_true",
        help="lead: send MIDI clock (24 per beat), song position, start and stop on the output (JACK)",
    )  # fmt: skip
    timing.add_argument("--swing", type=options.swing, default=0.0, metavar="S", help=options.SWING_HELP)
    timing.add_argument("--metronome", action="store_true", help="click every beat")
    timing.add_argument(
        "--count-in", type=options.int_at_least(0), default=None, metavar="BARS",
        help="bars of clicks before the band plays (default: 1 with --follow, else 0)",
    )  # fmt: skip
    timing.add_argument(
        "--grace", type=float, default=40.0, metavar="MS",
        help="a note this late after a step still counts for it (default: 40)",
    )  # fmt: skip
    playing = parser.add_argument_group("playing")
    playing.add_argument(
        "--buttons", action="store_true", help="5-button mode: five notes are lanes, the model picks pitches"
    )
    playing.add_argument(
        "--lanes", type=options.lanes, default=None, metavar="N,N,N,N,N",
        help="with --buttons: the five MIDI notes of lanes 0-4 (default: the first five you press)",
    )  # fmt: skip
    playing.add_argument(
        "--temperature", type=options.temperature, default=1.0, help="pitch temperature, 0.05-10 (default: 1.0)"
    )
    playing.add_argument("--seed", type=options.int_at_least(0), default=0, help="sampling seed (default: 0)")
    playing.add_argument(
        "--style", default=None, metavar="NAME", help="the band's style, one of the model's (default: chip)"
    )
    playing.add_argument(
        "--energy", choices=ENERGY_LEVELS, default="mid", help="how busy the accompaniment is (default: mid)"
    )
    playing.add_argument(
        "--voices", default=None, metavar="LIST",
        help="accompaniment voices that play: any of pulse2,triangle,noise (comma-separated), or none (default: all)",
    )  # fmt: skip
    playing.add_argument("--scale", type=options.scale, default=None, metavar="TONIC:MODE", help=options.SCALE_HELP)
    playing.add_argument("--model", default=None, metavar="PATH", help="model file (default: the shipped model)")
    output = parser.add_argument_group("sound and recording")
    output.add_argument("--record", default=".", metavar="DIR", help="folder for session.mid/.wav (default: .)")
    output.add_argument("--no-record", action="store_true", help="do not write the session")
    output.add_argument("--no-sound", action="store_true", help="no audio: no chip synth, no session.wav")
    output.add_argument(
        "--latency", type=options.positive_float, default=20.0, metavar="MS", help="audio buffer (default: 20)"
    )
    web = parser.add_argument_group("in the browser")
    web.add_argument(
        "--web", action="store_true",
        help="serve a page to play with the computer keyboard, five buttons or a MIDI keyboard (WebMIDI), "
        "with the band on a WebAudio chip synth and a scrolling piano roll",
    )  # fmt: skip
    web.add_argument("--host", default="127.0.0.1", help="with --web: address to listen on (default: 127.0.0.1)")
    web.add_argument(
        "--port", type=options.port, default=8765, help="with --web: port (default: 8765; 0: any free one)"
    )
    web.add_argument("--no-browser", action="store_true", help="with --web: print the address, open no browser")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="count", default=0)
    return parser


def demo_melody_path() -> Path:
    """The bundled demo melody (a MIDI file inside the package)."""
    return Path(__file__).resolve().parents[1] / DEMO_MELODY


def _demo_messages(bpm: float, repeats: int = 2) -> tuple[list[tuple[float, tuple[int, ...]]], float]:
    """The bundled melody as timed note messages at ``bpm``, and its length in seconds."""
    from chiptuner.midi_io import read_midi  # noqa: PLC0415

    score = read_midi(demo_melody_path())
    notes = score.notes
    sec_per_tick = 60.0 / bpm / score.ticks_per_beat
    length = float(notes.end_tick.max()) * sec_per_tick if len(notes) else 0.0
    # Whole bars: a repeat starts on a downbeat.
    bar_sec = 4 * 60.0 / bpm
    length = max(bar_sec, -(-length // bar_sec) * bar_sec)
    messages = []
    for r in range(repeats):
        offset = r * length
        for start, end, pitch in zip(notes.start_tick, notes.end_tick, notes.pitch, strict=True):
            messages.append((offset + start * sec_per_tick, (0x90, int(pitch), 100)))
            messages.append((offset + end * sec_per_tick - 1e-4, (0x80, int(pitch), 0)))
    return messages, repeats * length


def main(argv: Sequence[str] | None = None, *, prog: str = "chiptuner live") -> int:
    """Run the live command; returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    from chiptuner.cli import logging_to_stderr  # noqa: PLC0415 (keeps --help instant)
    from chiptuner.errors import ChiptunerError  # noqa: PLC0415

    try:
        with logging_to_stderr(args.verbose, args.quiet):
            return _run(args)
    except ChiptunerError as error:
        print(f"chiptuner live: {error}", file=sys.stderr)  # noqa: T201 (the command's one-line refusal)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.web:
        with compile_notice() as kernels_ready:
            from chiptuner.live.web import server  # noqa: PLC0415 (the browser front end: websockets, only with --web)

            return server.run(_web_options(args), seconds_since_start=_seconds_since_start, kernels_ready=kernels_ready)
    from chiptuner.live import ports  # noqa: PLC0415

    if args.list_ports:  # before numba and the model load
        api, inputs, outputs = ports.list_ports(args.midi_api)
        # The listing is the command's answer, on stdout.
        print(f"MIDI API: {api}")  # noqa: T201
        print("inputs:  " + (", ".join(inputs) or "none"))  # noqa: T201
        print("outputs: " + (", ".join(outputs) or "none"))  # noqa: T201
        return EXIT_OK
    if args.clock_out and args.demo:
        raise ParameterError("--clock-out needs a MIDI output port; it cannot be used with --demo")
    sound = not args.no_sound
    with compile_notice():
        # Imported here, after parsing: numba and the model take a moment to load.
        from chiptuner.live import engine as eng  # noqa: PLC0415
        from chiptuner.model.arranger import Arranger, load_model, warmup  # noqa: PLC0415

        model = load_model(args.model)
        arranger = Arranger(
            model, mode="buttons" if args.buttons else "keys", temperature=args.temperature, seed=args.seed,
            style=args.style, energy=args.energy, voices=args.voices, scale=args.scale,
        )  # fmt: skip
        warmup(model)  # compile or load every kernel before any port opens
        if sound:
            from chiptuner import synth  # noqa: PLC0415

            synth.warmup()
    count_in_bars = args.count_in if args.count_in is not None else (1 if args.follow else 0)
    count_in_steps = count_in_bars * eng.STEPS_PER_BAR
    if args.follow:
        tempo = eng.FollowTempo(args.bpm, count_in_steps=count_in_steps)
    elif args.clock:
        tempo = eng.MidiClockTempo(args.bpm)
    else:
        tempo = eng.FixedTempo(args.bpm)
    recorder = eng.Recorder()
    outputs: list = []
    midi_ports = None
    audio = None
    record_dir = Path(args.record)
    until = None
    if args.demo:
        if args.out:
            record_dir = Path(args.out)
        messages, length = _demo_messages(args.bpm)
        until = length + 0.5 if args.seconds is None else args.seconds
        if args.fast:
            timeline = eng.Timeline(messages)
            clock, inbox = timeline, timeline
        else:
            clock = time.perf_counter
            inbox = eng.Replay(messages, clock=clock)
            until += clock()
    else:
        midi_ports = ports.open_ports(args.in_port, args.out, api=args.midi_api)
        if args.clock_out and not hasattr(midi_ports.output, "clock_start"):
            midi_ports.close()
            raise MidiSystemError(
                f"--clock-out needs the JACK MIDI API (the {midi_ports.api} port cannot time clock pulses); "
                "start a JACK server and use --midi-api jack"
            )
        clock, inbox = time.perf_counter, midi_ports.inbox
        outputs.append(midi_ports.output)
        if args.seconds is not None:
            until = clock() + args.seconds
    if sound and not (args.demo and args.fast):
        from chiptuner.live import audio as audio_out  # noqa: PLC0415

        audio = audio_out.open_stream(latency_sec=args.latency / 1000.0, gm_drums=args.gm_drums)
        if audio is not None:
            outputs.append(audio)
    try:
        engine = eng.Engine(
            arranger, clock=clock, inbox=inbox, outputs=outputs, tempo=tempo,
            recorder=None if args.no_record else recorder, grace_sec=args.grace / 1000.0, in_channel=args.in_channel,
            buttons=eng.ButtonMap(args.lanes) if args.lanes else None, gm_drums=args.gm_drums,
            metronome=args.metronome, count_in_steps=count_in_steps, swing=args.swing,
            clock_out=midi_ports.output if args.clock_out else None,
        )  # fmt: skip
    except BaseException:  # a setting refused: the ports and the stream must not outlive the command
        _close(midi_ports, audio)
        raise
    where = "demo" if args.demo else f"in {midi_ports.inbox.name}, out {midi_ports.output.name} ({midi_ports.api})"
    logger.info(
        "ready in %.2f s: %s, %s mode, %s%s; Ctrl-C stops",
        _seconds_since_start(), where, "buttons" if args.buttons else "keys",
        "MIDI clock" if args.clock else f"{args.bpm:g} BPM" + (" (following you)" if args.follow else "")
        + (" (leading by MIDI clock)" if args.clock_out else ""),
        "" if audio is not None or not sound else ", no live audio",
    )  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _interrupt)
    interrupted = False
    try:
        report = engine.run(until_sec=until)
    except KeyboardInterrupt:
        interrupted = True
        report = engine.report()
    finally:
        signal.signal(signal.SIGTERM, previous)
        _close(midi_ports, audio)
        if not args.no_record:
            from chiptuner.live.session import write_session  # noqa: PLC0415

            files = write_session(recorder, record_dir, bpm=args.bpm, sound=sound)
            logger.info("wrote %s%s (%.1f s)", files.midi, f" and {files.wav}" if files.wav else "", files.seconds)
    logger.info(report.summary())
    if midi_ports is not None and midi_ports.summary():
        logger.info(midi_ports.summary())
    if audio is not None:
        logger.info(audio.summary())
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


#: Options that have no meaning in the browser (the page picks the input and the tempo), with their defaults.
_NOT_FOR_WEB = {
    "demo": False, "fast": False, "list_ports": False, "in_port": None, "out": None, "midi_api": "auto",
    "in_channel": None, "gm_drums": False, "follow": False, "clock": False, "count_in": None, "lanes": None,
    "clock_out": False,
}  # fmt: skip


def _web_options(args: argparse.Namespace):
    """``--web``'s options as ``web.server.WebOptions``; options the page has no use for are refused in one line."""
    from chiptuner.live.web.protocol import Settings  # noqa: PLC0415
    from chiptuner.live.web.server import WebOptions  # noqa: PLC0415
    from chiptuner.model.arranger import parse_voices  # noqa: PLC0415

    clashing = [name for name, default in _NOT_FOR_WEB.items() if getattr(args, name, default) != default]
    if clashing:
        options = ", ".join("--" + name.replace("_", "-").replace("in-port", "in") for name in clashing)
        raise ParameterError(
            f"{options} cannot be used with --web (the page picks the input and tempo, and has no MIDI out)"
        )
    settings = Settings(
        bpm=args.bpm, mode="buttons" if args.buttons else "keys", temperature=args.temperature,
        metronome=args.metronome, seed=args.seed, style=args.style, energy=args.energy,
        voices=parse_voices(args.voices), scale=args.scale.name if args.scale else "off", swing=args.swing,
    )  # fmt: skip
    return WebOptions(
        settings=settings, host=args.host, port=args.port, open_browser=not args.no_browser, seconds=args.seconds,
        grace_ms=args.grace, record_dir=None if args.no_record else Path(args.record), sound=not args.no_sound,
        model=args.model,
    )  # fmt: skip


def _close(midi_ports, audio) -> None:
    """Close the MIDI ports, then the audio stream (a JACK client waits for an engine no more)."""
    if midi_ports is not None:
        midi_ports.close()
    if audio is not None:
        audio.close()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
