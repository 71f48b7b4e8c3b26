"""The cost of pruning across devices: each problem's branches on one device vs spread over the mesh.

Run: `python bench/search_sharding.py [--devices 8] [--n 16] [--problems 8]` (about 2 min on 2 CPU cores).
It re-executes itself with `--xla_force_host_platform_device_count` fake CPU devices, then times the
compiled search (compile excluded, best of 3) for every strategy in two placements of the same rows:
- `auto`: a prune that stays on its device when every device holds whole groups (best-of-N, DVTS,
  beam search with whole problems per device); when a problem spans devices, the survivors alone,
  exchanged with one all_to_all per leaf;
- `global`: the gather over the whole row axis, which XLA lowers to an all-gather of every leaf of the
  search state (both KV caches included) each step.
It also counts, from the compiled HLO, the bytes the collectives of the prune move (summed over devices
and over the steps that prune).
On fake CPU devices the "communication" is a memory copy, so the time gap understates a real
interconnect's; the bytes column is what a TPU pod would move.
"""

import argparse
import dataclasses
import functools
import os
import re
import subprocess
import sys
import time

import numpy as np

DTYPE_BYTES = {"f32": 4, "s32": 4, "pred": 1, "bf16": 2}


def collective_bytes(hlo: str, rows: int, devices: int) -> int:
    """Bytes the prunes of one search move between devices: all-gathers of `[R, ...]` state leaves and
    all-to-alls, from the compiled HLO. A collective's result type (a tuple when XLA combines several)
    is per device; each device receives or sends all but its own 1/D of it, so the mesh moves
    (D - 1) / D x size x D bytes."""
    total = 0
    for line in hlo.splitlines():
        op = re.search(r" (all-gather|all-to-all)(-start)?\(", line)
        if op is None or "=" not in line:
            continue
        result_type = line.split("=", 1)[1][: op.start() - len(line.split("=", 1)[0]) - 1]
        for dtype, dims in re.findall(r"(f32|s32|pred|bf16)\[(\d+(?:,\d+)*)\]", result_type):
            shape = [int(d) for d in dims.split(",")]
            if op.group(1) == "all-to-all" or shape[0] == rows:
                total += DTYPE_BYTES[dtype] * int(np.prod(shape)) * (devices - 1)
    return total


def main(args):
    import jax

    from rtc.model import Model, model_config
    from rtc.parallel import mesh as mesh_lib
    from rtc.sampling.rules import SamplingRule
    from rtc.search import tree_search
    from rtc.search.config import SearchConfig

    policy = Model(model_config(args.preset, vocab_size=1024, max_seq_len=512))
    params = policy.init_params(jax.random.key(0))
    verifier = Model(dataclasses.replace(policy.config, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    mesh = mesh_lib.make_mesh()
    params, vparams = mesh_lib.replicate(params, mesh), mesh_lib.replicate(vparams, mesh)
    tokens = np.tile(np.arange(1, 17, dtype=np.int32), (args.problems, 1))
    lengths = np.full((args.problems,), 16, np.int32)
    print(
        f"{jax.device_count()} devices, {args.steps} steps x {args.step_tokens} tokens, preset {args.preset}\n"
    )
    print("| strategy | problems x N | M | placement | prune | s / search | MB moved / search |")
    print("|---|---|---|---|---|---|---|")
    # (strategy, problems, N, M): whole groups per device, then one problem spread over every device
    cases = [
        ("best_of_n", args.problems, args.n, 1),
        ("dvts", args.problems, args.n, 4),
        ("beam", args.problems, args.n, 4),
        ("beam", 1, 4 * jax.device_count(), 4),
    ]
    for strategy, problems, n, m in cases:
        rows = problems * n
        tokens = np.tile(np.arange(1, 17, dtype=np.int32), (problems, 1))
        lengths = np.full((problems,), 16, np.int32)
        cfg = SearchConfig(
            strategy=strategy,
            n=n,
            m=m,
            depth=args.steps,
            step_tokens=args.step_tokens,
            stop_ids=(1023,),
            delimiter_id=1022,
            rule=SamplingRule(temperature=1.0),
        )
        local = tree_search.local_block(rows, cfg.group_size, mesh) is not None
        for placement in ("auto", "global"):
            prune = (
                "none"
                if cfg.group_size == 1
                else (
                    "global gather"
                    if placement == "global"
                    else "per device"
                    if local
                    else "all_to_all exchange"
                )
            )
            args_ = (policy, params, verifier, vparams, tokens, lengths, jax.random.key(2))
            kwargs = dict(cfg=cfg, mesh=mesh, placement=placement)
            hlo = tree_search.search.lower(*args_, **kwargs).compile().as_text()
            moved = collective_bytes(hlo, rows, mesh.size)
            call = functools.partial(tree_search.search, *args_, **kwargs)
            jax.block_until_ready(call())
            times = []
            for _ in range(3):
                start = time.perf_counter()
                jax.block_until_ready(call())
                times.append(time.perf_counter() - start)
            print(
                f"| {strategy} | {problems} x {n} | {m} | {placement} | {prune} | {min(times):.2f} | "
                f"{moved * (args.steps - 1) / 1e6:.1f} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--step_tokens", type=int, default=8)
    parser.add_argument("--preset", default="test-tiny")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        main(args)
    else:
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices}",
        }
        sys.exit(subprocess.call([sys.executable, __file__, "--child", *sys.argv[1:]], env=env))
