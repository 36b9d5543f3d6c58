"""The live engine on virtual time: timing design, tempo sources, buttons, abuse, recording."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from chiptuner.errors import ParameterError
from chiptuner.live.engine import (
    METRONOME_CHANNEL,
    TRACK_INPUT,
    ButtonMap,
    Engine,
    FixedTempo,
    FollowTempo,
    MidiClockTempo,
    Recorder,
    Timeline,
)
from chiptuner.live.session import write_session
from chiptuner.model.arranger import Arranger, load_model, tokens_to_arrangement

STEP_SEC = 0.125  # 16th notes at 120 BPM


@pytest.fixture(scope="module")
def model():
    return load_model()


class Capture:
    """An output that keeps every message with the virtual time it was sent at."""

    def __init__(self, clock):
        self.clock = clock
        self.sent: list[tuple[float, tuple[int, ...]]] = []

    def send(self, message):
        self.sent.append((self.clock(), tuple(message)))

    def notes(self, channel):
        return [(t, m[1]) for t, m in self.sent if m[0] == 0x90 | channel and m[2] > 0]

    def sounding_at(self, channel, time_sec):
        """The pitch sounding on ``channel`` at ``time_sec`` (-1 for none), from the sent messages."""
        pitch = -1
        for t, m in self.sent:
            if t > time_sec:
                break
            if m[0] == 0x90 | channel and m[2] > 0:
                pitch = m[1]
            elif (m[0] == 0x80 | channel or m[0] == 0x90 | channel) and m[1] == pitch:
                pitch = -1
            elif m[0] == 0xB0 | channel and m[1] == 123:
                pitch = -1
        return pitch


def melody_messages(pitches, onset_steps, offset_sec, hold_steps=3):
    messages = []
    for pitch, step in zip(pitches, onset_steps, strict=True):
        t = step * STEP_SEC + offset_sec
        messages.append((t, (0x90, pitch, 100)))
        messages.append((t + hold_steps * STEP_SEC - 0.03, (0x80, pitch, 0)))
    return messages


def offline_voices(model, pitches, onset_steps, n_steps, hold_steps=3, seed=0):
    melody = np.full(n_steps, -1)
    onset = np.zeros(n_steps, dtype=bool)
    for pitch, step in zip(pitches, onset_steps, strict=True):
        melody[step : step + hold_steps] = pitch
        onset[step] = True
    tokens = Arranger(model, seed=seed).run(melody, onset, np.arange(n_steps) % 16)
    return tokens_to_arrangement(tokens).pitch


PITCHES = [64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64, 64, 62, 62, 55] * 2
ONSETS = list(range(4, 4 * len(PITCHES) + 4, 4))


@pytest.mark.parametrize("offset_sec", [-0.03, 0.0, 0.02])
def test_the_engine_plays_what_the_offline_run_plays(model, offset_sec):
    """Notes a little early (pending for the step) or late (inside the grace window) land on their step."""
    n_steps = 4 * len(PITCHES) + 4
    timeline = Timeline(melody_messages(PITCHES, ONSETS, offset_sec))
    out = Capture(timeline)
    engine = Engine(Arranger(model, seed=0), clock=timeline, inbox=timeline, outputs=[out], grace_sec=0.04)
    report = engine.run(max_steps=n_steps)
    expected = offline_voices(model, PITCHES, ONSETS, n_steps)
    for step in range(n_steps - 1):
        after = step * STEP_SEC + 0.05  # after the grace window, before the next step
        for voice, channel in ((1, 1), (2, 2), (3, 3)):
            assert out.sounding_at(channel, after) == expected[step, voice], (step, voice)
    assert report.notes_in == len(PITCHES)
    assert report.grace_replays == (len(PITCHES) if offset_sec > 0 else 0)
    assert report.deadline_misses == 0


def test_the_lead_answers_at_once_even_between_steps(model):
    timeline = Timeline([(1.07, (0x90, 40, 100)), (1.3, (0x80, 40, 0)), (2.0, (0x90, 100, 90))])
    out = Capture(timeline)
    Engine(Arranger(model), clock=timeline, inbox=timeline, outputs=[out]).run(until_sec=2.5)
    lead = out.notes(0)
    assert lead == [(1.07, 52), (2.0, 88)]  # folded into pulse1's 48-96 by octaves, sent when played
    assert out.sounding_at(0, 1.29) == 52 and out.sounding_at(0, 1.31) == -1  # released with the key


def test_a_late_note_counts_for_the_step_only_inside_the_grace_window(model):
    def first_step_with(grace_sec, late_sec):
        timeline = Timeline([(8 * STEP_SEC + late_sec, (0x90, 60, 100))])
        engine = Engine(Arranger(model), clock=timeline, inbox=timeline, grace_sec=grace_sec)
        steps = []
        original = engine.arranger.step

        def spy(melody, onset, position, lead_pitch=-1):
            steps.append((position, onset))
            return original(melody, onset, position, lead_pitch)

        engine.arranger.step = spy
        report = engine.run(max_steps=12)
        return [p for p, onset in steps if onset], report.grace_replays

    assert first_step_with(0.04, 0.03) == ([8], 1)  # replayed as step 8's onset
    assert first_step_with(0.04, 0.05) == ([9], 0)  # too late: the next step's
    assert first_step_with(0.0, 0.001) == ([9], 0)  # grace off


def test_buttons_learn_five_lanes_and_the_lead_pitch_is_the_one_the_step_plays(model):
    notes = [50, 52, 53, 55, 57, 50, 57, 99]
    messages = []
    for i, note in enumerate(notes):
        messages += [(0.3 + i * 0.5, (0x90, note, 100)), (0.6 + i * 0.5, (0x80, note, 0))]
    timeline = Timeline(messages)
    out = Capture(timeline)
    buttons = ButtonMap()
    engine = Engine(Arranger(model, mode="buttons"), clock=timeline, inbox=timeline, outputs=[out], buttons=buttons)
    report = engine.run(until_sec=5.0)
    assert [buttons.lane_of[n] for n in (50, 52, 53, 55, 57, 99)] == [0, 1, 2, 3, 4, -1]
    assert report.notes_in == 7 and report.ignored_messages == 1  # the sixth distinct note is no lane
    lead = out.notes(0)
    assert len(lead) == 7 and all(48 <= pitch <= 96 for _, pitch in lead)
    # Each echoed pitch is what pulse1 holds after the step that takes the press.
    for t, pitch in lead:
        assert out.sounding_at(0, t + STEP_SEC) == pitch


@pytest.mark.parametrize("offset_sec", [-0.03, 0.02])
def test_the_lead_echoed_for_buttons_moves_with_the_lanes(model, offset_sec):
    """Early presses take the previewed lead, late ones replay the step in the grace window: both keep the contour."""
    notes = [60, 62, 64, 65, 67]
    lanes = [0, 1, 2, 3, 4, 3, 2, 1, 0, 2, 4, 1, 3, 0, 4, 2, 2, 1] * 2
    onsets = list(range(4, 4 * len(lanes) + 4, 4))
    timeline = Timeline(melody_messages([notes[lane] for lane in lanes], onsets, offset_sec))
    out = Capture(timeline)
    engine = Engine(Arranger(model, mode="buttons"), clock=timeline, inbox=timeline, outputs=[out],
                    buttons=ButtonMap(notes))  # fmt: skip
    report = engine.run(max_steps=4 * len(lanes) + 4)
    assert report.grace_replays == (len(lanes) if offset_sec > 0 else 0)
    lead = [pitch for _, pitch in out.notes(0)]
    assert len(lead) == len(lanes)
    for i in range(1, len(lanes)):
        move, step = np.sign(lanes[i] - lanes[i - 1]), np.sign(lead[i] - lead[i - 1])
        edge = (move > 0 and lead[i - 1] == 96) or (move < 0 and lead[i - 1] == 48)
        assert move == 0 or step == move or edge, (i, lanes[i - 1 : i + 1], lead[i - 1 : i + 1])
    for t, pitch in out.notes(0):  # and the step plays the pitch that was echoed
        assert out.sounding_at(0, t + STEP_SEC) == pitch


def test_fixed_buttons_refuse_bad_lists():
    with pytest.raises(ParameterError, match="five different"):
        ButtonMap([60, 60, 62, 64, 65])
    assert ButtonMap([60, 62, 64, 65, 67]).lane(61) == -1


def test_midi_clock_leads_start_stop_continue_and_song_position(model):
    pulse_sec = 60.0 / 100.0 / 24  # a sequencer at 100 BPM
    messages = [(0.5, (0xFA,))]
    t = 0.5
    for i in range(24 * 8):  # 8 beats
        messages.append((t + i * pulse_sec, (0xF8,)))
    stop_at = t + 24 * 8 * pulse_sec
    messages.append((stop_at, (0xFC,)))
    messages += [(stop_at + 0.2 + i * pulse_sec, (0xF8,)) for i in range(48)]  # clock runs on while stopped
    resume = stop_at + 0.2 + 48 * pulse_sec
    messages.append((resume, (0xF2, 8, 0)))  # song position: 16th note 8 (mid-bar)
    messages.append((resume + 0.001, (0xFB,)))
    messages += [(resume + 0.002 + i * pulse_sec, (0xF8,)) for i in range(24 * 2)]
    messages.append((1.0, (0x90, 60, 100)))
    timeline = Timeline(messages)
    out = Capture(timeline)
    tempo = MidiClockTempo()
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, outputs=[out], tempo=tempo)
    positions = []
    original = engine.arranger.step
    engine.arranger.step = lambda m, o, p, lead_pitch=-1: (positions.append(p), original(m, o, p, lead_pitch))[1]
    report = engine.run(until_sec=resume + 2.0)
    assert report.steps == 32 + 8  # 6 pulses a step; none while stopped
    assert positions[:32] == [i % 16 for i in range(32)]
    assert positions[32:] == [8, 9, 10, 11, 12, 13, 14, 15]
    assert abs(report.final_bpm - 100.0) < 1.0
    for channel in (1, 2, 3):  # stop silences the band
        assert out.sounding_at(channel, stop_at + 0.1) == -1


@pytest.mark.parametrize("player_bpm", [96.0, 140.0])
def test_follow_tracks_a_player_away_from_the_start_tempo(model, player_bpm):
    beat = 60.0 / player_bpm
    messages = []
    rng = np.random.default_rng(0)
    for i in range(48):  # quarter notes with a little human jitter
        t = 0.01 + i * beat + rng.normal(0, 0.004)
        messages += [(t, (0x90, 60 + (i % 5), 100)), (t + beat * 0.8, (0x80, 60 + (i % 5), 0))]
    timeline = Timeline(messages)
    tempo = FollowTempo(120.0, count_in_steps=16)
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, tempo=tempo, count_in_steps=16)
    steps = []
    original = tempo.stepped
    tempo.stepped = lambda due, now: (steps.append(due), original(due, now))[1]
    engine.run(until_sec=48 * beat)
    assert abs(tempo.bpm - player_bpm) / player_bpm < 0.03
    # In the last 8 beats the grid's beats fall on the player's (within 20 ms).
    beats = np.array(steps[-32::4])
    played = 0.01 + np.arange(48) * beat
    assert np.max(np.min(np.abs(beats[:, None] - played[None, :]), axis=1)) < 0.02


def test_count_in_clicks_then_the_band_plays(model):
    timeline = Timeline(melody_messages(PITCHES[:8], [16 + s for s in ONSETS[:8]], 0.0))
    out = Capture(timeline)
    Engine(Arranger(model), clock=timeline, inbox=timeline, outputs=[out], count_in_steps=16).run(max_steps=48)
    clicks = [t for t, m in out.sent if m[0] == 0x90 | METRONOME_CHANNEL]
    assert clicks == pytest.approx([i * 4 * STEP_SEC for i in range(4)])  # one bar, then silence
    band = [t for t, m in out.sent if m[0] & 0xF0 == 0x90 and m[0] & 0x0F in (1, 2, 3) and m[2] > 0]
    assert band and min(band) >= 16 * STEP_SEC


def test_channel_filter_and_malformed_messages_are_ignored_without_harm(model):
    garbage = [(), (0x40,), (0x90, 60), (0x90, 200, 100), (0xF0, 1, 2, 3, 0xF7), (0xE0, 0, 64), (0xFE,)]
    garbage.append((0x91, 60, 100))  # another channel
    messages = [(0.01 + 0.01 * i, m) for i, m in enumerate(garbage)] + [(0.3, (0x90, 62, 100))]
    timeline = Timeline(messages)
    out = Capture(timeline)
    report = Engine(Arranger(model), clock=timeline, inbox=timeline, outputs=[out], in_channel=0).run(until_sec=1.0)
    assert report.ignored_messages == len(garbage) and report.notes_in == 1
    assert out.notes(0) == [(0.3, 62)]


def test_an_output_that_fails_is_dropped_and_the_rest_play_on(model):
    class Vanishing:
        def __init__(self):
            self.calls = 0

        def send(self, message):
            self.calls += 1
            if self.calls > 20:
                raise OSError("port gone")

    timeline = Timeline(melody_messages(PITCHES, ONSETS, 0.0))
    out, vanishing, recorder = Capture(timeline), Vanishing(), Recorder()
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, outputs=[vanishing, out], recorder=recorder)
    report = engine.run(max_steps=4 * len(PITCHES) + 4)
    assert report.output_errors == 1 and vanishing.calls == 21
    assert len(out.notes(0)) == len(PITCHES)
    _, track, _ = recorder.events()
    assert np.count_nonzero(track == TRACK_INPUT) == 2 * len(PITCHES)


def test_interrupt_silences_every_voice_and_keeps_the_recording(model, tmp_path):
    class Interrupting(Timeline):
        def get(self, timeout_sec):
            if self.now_sec > 3.0:
                raise KeyboardInterrupt
            return super().get(timeout_sec)

    timeline = Interrupting(melody_messages(PITCHES, ONSETS, 0.0))
    out, recorder = Capture(timeline), Recorder()
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, outputs=[out], recorder=recorder)
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    for channel in range(4):
        assert out.sounding_at(channel, 1e9) == -1
    files = write_session(recorder, tmp_path, bpm=120.0, sound=False)
    import mido  # noqa: PLC0415

    midi = mido.MidiFile(files.midi)
    names = [track.name for track in midi.tracks]
    assert names[:6] == ["tempo", "input", "pulse1", "pulse2", "triangle", "noise"]
    played = sum(1 for m in midi.tracks[1] if m.type == "note_on" and m.velocity > 0)
    assert played == sum(1 for t, _ in melody_messages(PITCHES, ONSETS, 0.0)[::2] if t <= 3.0)


def test_a_flood_of_input_keeps_latency_bounded_and_the_recording_whole(model):
    rng = np.random.default_rng(1)
    n = 100_000  # 10,000 messages a second for 10 seconds
    times = np.sort(rng.uniform(0, 10, n))
    kinds = rng.integers(0, 4, n)
    messages = []
    for t, kind, pitch in zip(times, kinds, rng.integers(30, 100, n), strict=True):
        if kind == 0:
            messages.append((t, (0x90, int(pitch), 100)))
        elif kind == 1:
            messages.append((t, (0x80, int(pitch), 0)))
        elif kind == 2:
            messages.append((t, (0xF0, 0x7E, 0x01, 0xF7)))
        else:
            messages.append((t, (int(pitch) & 0x7F,)))  # a lone data byte
    timeline = Timeline(messages)
    recorder = Recorder()
    report = Engine(Arranger(model, mode="buttons"), clock=timeline, inbox=timeline, recorder=recorder).run(
        until_sec=10.5
    )
    note_ons = int(np.count_nonzero(kinds == 0))
    assert report.steps == 84  # 10.5 s of 125 ms steps
    assert report.notes_in + report.ignored_messages >= note_ons  # every press is a lane or refused
    assert np.percentile(report.note_latency_us, 99) < 1000 and np.percentile(report.step_latency_us, 99) < 1000
    _, track, _ = recorder.events()
    assert report.dropped_events == 0 and np.count_nonzero(track == TRACK_INPUT) > note_ons // 20


def test_the_step_loop_allocates_nothing_that_stays(model):
    timeline = Timeline(melody_messages(PITCHES * 8, list(range(0, 4 * 256, 4)), 0.01))
    engine = Engine(Arranger(model), clock=timeline, inbox=timeline, recorder=Recorder(50_000))
    engine.run(max_steps=64)  # warm
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    engine.run(max_steps=900)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename") if "chiptuner" in str(stat.traceback))
    assert grown < 4096, grown


def test_bad_settings_are_refused(model):
    timeline = Timeline()
    with pytest.raises(ParameterError, match="grace"):
        Engine(Arranger(model), clock=timeline, inbox=timeline, grace_sec=1.0)
    with pytest.raises(ParameterError, match="channel"):
        Engine(Arranger(model), clock=timeline, inbox=timeline, in_channel=16)
    with pytest.raises(ParameterError, match="bpm"):
        FixedTempo(1000)
