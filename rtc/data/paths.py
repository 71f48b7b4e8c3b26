"""Where the real data files live: `$RTC_DATA_DIR`, else `shared/data/` beside the repository."""

import os
from pathlib import Path

ENV_VAR = "RTC_DATA_DIR"


def default_root() -> Path:
    """`shared/data` in the folder that holds the repository, found from this file's path."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root() -> Path:
    """The folder holding `gsm8k/` and `math500/`; `$RTC_DATA_DIR` overrides the default.

    The default exists only beside a source checkout (an installed package has no `shared/` next to
    it): without `$RTC_DATA_DIR` a missing default is a `FileNotFoundError` saying to set it. Called
    when real data is read, never at import.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    root = default_root()
    if not root.is_dir():
        raise FileNotFoundError(
            f"no data folder at {root} (the default beside a source checkout); "
            f"set ${ENV_VAR} to the folder holding gsm8k/ and math500/"
        )
    return root
