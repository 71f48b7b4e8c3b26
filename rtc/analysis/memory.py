"""Bytes per chip of a training run: params, gradients and AdamW state from their shardings, plus activations.

    python -m rtc.analysis.memory --preset 1b --mesh data=-1,fsdp=8 --devices 8 --batch 64 --seq 1024

    python -m rtc.analysis.memory --preset 1b --branches 16 --prompt 2048 --new 256 --page-size 16 --chip v5e

The second form is decoding: params plus the KV cache of N branches of one prompt (sampling or search),
dense against paged (`rtc.model.paged_cache`), and the largest N that fits the chip.

Params and optimizer state are measured, not modelled: the train state is built with `jax.eval_shape`
(nothing allocated), sharded by `rules.py` over a device-free `AbstractMesh`, and each leaf counts
the bytes of one shard (`NamedSharding.shard_shape`). Gradients are taken to be sharded like the
params (the update's `out_shardings`). Activations are an estimate (`activation_bytes`).
"""

import argparse
import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rtc.errors import ConfigError
from rtc.model import paged_cache
from rtc.model.config import PRESETS, ModelConfig, model_config
from rtc.model.transformer import Model, init_params
from rtc.parallel import config_mesh, rules as rules_lib
from rtc.train import optimizer as optimizer_lib
from rtc.train.state import init_train_state

GIB = 1 << 30
HBM_GIB = {"v5e": 16, "v4": 32, "v6e": 32, "v5p": 95}  # HBM per chip


@dataclasses.dataclass(frozen=True)
class Memory:
    """Bytes on one chip."""

    params: int
    grads: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations


def train_state_shapes(config: ModelConfig) -> dict:
    """`{"params", "opt_state", "step", "rng"}` as `jax.ShapeDtypeStruct`s (rtc's AdamW, f32 params)."""
    schedule = optimizer_lib.learning_rate_schedule(1e-3, warmup_steps=1, total_steps=2)
    optimizer = optimizer_lib.adamw(schedule, weight_decay=0.1, grad_clip=1.0)
    return jax.eval_shape(
        lambda: init_train_state(init_params(config, jax.random.key(0)), optimizer, jax.random.key(1))
    )


def bytes_per_chip(tree, shardings) -> int:
    """Sum over leaves of the bytes of one device's shard (the largest shard, if uneven)."""
    return sum(
        int(np.prod(s.shard_shape(tuple(x.shape)), dtype=np.int64)) * np.dtype(x.dtype).itemsize
        for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings))
    )


def _split(n: int, ways: int) -> float:
    """`n / ways` where tensor parallelism can split `n`, else `n` (the rules' fallback)."""
    return n / ways if n % ways == 0 else n


def activation_bytes(c: ModelConfig, rows: int, seq_len: int, tensor: int = 1) -> int:
    """Estimated bytes autodiff keeps for the backward pass of `rows` x `seq_len` tokens on one chip.

    Counts the tensors the model (rtc/model/transformer.py) saves per token, without remat, in the
    way Korthikanti et al. (2022, sec. 4.1) count GPT's; `a` = bytes of `c.dtype`, `t` = tensor ways:
      per layer: a * (4E + 2(H + Hkv)D / t + 3F / t)    residual, norm outputs, q/k/v/attention out,
                                                       gate, up, act(gate) * up
                 + H * T * (4 + a') / t                f32 softmax probabilities (+ their cast, a' = a
                                                       when a != 4, else 0)
      head:      a * E + 2 * 4 * V / t                 final norm input, f32 logits and log-probs
    XLA adds temporaries: XLA:CPU's compiled step (`compiled_activation_bytes`) needed 1.7-2.1x this
    for cpu-small, 125m and 1b in float32 at 1-8 rows of 256-1024 tokens (measured 2026-11-29).
    """
    e, h, hkv, d, f, v = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim, c.vocab_size
    a = np.dtype(c.dtype).itemsize
    heads, kv, mlp, vocab = (_split(n, tensor) for n in (h, hkv, f, v))
    per_layer = a * (4 * e + 2 * (heads + kv) * d + 3 * mlp) + heads * seq_len * (4 + (a if a != 4 else 0))
    head = a * e + 2 * 4 * vocab
    return int(rows * seq_len * (c.num_layers * per_layer + head))


def compiled_activation_bytes(c: ModelConfig, rows: int, seq_len: int) -> int:
    """XLA:CPU's temporary bytes for the forward and backward pass of `rows` x `seq_len` tokens.

    One device, no tensor parallelism: the program one chip of a data-parallel or FSDP mesh runs,
    less the FSDP all-gather buffers (one layer's params). Compiles (seconds) but allocates nothing.
    """
    model = Model(c)

    def loss(params, tokens):  # tokens: i32[rows, seq_len]; next-token cross-entropy
        positions = jnp.broadcast_to(jnp.arange(seq_len), tokens.shape)
        logits, _, _ = model.apply(params, tokens, positions)  # [rows, seq_len, V]
        logp = jax.nn.log_softmax(logits[:, :-1])
        return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))

    params = train_state_shapes(c)["params"]
    tokens = jax.ShapeDtypeStruct((rows, seq_len), jnp.int32)
    compiled = jax.jit(jax.grad(loss)).lower(params, tokens).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def memory_per_chip(
    c: ModelConfig, mesh, rules, batch_size: int, seq_len: int, compiled: bool = False
) -> Memory:
    """Bytes per chip of training `c` on `mesh` (a Mesh or AbstractMesh) under `rules`.

    `compiled`: activations from `compiled_activation_bytes` (tensor = 1 only) instead of the estimate.
    """
    state = train_state_shapes(c)
    shardings = rules_lib.train_state_shardings(state, mesh, rules)
    params = bytes_per_chip(state["params"], shardings["params"])
    rows, tensor = config_mesh.batch_size_per_chip(batch_size, mesh), mesh.shape[config_mesh.TENSOR]
    if compiled and tensor > 1:
        raise ConfigError("compiled activations are measured without tensor parallelism (tensor=1)")
    return Memory(
        params=params,
        grads=params,
        optimizer=bytes_per_chip(state["opt_state"], shardings["opt_state"]),
        activations=(
            compiled_activation_bytes(c, rows, seq_len)
            if compiled
            else activation_bytes(c, rows, seq_len, tensor)
        ),
    )


def kv_bytes(
    c: ModelConfig, rows: int, prompt_len: int, new_tokens: int, page_size: int = 0, dtype=jnp.float32
) -> int:
    """Bytes of the KV cache of `rows` branches of one `prompt_len`-token prompt, each writing `new_tokens`.

    Dense: every row holds its copy of the prompt. Paged (`page_size > 0`): the pool the sampler and the
    search allocate (`paged_cache.pool_pages`: the prompt's pages once, each row's own pages plus one), plus
    one layer's keys and values read through the page tables (the reference attention gathers them).
    """
    itemsize = np.dtype(dtype).itemsize
    per_slot_layer = 2 * c.num_kv_heads * c.head_dim * itemsize  # keys and values of one slot, one layer
    if not page_size:
        return rows * (prompt_len + new_tokens) * c.num_layers * per_slot_layer
    pages = paged_cache.pool_pages(1, prompt_len, rows, new_tokens, page_size)
    slots = paged_cache.pages_per_row(prompt_len + new_tokens, page_size) * page_size
    return pages * page_size * c.num_layers * per_slot_layer + rows * slots * per_slot_layer


def largest_rows(
    c: ModelConfig, budget: int, prompt_len: int, new_tokens: int, page_size: int = 0, dtype=jnp.float32
) -> int:
    """The most branches whose KV cache fits `budget` bytes (0 if not even one)."""
    low, high = 0, 1
    while kv_bytes(c, high, prompt_len, new_tokens, page_size, dtype) <= budget:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (
            (mid, high)
            if kv_bytes(c, mid, prompt_len, new_tokens, page_size, dtype) <= budget
            else (low, mid)
        )
    return low


def format_decode_table(
    c: ModelConfig, branches: int, prompt_len: int, new_tokens: int, page_size: int, chip: str
) -> str:
    """Params and KV cache of `branches` branches, dense and paged, and the largest N whose params and cache
    fit `chip` (decoding temporaries, a few rows of logits, left out)."""
    leaves = jax.tree.leaves(train_state_shapes(c)["params"])
    params = sum(x.size * np.dtype(x.dtype).itemsize for x in leaves)
    hbm = HBM_GIB[chip] * GIB
    lines = [f"{'':<34}{'dense':>12}{'paged':>12}"]
    dense, paged = (kv_bytes(c, branches, prompt_len, new_tokens, ps) for ps in (0, page_size))
    lines.append(f"{f'KV cache, N={branches}':<34}{dense / GIB:>8.3f} GiB{paged / GIB:>8.3f} GiB")
    lines.append(f"{'params (f32)':<34}{params / GIB:>8.3f} GiB{params / GIB:>8.3f} GiB")
    largest = [largest_rows(c, hbm - params, prompt_len, new_tokens, ps) for ps in (0, page_size)]
    lines.append(f"{f'largest N on {chip} ({HBM_GIB[chip]} GiB)':<34}{largest[0]:>12}{largest[1]:>12}")
    lines.append(f"KV cache dense / paged at N={branches}: {dense / paged:.2f}x")
    return "\n".join(lines)


def format_table(memory: Memory, num_devices: int, compiled: bool = False) -> str:
    """Per chip and summed over chips, in GiB, then whether it fits each TPU generation's HBM."""
    rows = [
        ("params (f32)", memory.params),
        ("grads (f32)", memory.grads),
        ("AdamW state", memory.optimizer),
        ("activations (XLA:CPU)" if compiled else "activations (est.)", memory.activations),
        ("total", memory.total),
    ]
    lines = [f"{'':<22}{'per chip':>12}{'all chips':>12}"]
    lines += [f"{name:<22}{b / GIB:>8.3f} GiB{b * num_devices / GIB:>8.2f} GiB" for name, b in rows]
    fits = [
        f"{chip} ({hbm} GiB): {'fits' if memory.total < hbm * GIB else 'does NOT fit'}"
        for chip, hbm in HBM_GIB.items()
    ]
    return "\n".join(lines + ["HBM per chip: " + "; ".join(fits)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="125m", help=f"model preset: {', '.join(PRESETS)}")
    parser.add_argument("--mesh", default="data=-1", help="axis sizes, e.g. data=-1,fsdp=8,tensor=1")
    parser.add_argument("--devices", type=int, default=8, help="chips in the slice (all hosts)")
    parser.add_argument("--rules", default="auto", help="auto, dp, fsdp, tp or fsdp_tp")
    parser.add_argument("--batch", type=int, default=64, help="global batch size (rows)")
    parser.add_argument("--seq", type=int, default=1024, help="tokens per row")
    parser.add_argument("--dtype", default="", help="activation dtype (default: the preset's)")
    parser.add_argument("--compiled", action="store_true", help="activations from XLA:CPU's compiled step")
    parser.add_argument("--branches", type=int, default=0, help="decoding: N branches of one prompt (> 0)")
    parser.add_argument("--prompt", type=int, default=2048, help="decoding: prompt tokens")
    parser.add_argument("--new", type=int, default=256, help="decoding: new tokens per branch")
    parser.add_argument("--page-size", type=int, default=16, help="decoding: slots per KV page")
    parser.add_argument("--chip", default="v5e", help=f"decoding: one of {', '.join(HBM_GIB)}")
    args = parser.parse_args(argv)
    if args.branches:
        if args.chip not in HBM_GIB or args.page_size < 1:
            print(f"rtc: --chip must be one of {list(HBM_GIB)} and --page-size >= 1", file=sys.stderr)
            return 2
        c = model_config(args.preset)
        print(
            f"{args.preset} ({c.num_params / 1e6:,.0f}M params) decoding N={args.branches} branches of a "
            f"{args.prompt}-token prompt, {args.new} new tokens each, f32 KV cache, pages of {args.page_size}"
        )
        print(format_decode_table(c, args.branches, args.prompt, args.new, args.page_size, args.chip))
        return 0
    try:
        overrides = {"dtype": args.dtype} if args.dtype else {}
        c = model_config(args.preset, **overrides)
        mesh = config_mesh.abstract_mesh(config_mesh.parse_mesh(args.mesh), args.devices)
        rules = rules_lib.preset_for(mesh.shape) if args.rules == "auto" else args.rules
        memory = memory_per_chip(c, mesh, rules, args.batch, args.seq, args.compiled)
    except ConfigError as error:
        print(f"rtc: {error}", file=sys.stderr)
        return 2
    rows = config_mesh.batch_size_per_chip(args.batch, mesh)
    print(
        f"{args.preset} ({c.num_params / 1e6:,.0f}M params), mesh {config_mesh.describe(mesh)} on "
        f"{args.devices} chips, rules {rules}, batch {args.batch} ({rows} per chip) x {args.seq} tokens, "
        f"activations in {c.dtype}"
    )
    print(format_table(memory, args.devices, args.compiled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
