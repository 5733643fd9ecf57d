"""``python -m engine.mock ARGS`` (until ``python -m engine mock ARGS`` is wired)."""
import sys

from .cli import main

sys.exit(main())
