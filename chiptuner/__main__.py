"""``python -m chiptuner``: the same command as the ``chiptuner`` console script."""

from chiptuner.cli import main

raise SystemExit(main())
