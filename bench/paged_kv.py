"""The paged KV cache against the dense one: memory and speed of the sampler and of PRM beam search.

Run: `python bench/paged_kv.py` (about 6 min on 2 CPU cores) or `--quick` (prompt 256, fewer tokens).
Prints, for the same inputs and keys (and asserts the outputs are equal):
  1. the sampler drawing N=16 samples of one 1,024-token prompt, 256 new tokens each: KV cache bytes
     allocated (dense: 16 copies of the prompt; paged: the pool, prompt pages once) and at their peak use,
     and tokens/s (paged: one prefill per prompt, then shared pages);
  2. PRM beam search (Snell et al. 2024) at N=16, M=4 over a 1,024-token prompt and at the demo shape
     (prompt 32): seconds per search, dense and paged (a prune moves page-table entries, not cache rows).
Models: the `cpu-small` shape with random weights, as `bench/search_bench.py` builds them. Times are
medians of 3 calls after a compiling one, wall-clock on a shared machine: the load average and the
machine's float32 matmul peak are printed beside them.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matmul_peak import measure_matmul_peak  # noqa: E402
from bench.search_bench import build_models, frequent_tokens, problems  # noqa: E402
from rtc.model import Model  # noqa: E402
from rtc.sampling.rules import SamplingRule  # noqa: E402
from rtc.sampling.sampler import SamplerConfig, sample  # noqa: E402
from rtc.search.config import SearchConfig  # noqa: E402
from rtc.search.tree_search import search  # noqa: E402

PAGE_SIZE, MIB = 16, 1 << 20


def paged(model: Model) -> Model:
    return Model(dataclasses.replace(model.config, kv_page_size=PAGE_SIZE))


def timed(fn, reps: int = 3):
    """(median seconds of `reps` calls after a first, compiling one; the last output as numpy)."""
    jax.block_until_ready(fn())
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), jax.tree.map(np.asarray, out)


def kv_slot_bytes(model: Model) -> int:
    c = model.config
    return 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4  # f32 keys and values of one slot


def sampler_table(models, prompt_len: int, new_tokens: int, n: int) -> list[str]:
    policy, params, _, _ = models
    tokens, lengths = problems(1, prompt_len)
    lengths[:] = prompt_len  # the whole bucket: the prompt is as long as stated
    tokens = np.repeat(np.where(tokens == 0, 7, tokens), n, axis=0)
    lengths = np.repeat(lengths, n)
    cfg = SamplerConfig(max_new_tokens=new_tokens, stop_ids=(), rule=SamplingRule(temperature=1.0))

    def run(model, group):
        return lambda: sample(
            model, params, tokens, lengths, jax.random.key(5), cfg=cfg, stream=None,
            cache_dtype=jnp.float32, batch_sharding=None, group=group,
        )  # fmt: skip

    dense_s, dense = timed(run(policy, 1))
    paged_s, out = timed(run(paged(policy), n))
    assert np.array_equal(dense.tokens, out.tokens), "paged sampling differs from dense"
    per_slot = kv_slot_bytes(policy)
    dense_bytes = n * (prompt_len + new_tokens) * per_slot
    peak, pool = (int(x) for x in out.kv_pages)
    pool_bytes, peak_bytes = pool * PAGE_SIZE * per_slot, peak * PAGE_SIZE * per_slot
    rate = lambda s: n * new_tokens / s
    return [
        f"1. sampler: N={n} samples of one {prompt_len}-token prompt, {new_tokens} new tokens each "
        f"(pages of {PAGE_SIZE})",
        f"{'':<28}{'dense':>12}{'paged':>12}{'dense/paged':>13}",
        f"{'KV allocated (MiB)':<28}{dense_bytes / MIB:>12.1f}{pool_bytes / MIB:>12.1f}"
        f"{dense_bytes / pool_bytes:>12.2f}x",
        f"{'KV at peak use (MiB)':<28}{dense_bytes / MIB:>12.1f}{peak_bytes / MIB:>12.1f}"
        f"{dense_bytes / peak_bytes:>12.2f}x",
        f"{'tokens/s':<28}{rate(dense_s):>12.0f}{rate(paged_s):>12.0f}{dense_s / paged_s:>12.2f}x",
    ]


def beam_row(models, ids, prompt_len: int, n: int, m: int, steps: int, step_tokens: int) -> str:
    policy, params, verifier, vparams = models
    prompts, lengths = problems(1, prompt_len)
    lengths[:] = prompt_len
    prompts = np.where(prompts == 0, 7, prompts)
    cfg = SearchConfig(
        strategy="beam", n=n, m=m, depth=steps, step_tokens=step_tokens, stop_ids=(ids[10],),
        delimiter_id=ids[0], rule=SamplingRule(temperature=1.0),
    )  # fmt: skip

    def run(p, v):
        return lambda: search(p, params, v, vparams, prompts, lengths, jax.random.key(3), cfg)

    dense_s, dense = timed(run(policy, verifier))
    paged_s, out = timed(run(paged(policy), paged(verifier)))
    assert np.array_equal(dense.tokens, out.tokens), "paged search differs from dense"
    np.testing.assert_allclose(dense.scores, out.scores, atol=1e-5)
    return f"{prompt_len:>8}{n:>5}{m:>4}{steps:>7}{dense_s:>12.2f}{paged_s:>12.2f}{dense_s / paged_s:>12.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="prompt 256, 64 new tokens, 2 search steps")
    args = parser.parse_args(argv)
    prompt, new, steps = (256, 64, 2) if args.quick else (1024, 256, 4)
    policy, params, verifier, vparams = build_models("cpu-small")
    longer = lambda m: Model(dataclasses.replace(m.config, max_seq_len=2048))
    models = (longer(policy), params, longer(verifier), vparams)
    demo_prompts, demo_lengths = problems(8)
    ids = frequent_tokens(models[0], models[1], demo_prompts, demo_lengths)
    peak = measure_matmul_peak()
    print(
        f"load average {os.getloadavg()[0]:.1f}; float32 matmul peak {peak:.0f} GFLOP/s; "
        f"model cpu-small shape, random weights; {jax.devices()[0].platform} x{jax.device_count()}\n"
    )
    print("\n".join(sampler_table(models, prompt, new, 16)))
    print(f"\n2. PRM beam search, {steps} steps of 16 tokens, seconds per search (median of 3)")
    print(f"{'prompt':>8}{'N':>5}{'M':>4}{'steps':>7}{'dense s':>12}{'paged s':>12}{'dense/paged':>13}")
    for prompt_len in (prompt, 32):
        print(beam_row(models, ids, prompt_len, 16, 4, steps, 16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
