"""Live sound: the chip synth behind an audio device (sounddevice / PortAudio).

PortAudio calls ``_fill`` on its own thread for every buffer; the synth's block kernel is
numba ``nogil``, so rendering runs outside the GIL while the engine's loop goes on. The
engine talks to the synth as to any MIDI output (``send``), so the sound is exactly what
the ports and the recording get.
"""

from __future__ import annotations

import logging

import numpy as np

from chiptuner.chip_midi import voice_channels
from chiptuner.synth import SAMPLE_RATE, ChipSynth

__all__ = ["AudioOutput", "open_stream"]

logger = logging.getLogger(__name__)


class AudioOutput:
    """Voice messages in, chip sound out. ``send`` takes the engine's raw messages.

    Parameters
    ----------
    synth : ChipSynth
    gm_drums : bool
        The noise voice is on channel 9 rather than 3.
    """

    def __init__(self, synth: ChipSynth, *, gm_drums: bool = False) -> None:
        self.synth = synth
        self.voice_of_channel = np.full(16, -1, dtype=np.int64)
        for voice, channel in enumerate(voice_channels(gm_drums=gm_drums)):
            self.voice_of_channel[channel] = voice
        self.sounding = np.full(4, -1, dtype=np.int64)
        self.stream = None
        self.blocks = 0
        self.underflows = 0
        self.peak = 0.0

    def send(self, message: tuple[int, ...]) -> None:
        """Play one message on the synth (notes, CC 1 duty, CC 123 all notes off)."""
        if len(message) < 2:
            return
        kind = message[0] & 0xF0
        voice = int(self.voice_of_channel[message[0] & 0x0F])
        if voice < 0:
            return
        if kind == 0x90 and len(message) == 3 and message[2] > 0:
            self.synth.note_on(voice, message[1], message[2])
            self.sounding[voice] = message[1]
        elif kind in (0x80, 0x90) and self.sounding[voice] == message[1]:
            self.synth.note_off(voice)
            self.sounding[voice] = -1
        elif kind == 0xB0 and len(message) == 3:
            if message[1] == 1 and voice < 2:
                self.synth.set_duty(voice, min(message[2] // 32, 3))
            elif message[1] == 123:
                self.synth.note_off(voice)
                self.sounding[voice] = -1

    def _fill(self, outdata, frames, time_info, status) -> None:
        block = self.synth.render(frames)
        outdata[:, 0] = block
        self.blocks += 1
        if status.output_underflow:
            self.underflows += 1
        if frames:
            self.peak = max(self.peak, float(block.max()), -float(block.min()))

    def summary(self) -> str:
        """One line: what the audio device got."""
        return (
            f"audio: {self.blocks} blocks of {self.synth.block_size} frames, {self.underflows} underflows, "
            f"peak {self.peak:.2f}"
        )

    def close(self) -> None:
        """Stop and close the audio stream."""
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
            self.stream = None


def open_stream(*, latency_sec: float = 0.02, gm_drums: bool = False, sample_rate: int | None = None):
    """An ``AudioOutput`` playing on the default audio device, or None (logged in one line) without one.

    ``latency_sec`` sets PortAudio's suggested latency and the block size (at most one
    block of that length); ``sample_rate`` defaults to the device's own (a JACK server
    takes no other).
    """
    try:
        import sounddevice  # noqa: PLC0415 (optional: the `live` extra; PortAudio may be missing)
    except (ImportError, OSError) as error:
        logger.info("no live audio (%s): the session is still rendered to session.wav", error)
        return None
    try:
        if sample_rate is None:
            sample_rate = int(sounddevice.query_devices(kind="output")["default_samplerate"]) or SAMPLE_RATE
        block = max(64, int(sample_rate * latency_sec))
        output = AudioOutput(ChipSynth(sample_rate=sample_rate, block_size=block), gm_drums=gm_drums)
        stream = sounddevice.OutputStream(
            samplerate=sample_rate, channels=1, dtype="float32", blocksize=block, latency=latency_sec,
            callback=output._fill,
        )  # fmt: skip
        stream.start()
    except (sounddevice.PortAudioError, ValueError) as error:
        logger.info("no live audio (%s): the session is still rendered to session.wav", error)
        return None
    output.stream = stream
    return output
