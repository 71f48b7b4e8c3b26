"""Where the real data files live: `$RTC_DATA_DIR`, else `shared/data/` beside the repository."""

import os
from pathlib import Path

ENV_VAR = "RTC_DATA_DIR"


def data_root() -> Path:
    """The folder holding `gsm8k/` and `math500/`; `$RTC_DATA_DIR` overrides the default.

    The default is `<repo>/../shared/data` (here /work/shared/data), found from this file's path.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "shared" / "data"
