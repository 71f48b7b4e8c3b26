"""The cost of pruning across devices: each problem's branches on one device vs spread over the mesh.

Run: `python bench/search_sharding.py [--devices 8] [--n 16] [--problems 8]` (about 2 min on 2 CPU cores).
It re-executes itself with `--xla_force_host_platform_device_count` fake CPU devices, then times the
compiled search (compile excluded, best of 3) for every strategy in two placements of the same rows:
- `local`: the gather of a prune is written per device block (every device holds whole groups);
- `global`: the same gather over the whole row axis, which XLA lowers to an all-gather of every leaf
  of the search state (both KV caches included) each step.
It also counts, from the compiled HLO, the bytes the all-gathers of `[R, ...]` arrays move per step.
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


def gathered_bytes(hlo: str, rows: int) -> int:
    """Bytes of every all-gather whose result has `rows` leading rows (the search state's)."""
    total = 0
    for dtype, dims in re.findall(r"(f32|s32|pred|bf16)\[(\d+(?:,\d+)*)\][^ ]* all-gather", hlo):
        shape = [int(d) for d in dims.split(",")]
        if shape[0] == rows:
            total += DTYPE_BYTES[dtype] * int(np.prod(shape))
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
    rows = args.problems * args.n
    print(
        f"{jax.device_count()} devices, {args.problems} problems x N={args.n} = {rows} rows, "
        f"{args.steps} steps x {args.step_tokens} tokens, preset {args.preset}\n"
    )
    print("| strategy | M | placement | s / search | all-gathered MB / step |")
    print("|---|---|---|---|---|")
    for strategy, m in (("best_of_n", 1), ("dvts", 4), ("beam", 4)):
        for placement in ("local", "global"):
            cfg = SearchConfig(
                strategy=strategy,
                n=args.n,
                m=m,
                depth=args.steps,
                step_tokens=args.step_tokens,
                stop_ids=(1023,),
                delimiter_id=1022,
                rule=SamplingRule(temperature=1.0),
            )
            kwargs = dict(cfg=cfg, mesh=mesh, placement="auto" if placement == "local" else "global")
            fn = tree_search.search
            call = functools.partial(
                fn, policy, params, verifier, vparams, tokens, lengths, jax.random.key(2), **kwargs
            )
            if (
                placement == "local"
                and strategy == "beam"
                and tree_search.local_block(rows, args.n, mesh) is None
            ):
                print(f"| {strategy} | {m} | local | (a problem spans devices) | |")
                continue
            hlo = fn.lower(policy, params, verifier, vparams, tokens, lengths, jax.random.key(2), **kwargs)
            moved = gathered_bytes(hlo.compile().as_text(), rows)
            jax.block_until_ready(call())
            times = []
            for _ in range(3):
                start = time.perf_counter()
                jax.block_until_ready(call())
                times.append(time.perf_counter() - start)
            print(f"| {strategy} | {m} | {placement} | {min(times):.2f} | {moved / 1e6:.1f} |")


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
