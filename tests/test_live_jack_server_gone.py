"""The engine when its JACK server goes away mid-session (a server of its own, killed).

A module of its own: libjack connects one process to one server at a time, so this test's
server can only come up once tests/test_live_jack.py's module server is gone.
"""

from __future__ import annotations

from pathlib import Path

import mido

from tests.jack import SERVERS, Player, engine_ports, jack_server, play_melody, start_live

MELODY = [60, 62, 64, 65]


def _input_notes(path: Path) -> list[int]:
    track = next(t for t in mido.MidiFile(path).tracks if t.name == "input")
    return [m.note for m in track if m.type == "note_on" and m.velocity > 0]


def test_the_jack_server_going_away_ends_in_one_line_with_the_session_kept(tmp_path):
    with jack_server() as env:
        live = start_live(["--midi-api", "jack", "--no-sound", "--record", str(tmp_path), "--seconds", "60"], env)
        try:
            player = Player(*engine_ports())
            play_melody(player, MELODY, beat_sec=0.2)
            player.close()
            SERVERS[env["JACK_DEFAULT_SERVER"]].kill()
            code = live.wait(30)
        finally:
            live.stop()
    assert code == 2, live.stderr
    lines = live.stderr.strip().splitlines()
    assert lines[-1].startswith("chiptuner live: ") and "JACK server stopped" in lines[-1], live.stderr
    # Only chiptuner's own lines: no traceback, no libjack chatter.
    own = ("compiling the kernels ", "ready in ", "wrote ", "chiptuner live: ")
    assert all(line.startswith(own) for line in lines), live.stderr
    assert _input_notes(tmp_path / "session.mid") == MELODY
