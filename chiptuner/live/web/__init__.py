"""``chiptuner live --web``: play in the browser, hear the band from a WebAudio chip synth.

The second front end of ``chiptuner.live.engine`` (the terminal one is ``chiptuner.live.command``). One
process serves a local page and a WebSocket on one port (so they share one origin):

- the page turns the computer keyboard (a piano layout, or five buttons), or a MIDI
  keyboard through WebMIDI, into note messages;
- the server queues them as raw MIDI tuples for the engine, which runs on its own thread
  with ``time.perf_counter`` as its clock, exactly as in the terminal mode;
- every message the engine plays goes back to the page(s) as JSON, batched per wake-up of
  the event loop; the page plays it at once on its own chip synth (pulse with duty,
  triangle, LFSR noise) and draws it on a scrolling piano roll.

The parts: ``protocol`` (the WebSocket messages and the settings a page may change),
``runner`` (the engine's thread, the page's inbox and output) and ``server`` (HTTP,
WebSocket and downloads on one port, with its security checks; ``run`` serves until
Ctrl-C).
"""
