"""Settings read from environment variables."""

from __future__ import annotations

import logging
import os

_log = logging.getLogger("aioray")


def seconds(name: str, default: float) -> float | None:
    """A duration in seconds from ``name``: ``default`` when unset, None (off) for "0", "off",
    "false", "no" or a value <= 0; a value that is not a number warns and gives ``default``."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "off", "false", "no"):
        return None
    try:
        value = float(raw)
    except ValueError:
        _log.warning("aioray: %s=%r is not a number of seconds; using %s s.", name, raw, default)
        return default
    return value if value > 0 else None
