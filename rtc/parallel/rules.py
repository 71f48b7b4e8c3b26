"""Sharding rules for parameters and optimizer state, as config data.

A rule set is an ordered list of `(regex, spec)`; a leaf takes the first rule whose regex
`re.search`es its path (`"layer_3/w_q"`, keys joined by `/`). `spec` is either
- a tuple with one entry per dimension, each `None`, a mesh axis name, or a tuple of axis names
  (a `PartitionSpec` in config form); `()` replicates a leaf of any rank; or
- `"largest:AXIS"`: split the largest dimension divisible by the axis size over AXIS (matrices and
  higher; vectors and scalars stay replicated), the usual FSDP rule (ZeRO-3, Rajbhandari et al. 2020).

A dimension that a spec splits but that does not divide by its axes falls back to replication on
that dimension; each fallback is recorded (`fallbacks` list) and logged. A leaf that no rule matches
is an error, so nothing is replicated by omission: the presets end with a catch-all rule.

Presets (param shapes from rtc/model/transformer.py):
- `dp`: replicate everything (plain data parallelism).
- `fsdp`: every matrix split over `fsdp` on its largest divisible dimension.
- `tp`: Megatron-LM (Shoeybi et al. 2019): w_q/w_k/w_v/w_gate/w_up column-parallel (heads, hidden
  units over `tensor`), w_o/w_down row-parallel, embedding and lm_head split over the vocabulary.
- `fsdp_tp`: `tp`, with the embedding dimension of each matrix split over `fsdp`.
"""

import logging
import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from rtc.errors import ConfigError
from rtc.parallel.config_mesh import FSDP, TENSOR

LARGEST = "largest:"


def _tp_rules(e: str | None) -> list[tuple]:
    """(regex, spec) of the tensor-parallel matrices; `e` goes on their embedding dimension."""
    return [
        (r"(^|/)w_[qkv]$", (e, TENSOR, None)),  # [E, H | Hkv, D]: column-parallel over heads
        (r"(^|/)b_[qkv]$", (TENSOR, None)),  # [H | Hkv, D]
        (r"(^|/)w_o$", (TENSOR, None, e)),  # [H, D, E]: row-parallel
        (r"(^|/)w_(gate|up)$", (e, TENSOR)),  # [E, F]: column-parallel over hidden units
        (r"(^|/)w_down$", (TENSOR, e)),  # [F, E]: row-parallel
        (r"(^|/)embedding$", (TENSOR, e)),  # [V, E]: vocab-parallel
        (r"(^|/)lm_head$", (e, TENSOR)),  # [E, V]
    ]


PRESETS = {
    "dp": [(r".*", ())],
    "fsdp": [(r".*", LARGEST + FSDP)],
    "tp": _tp_rules(None) + [(r".*", ())],
    "fsdp_tp": _tp_rules(FSDP) + [(r".*", LARGEST + FSDP)],
}


def preset_for(axis_sizes: Mapping[str, int]) -> str:
    """The preset that uses every axis of size > 1 (`auto` in config)."""
    fsdp, tensor = axis_sizes.get(FSDP, 1) > 1, axis_sizes.get(TENSOR, 1) > 1
    return {(False, False): "dp", (True, False): "fsdp", (False, True): "tp", (True, True): "fsdp_tp"}[
        (fsdp, tensor)
    ]


def get_rules(rules: str | Sequence, axis_sizes: Mapping[str, int] | None = None) -> list[tuple]:
    """A preset name (`auto`: `preset_for(axis_sizes)`) or a rule list, checked and as tuples."""
    if isinstance(rules, str):
        name = preset_for(axis_sizes or {}) if rules == "auto" else rules
        if name not in PRESETS:
            raise ConfigError(f"unknown sharding rules {rules!r}; known: auto, {', '.join(PRESETS)}")
        return PRESETS[name]
    checked = []
    for rule in rules:
        if len(rule) != 2:
            raise ConfigError(f"sharding rule {rule!r} is not (regex, spec)")
        pattern, spec = rule
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"sharding rule regex {pattern!r}: {e}") from e
        if not isinstance(spec, str):
            spec = tuple(tuple(x) if isinstance(x, list) else x for x in spec)
        checked.append((pattern, spec))
    return checked


def path_str(path) -> str:
    """`"layer_0/w_q"` for a jax key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _axes(entry) -> tuple[str, ...]:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def _check_axes(axes: Sequence[str], axis_sizes: Mapping[str, int], path: str) -> None:
    unknown = [a for a in axes if a not in axis_sizes]
    if unknown:
        raise ConfigError(
            f"sharding rule for {path} names mesh axes {unknown}; the mesh has {list(axis_sizes)}"
        )


def _largest(path: str, shape: tuple, axis: str, axis_sizes: Mapping[str, int]) -> tuple[P, str | None]:
    """`axis` on the largest dimension divisible by its size (earliest on ties); vectors replicated."""
    _check_axes([axis], axis_sizes, path)
    if len(shape) < 2:
        return P(), None
    size = axis_sizes[axis]
    divisible = [i for i, d in enumerate(shape) if d % size == 0]
    if not divisible:
        return P(), f"{path} {shape}: no dimension divisible by {axis}={size}, replicated"
    best = max(divisible, key=lambda i: (shape[i], -i))
    return P(*[axis if i == best else None for i in range(len(shape))]), None


def leaf_spec(
    path: str, shape: tuple, rules: Sequence, axis_sizes: Mapping[str, int]
) -> tuple[P, str | None]:
    """(PartitionSpec, fallback note or None) of one leaf under the first matching rule."""
    matched = [(pattern, spec) for pattern, spec in rules if re.search(pattern, path)]
    if not matched:
        raise ConfigError(f"no sharding rule matches parameter {path} {shape}; add a catch-all (r'.*', ())")
    pattern, spec = matched[0]
    if isinstance(spec, str):
        if not spec.startswith(LARGEST):
            raise ConfigError(f"sharding spec {spec!r} for {path}: a tuple or '{LARGEST}AXIS'")
        return _largest(path, shape, spec[len(LARGEST) :], axis_sizes)
    if spec == ():
        return P(), None
    if len(spec) != len(shape):
        raise ConfigError(
            f"sharding rule {pattern!r} gives {spec} ({len(spec)} dims) to {path} of shape {shape}"
        )
    entries, notes = [], []
    for dim, entry in zip(shape, spec):
        axes = _axes(entry)
        _check_axes(axes, axis_sizes, path)
        ways = int(np.prod([axis_sizes[a] for a in axes]))
        if dim % ways:
            notes.append(f"dim {dim} not divisible by {'x'.join(axes)}={ways}")
            entry = None
        entries.append(entry)
    note = f"{path} {shape}: {', '.join(notes)}, replicated on that dim" if notes else None
    return P(*entries), note


def partition_specs(tree, mesh, rules, fallbacks: list | None = None):
    """A PartitionSpec per leaf of `tree` (arrays or `jax.ShapeDtypeStruct`s); notes go to `fallbacks`."""
    sizes = dict(mesh.shape)
    rules = get_rules(rules, sizes)

    def one(path, leaf):
        spec, note = leaf_spec(path_str(path), tuple(np.shape(leaf)), rules, sizes)
        if note is not None:
            logging.info("sharding fallback: %s", note)
            if fallbacks is not None:
                fallbacks.append(note)
        return spec

    return jax.tree_util.tree_map_with_path(one, tree)


def param_shardings(params_or_shapes, mesh, rules, fallbacks: list | None = None):
    """A `NamedSharding` per parameter (same tree); `mesh` may be an `AbstractMesh`."""
    specs = partition_specs(params_or_shapes, mesh, rules, fallbacks)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def _dict_path(path) -> str:
    """The dict keys of a path only: an optimizer moment `[1][0].mu['layer_0']['w_q']` -> `layer_0/w_q`."""
    return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def opt_state_shardings(opt_state, params, param_shardings_tree, mesh, fallbacks: list | None = None):
    """Shardings of an optax state: a leaf shaped like the parameter at its dict-key path gets that
    parameter's sharding (Adam's moments), anything else (step counts, scalars) is replicated."""
    by_path = {
        path_str(p): (tuple(np.shape(x)), s)
        for (p, x), s in zip(
            jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(param_shardings_tree)
        )
    }
    replicated = NamedSharding(mesh, P())

    def one(path, leaf):
        shape, sharding = by_path.get(_dict_path(path), (None, replicated))
        if shape is not None and shape != tuple(np.shape(leaf)):
            if fallbacks is not None:
                fallbacks.append(
                    f"optimizer state {path_str(path)} {np.shape(leaf)}: not shaped like its param"
                )
            return replicated
        return sharding

    return jax.tree_util.tree_map_with_path(one, opt_state)


def train_state_shardings(state: dict, mesh, rules, fallbacks: list | None = None) -> dict:
    """Shardings of a train state `{"params", "opt_state", ...}`: other parameter trees (keys ending in
    `_params`, e.g. RL's frozen reference) follow the same rules; the rest (step, rng) is replicated."""
    params = param_shardings(state["params"], mesh, rules, fallbacks)
    out = {k: jax.tree.map(lambda _: NamedSharding(mesh, P()), v) for k, v in state.items()}
    out["params"] = params
    for key in state:
        if key.endswith("_params"):
            out[key] = param_shardings(state[key], mesh, rules, fallbacks)
    if "opt_state" in state:
        out["opt_state"] = opt_state_shardings(state["opt_state"], state["params"], params, mesh, fallbacks)
    return out


def leaf_bytes(leaf) -> int:
    return int(np.prod(np.shape(leaf), dtype=np.int64)) * np.dtype(leaf.dtype).itemsize


def replicated_leaves(tree, shardings, min_bytes: int = 0) -> list[tuple[str, int]]:
    """(path, bytes) of every leaf whose sharding keeps a full copy on each device, at least `min_bytes`."""
    return [
        (path_str(p), leaf_bytes(x))
        for (p, x), s in zip(jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(shardings))
        if s.is_fully_replicated and leaf_bytes(x) >= min_bytes
    ]
