"""Playing live.

The realtime engine (``engine``) behind two front ends, the terminal (``command``, ``python -m
chiptuner.live``) and the browser (``web``); MIDI ports (``ports``, ``jack_midi``), sound
(``audio``) and the session written at the end (``session``).
"""
