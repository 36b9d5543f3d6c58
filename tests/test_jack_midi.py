"""The hand-over between JACK's process thread and the engine's thread, without JACK.

``chiptuner.live.jack_midi.Handover`` decides whether an answer leaves in the cycle of its note:
here a thread plays the engine and the test plays the process callback.
"""

from __future__ import annotations

import threading
import time

import pytest

from chiptuner.live.jack_midi import Handover

NOTE_ON = (0x90, 60, 100)
ANSWER = (0x90, 72, 90)


class Engine(threading.Thread):
    """Asks for messages like the live engine; answers each note-on after ``think_sec``."""

    def __init__(self, handover: Handover, think_sec: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.handover = handover
        self.think_sec = think_sec
        self.taken: list[tuple[int, ...]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            message = self.handover.get(0.01)
            if message is None:
                continue
            self.taken.append(message)
            if message[0] == 0x90:
                time.sleep(self.think_sec)
                self.handover.send(ANSWER)


@pytest.fixture
def engine_factory():
    started: list[Engine] = []

    def start(handover: Handover, think_sec: float = 0.0) -> Engine:
        engine = Engine(handover, think_sec)
        engine.start()
        started.append(engine)
        while not handover._serving:  # the engine has asked once
            time.sleep(0.001)
        return engine

    yield start
    for engine in started:
        engine.stop.set()
        engine.join(2)


def test_the_answer_is_there_when_the_delivery_returns(engine_factory):
    handover = Handover(wait_sec=0.5)
    engine_factory(handover)
    for _ in range(20):
        handover.deliver([NOTE_ON, (0x80, 59, 0)])
        assert list(handover.outgoing) == [bytes(ANSWER)]
        handover.outgoing.clear()
    assert handover.late_answers == 0


def test_a_slow_answer_stops_the_wait_and_comes_later(engine_factory):
    handover = Handover(wait_sec=0.005)
    engine_factory(handover, think_sec=0.05)
    began = time.perf_counter()
    handover.deliver([NOTE_ON])
    waited = time.perf_counter() - began
    assert 0.004 <= waited < 0.04
    assert handover.late_answers == 1 and not handover.outgoing
    deadline = time.perf_counter() + 2
    while not handover.outgoing and time.perf_counter() < deadline:
        time.sleep(0.005)
    assert list(handover.outgoing) == [bytes(ANSWER)]


def test_no_wait_before_the_engine_asks_and_the_message_is_kept():
    handover = Handover(wait_sec=1.0)
    began = time.perf_counter()
    handover.deliver([NOTE_ON])
    assert time.perf_counter() - began < 0.1
    assert handover.get(0.0) == NOTE_ON
    assert handover.get(0.02) is None


def test_stop_serving_frees_a_waiting_delivery(engine_factory):
    handover = Handover(wait_sec=5.0)
    engine = engine_factory(handover, think_sec=2.0)
    threading.Timer(0.05, handover.stop_serving).start()
    began = time.perf_counter()
    handover.deliver([NOTE_ON])
    assert time.perf_counter() - began < 1.0
    engine.think_sec = 0.0


def test_backlogs_are_bounded_and_counted():
    handover = Handover(wait_sec=0.01, max_backlog=4)
    handover.deliver([(0x90, p, 100) for p in range(6)])
    assert handover.dropped_in == 2
    assert [handover.get(0.0) for _ in range(5)] == [(0x90, p, 100) for p in range(4)] + [None]
    for p in range(6):
        handover.send((0x80, p, 0))
    assert len(handover.outgoing) == 4 and handover.dropped_out == 2


def test_get_waits_for_its_timeout_and_wakes_on_a_delivery():
    handover = Handover(wait_sec=0.0)
    began = time.perf_counter()
    assert handover.get(0.05) is None
    assert time.perf_counter() - began >= 0.045
    threading.Timer(0.05, handover.deliver, args=([NOTE_ON],)).start()
    began = time.perf_counter()
    assert handover.get(2.0) == NOTE_ON
    assert time.perf_counter() - began < 1.0
