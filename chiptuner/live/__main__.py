"""``python -m chiptuner.live``: the same command as ``chiptuner live``."""

from chiptuner.live.command import main

raise SystemExit(main(prog="python -m chiptuner.live"))
