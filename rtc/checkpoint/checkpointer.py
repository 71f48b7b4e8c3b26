"""Save and restore a train-state pytree plus a JSON `meta` dict with orbax.

One step directory holds three items of an orbax composite checkpoint:
`state` (the pytree, `StandardSave`), `meta` (data position, config summary:
anything JSON) and `fingerprint` (a content checksum of `state`, see
`fingerprint.py`). Orbax writes a step into a temporary directory and renames
it when complete, so a run killed mid-save leaves no half-written step behind;
this module relies on that rather than adding its own commit protocol.

Guarantees on top of orbax:
- `save` refuses a state with non-finite floats, never replaces an existing
  step (it logs and returns False) and refuses a step older than the latest
  one (orbax would then delete older good checkpoints to honour max_to_keep).
- `restore` raises `CheckpointError` instead of returning anything it could
  not verify: a missing checkpoint, damaged files, or bytes that read back
  different from what was saved. With `step=None` it does not fall back to an
  older step silently; the message lists the other steps a run can resume from
  (its training block's `resume_step`).

Everything here is collective-safe: every process calls the same methods and
orbax decides who writes.
"""

import contextlib
import json
import logging
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from rtc.checkpoint.fingerprint import tree_fingerprint


# `gs://bucket/run`, `s3://...`: orbax opens these through etils epath, so they must reach it as written.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class CheckpointError(RuntimeError):
    """A checkpoint could not be saved or restored as asked."""


def checkpoint_directory(directory: str | os.PathLike) -> str:
    """The directory orbax is given: a cloud URL unchanged, a local path made absolute."""
    path = os.fspath(directory)
    return path if _URL.match(path) else os.path.abspath(path)


@jax.jit
def _all_finite(leaves: list) -> jax.Array:
    """bool[]: whether every inexact leaf is free of nan and inf."""
    checks = [jnp.all(jnp.isfinite(x)) for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def _abstract_leaf(leaf):
    """The restore target for one template leaf; a jax.Array keeps its sharding."""
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    return jax.ShapeDtypeStruct(np.shape(leaf), np.result_type(leaf))


def abstract_state(template_state):
    """The template as a tree of `jax.ShapeDtypeStruct`, shardings included."""
    return jax.tree.map(_abstract_leaf, template_state)


def _fingerprint_mismatch(saved: dict, restored: dict) -> list[str]:
    """Key paths whose restored content differs from what was saved.

    A leaf the template asked for in another dtype was cast on restore and cannot be compared.
    """
    return [
        path
        for path in sorted(set(saved) | set(restored))
        if path not in saved
        or path not in restored
        or (saved[path]["dtype"] == restored[path]["dtype"] and saved[path]["hash"] != restored[path]["hash"])
    ]


@contextlib.contextmanager
def _quiet_absl():
    """absl's (orbax's) warnings off for the block."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


class Checkpointer:
    """Keeps the last `max_to_keep` train states of a run in `directory` (a local path or a cloud URL:
    `gs://bucket/run/checkpoints`)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, save_interval_steps: int = 1):
        self.directory = checkpoint_directory(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=save_interval_steps, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, meta: dict, force: bool = False) -> bool:
        """Writes `state` and `meta` at `step` and waits; returns whether it saved.

        Without `force`, only steps on the save interval are written.
        """
        step = int(step)
        if step in self._manager.all_steps():
            logging.warning(
                "checkpoint step %d already exists in %s; not overwriting it", step, self.directory
            )
            return False
        latest = self._manager.latest_step()
        if latest is not None and step < latest:
            raise CheckpointError(
                f"cannot save step {step}: {self.directory} already holds the later step {latest}; "
                "move the later step directories aside to continue from an older step"
            )
        if not force and not self._manager.should_save(step):
            return False
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint meta for step {step} is not JSON: {e}") from e
        if not bool(_all_finite(jax.tree.leaves(state))):
            raise CheckpointError(
                f"refusing to save step {step} to {self.directory}: the state has nan or inf"
            )
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(meta),
            fingerprint=ocp.args.JsonSave(tree_fingerprint(state)),
        )
        saved = self._manager.save(step, args=args, force=force)
        self._manager.wait_until_finished()
        return bool(saved)

    def latest_step(self) -> int | None:
        """The newest step on disk, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every step on disk, ascending."""
        return sorted(self._manager.all_steps())

    def restore(self, template_state, step: int | None = None, verify_prefix: str = "") -> tuple:
        """(state, meta) at `step` (None: latest), shaped and sharded like `template_state`.

        `template_state` may hold arrays or `jax.ShapeDtypeStruct`s (e.g. from
        `jax.eval_shape`); its tree structure, dtypes and shardings are used. A leaf
        without a sharding is restored the way it was saved (orbax's default). Only leaves whose key
        path starts with `verify_prefix` are compared with the saved fingerprint.
        """
        self._manager.reload()
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint to restore in {self.directory}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(f"no checkpoint step {step} in {self.directory}; steps on disk: {steps}")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state(template_state)),
            meta=ocp.args.JsonRestore(),
            fingerprint=ocp.args.JsonRestore(),
        )
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as e:  # orbax and tensorstore raise many types for damaged files
            summary = " ".join(str(e).split())[:400]  # tensorstore errors carry pages of spec
            raise self._unreadable(step, steps, f"{type(e).__name__}: {summary}") from e
        saved = {k: v for k, v in restored["fingerprint"].items() if k.startswith(verify_prefix)}
        read = {k: v for k, v in tree_fingerprint(restored["state"]).items() if k.startswith(verify_prefix)}
        bad = _fingerprint_mismatch(saved, read)
        if bad:
            raise self._unreadable(step, steps, f"content differs from what was saved at {', '.join(bad)}")
        return restored["state"], restored["meta"]

    def restore_params(self, step: int | None = None, key: str = "params"):
        """The `key` subtree of a saved state (default: the params of the latest step), needing no template.

        The tree is read from the checkpoint's own metadata and restored replicated over every device of
        every process, so any run's parameters load without rebuilding its optimizer.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint to restore in {self.directory}")
        with _quiet_absl():  # orbax warns once per item it only lists ("could not be restored")
            saved = self._manager.item_metadata(step)["state"]
        tree = saved.tree if hasattr(saved, "tree") else saved
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("all",))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        template = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
            tree,
            is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"),
        )
        state, _ = self.restore(template, step=step, verify_prefix=f"[{key!r}]")
        return state[key]

    def set_aside_after(self, step: int) -> list[str]:
        """Renames every step after `step` to `STEP.set_aside` (kept, no longer a checkpoint); returns the
        new paths. Lets a run resume from an earlier good step when a later one is damaged."""
        moved = []
        if jax.process_index() == 0:
            for later in [s for s in self.all_steps() if s > step]:
                path = epath.Path(self.directory) / str(later)
                target = path.rename(path.with_name(f"{later}.set_aside"))
                logging.warning("checkpoint step %d set aside as %s", later, target)
                moved.append(os.fspath(target))
        if jax.process_count() > 1:  # the others see the renames before they look again
            multihost_utils.sync_global_devices("rtc_set_aside")
        self._manager.reload()
        return moved

    def _unreadable(self, step: int, steps: list[int], reason: str) -> CheckpointError:
        """The error for a step that exists but cannot be restored."""
        path = epath.Path(self.directory) / str(step)
        others = [s for s in steps if s != step]
        hint = (
            f"other steps on disk (not verified): {others}; resume from one with the run's training block "
            f"`resume_step` (for example --config.sft.resume_step={others[-1]}), which sets the later steps aside"
            if others
            else ""
        )
        return CheckpointError(
            f"checkpoint step {step} at {path} is damaged or does not match the template: {reason.rstrip('.')}. "
            + (hint or "No other step is on disk.")
        )

    def close(self):
        """Waits for pending writes and releases orbax resources."""
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
