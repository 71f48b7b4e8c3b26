"""Stop a run at the first non-finite loss, with a message naming the step and the metrics."""

from collections.abc import Iterable, Mapping

import jax
import numpy as np


class NonFiniteError(FloatingPointError):
    """A watched metric became nan or inf."""


def _describe(value: np.ndarray) -> str:
    """The value itself for a scalar, a count of bad entries for an array."""
    if value.ndim == 0:
        return f"{value.item():.6g}"
    return f"{int(np.sum(~np.isfinite(value)))} of {value.size} non-finite"


def check_finite(step: int, metrics: Mapping, keys: Iterable[str] | None = ("loss",)):
    """Raises `NonFiniteError` if any of `metrics[keys]` (None: every metric) is nan or inf.

    The message names the step and the offending metrics, then the other scalar
    metrics of the step (grad norm, learning rate, ...) to help find the cause.
    """
    values = {name: np.asarray(v) for name, v in jax.device_get(dict(metrics)).items()}
    keys = list(values) if keys is None else list(keys)
    missing = [k for k in keys if k not in values]
    if missing:
        raise KeyError(f"check_finite at step {step}: metrics {missing} are not among {sorted(values)}")
    numeric = {k: v for k, v in values.items() if np.issubdtype(v.dtype, np.number)}
    bad = [k for k in keys if k in numeric and not np.all(np.isfinite(numeric[k]))]
    if not bad:
        return
    context = ", ".join(f"{k}={_describe(v)}" for k, v in numeric.items() if k not in bad and v.ndim == 0)
    raise NonFiniteError(
        f"non-finite {', '.join(bad)} at step {step}: "
        + ", ".join(f"{k}={_describe(numeric[k])}" for k in bad)
        + (f" ({context})" if context else "")
    )
