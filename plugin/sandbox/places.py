"""Where the sandbox servers keep their state (pid files, logs, databases) and where built or
generated things are cached (the HAPI launcher's Maven build, the test models): folders of the
user's, never the installed package, which may be read-only."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/chartlight, ~/.local/state/chartlight by default (setting sandbox_state_dir)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chartlight"


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/chartlight, ~/.cache/chartlight by default (the Makefile's CACHE_DIR too)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chartlight"
