"""Where state that outlives a run lives on this machine (checkpoints, quarantined rows, caches)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "CINESYNC_HOME"


def cinesync_home() -> Path:
    """The folder for state that outlives a run: ``$CINESYNC_HOME`` or ``~/.cache/cinesync``."""
    return Path(os.environ.get(HOME_ENV) or "~/.cache/cinesync").expanduser()
