"""Where the real data files live: `$RTC_DATA_DIR`, else a user cache folder (`$XDG_CACHE_HOME/rtc/data`,
by default `~/.cache/rtc/data`), which `rtc.data.download` fills on first use."""

import os
from pathlib import Path

ENV_VAR = "RTC_DATA_DIR"
CACHE_ENV_VAR = "XDG_CACHE_HOME"


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/rtc/data`, or `~/.cache/rtc/data` (the XDG base-directory default)."""
    cache = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache"
    return Path(cache).expanduser() / "rtc" / "data"


def data_root() -> Path:
    """The folder holding `gsm8k/`, `math500/`, `prm800k/`, `stories260K/`: `$RTC_DATA_DIR` if set, else
    `cache_root()`. The folder need not exist yet. Called when real data is read, never at import."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return cache_root()
