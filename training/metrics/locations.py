"""Where the metrics keep files between runs: the cache root (weights, real-data statistics).

``STYLEGAN_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/stylegan-train``, else
``~/.cache/stylegan-train``; an explicit ``cache_dir`` argument (``--cache-dir``) wins over all.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "STYLEGAN_CACHE_DIR"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root (not created here; writers create what they write)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "stylegan-train"
