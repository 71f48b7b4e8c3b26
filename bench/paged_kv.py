"""The paged KV cache against the dense one: memory and speed of the sampler and of PRM beam search.

Run: `python bench/paged_kv.py` (about 2.5 min on 2 CPU cores near idle, 10 at load 3) or `--quick` (prompt 256, fewer tokens).
Prints, for the same inputs and keys (and asserts the outputs are equal):
  1. the sampler drawing N=16 samples of one 1,024-token prompt, 256 new tokens each: KV cache bytes
     allocated (dense: 16 copies of the prompt; paged: the pool, prompt pages once) and at their peak use,
     and tokens/s (paged: one prefill per prompt, then shared pages);
  2. PRM beam search (Snell et al. 2024) at N=16, M=4, 8 steps over a 1,024-token prompt and at the demo shape
     (prompt 32): seconds per search, dense and paged (a prune moves page-table entries, not cache rows);
  3. best-of-32 through 8 slots per problem on answers of mixed length: the plain sampler in waves (each
     waits for its longest answer) against slot refill (`rtc.sampling.refill`): finished samples per second;
  4. best-of-32 search with a PRM on the same answers: the step-level search (`tree_search.search`) in
     waves of 8 rows per problem and with a row per path, against 8 rows by slot refill
     (`rtc.search.refill_search`): paths searched and scored per second.
Models: the `cpu-small` shape with random weights, as `bench/search_bench.py` builds them. Times are
the fastest of 3 calls after a compiling one (dense and paged calls alternated), wall-clock on a shared machine: the load average and the
machine's float32 matmul peak are printed beside them.
"""

import argparse
import dataclasses
import os
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
from rtc.sampling.refill import sample_refill  # noqa: E402
from rtc.sampling.rules import SamplingRule  # noqa: E402
from rtc.sampling.sampler import SamplerConfig, sample  # noqa: E402
from rtc.search.config import SearchConfig  # noqa: E402
from rtc.search.refill_search import search_refill  # noqa: E402
from rtc.search.tree_search import search  # noqa: E402

PAGE_SIZE, MIB = 16, 1 << 20


def paged(model: Model) -> Model:
    return Model(dataclasses.replace(model.config, kv_page_size=PAGE_SIZE))


def timed_pair(fn_a, fn_b, reps: int = 3):
    """((seconds a, output a), (seconds b, output b)): each the fastest of `reps` calls after a compiling
    one, the calls alternated so that load from other jobs falls on both alike."""
    outs = [jax.block_until_ready(fn_a()), jax.block_until_ready(fn_b())]
    best = [float("inf"), float("inf")]
    for _ in range(reps):
        for i, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            outs[i] = jax.block_until_ready(fn())
            best[i] = min(best[i], time.perf_counter() - start)
    return [(best[i], jax.tree.map(np.asarray, outs[i])) for i in range(2)]


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

    (dense_s, dense), (paged_s, out) = timed_pair(run(policy, n), run(paged(policy), n))
    (each_s, each), _ = timed_pair(run(policy, 1), lambda: None, reps=1)
    assert np.array_equal(dense.tokens, out.tokens) and np.array_equal(each.tokens, out.tokens)
    per_slot = kv_slot_bytes(policy)
    dense_bytes = n * (prompt_len + new_tokens) * per_slot
    peak, pool, overflow = (int(x) for x in out.kv_pages)
    assert not overflow
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
        f"{'tokens/s, one prefill':<28}{rate(dense_s):>12.0f}{rate(paged_s):>12.0f}{dense_s / paged_s:>12.2f}x",
        f"{'tokens/s, prefill per sample':<28}{rate(each_s):>12.0f}{'':>12}{each_s / paged_s:>12.2f}x",
    ]


@dataclasses.dataclass(frozen=True)
class StopRate:
    """`model` whose next token is `stop` with probability `rate` at every step (at temperature 1): answers
    of geometric length, mean `1 / rate`, capped by max_new_tokens; a mix of short and long ones."""

    model: Model
    stop: int
    rate: float

    def apply(self, params, tokens, positions, cache=None):
        logits, values, cache = self.model.apply(params, tokens, positions, cache)
        others = jax.nn.logsumexp(logits.at[..., self.stop].set(-jnp.inf), axis=-1)
        stop_logit = others + np.log(self.rate / (1 - self.rate))
        return logits.at[..., self.stop].set(stop_logit), values, cache

    def init_cache(self, *args):
        return self.model.init_cache(*args)

    def grow_cache(self, cache, max_len):
        return self.model.grow_cache(cache, max_len)

    def pool_pages(self, *args):
        return self.model.pool_pages(*args)

    @property
    def max_seq_len(self):
        return self.model.max_seq_len


def refill_table(models, problems_: int, samples: int, slots: int, new_tokens: int) -> list[str]:
    """Best-of-N sampling through a fixed number of slots: waves of the plain sampler (each wave waits
    for its longest answer) against slot refill."""
    stop = 1
    policy, params = StopRate(paged(models[0]), stop, 4.0 / new_tokens), models[1]
    tokens, lengths = problems(problems_)
    cfg = SamplerConfig(max_new_tokens=new_tokens, stop_ids=(stop,), rule=SamplingRule(temperature=1.0))
    rows, row_lengths = np.repeat(tokens, slots, axis=0), np.repeat(lengths, slots)

    def waves():
        return [
            sample(
                policy,
                params,
                rows,
                row_lengths,
                jax.random.key(w),
                cfg=cfg,
                stream=None,
                cache_dtype=jnp.float32,
                batch_sharding=None,
                group=slots,
            )  # fmt: skip
            for w in range(samples // slots)
        ]

    def refilled():
        return sample_refill(policy, params, tokens, lengths, jax.random.key(0), cfg, samples, slots)

    (wave_s, wave_out), (refill_s, out) = timed_pair(waves, refilled)
    wave_lengths = np.concatenate([w.lengths for w in wave_out])
    wave_busy = wave_lengths.sum() / sum(w.tokens.shape[0] * w.lengths.max() for w in wave_out)
    total = problems_ * samples
    return [
        f"3. best-of-{samples} through {slots} slots per problem, {problems_} problems, answers of mixed "
        f"length (stop with probability {4 / new_tokens:.3f} a token, at most {new_tokens}; paged cache)",
        f"{'':<28}{'waves':>12}{'refill':>12}{'refill/waves':>13}",
        f"{'finished samples/s':<28}{total / wave_s:>12.1f}{total / refill_s:>12.1f}{wave_s / refill_s:>12.2f}x",
        f"{'slot occupancy':<28}{wave_busy:>12.2f}{float(out.occupancy):>12.2f}",
        f"{'mean answer length':<28}{wave_lengths.mean():>12.1f}{out.lengths.mean():>12.1f}",
    ]


def search_refill_table(models, ids, problems_: int, n: int, slots: int, depth: int, step_tokens: int):
    """Best-of-N search with a PRM on answers of mixed length: the step-level search (every path in
    steps of `step_tokens`, all rows waiting at each step's end) in waves of `slots` rows per problem and
    with a row per path, against slot refill through `slots` rows (`rtc.search.refill_search`)."""
    policy, params, verifier, vparams = models
    stop, new_tokens = ids[10], depth * step_tokens
    policy = StopRate(paged(policy), stop, 4.0 / new_tokens)
    verifier = paged(verifier)
    tokens, lengths = problems(problems_)
    cfg = SearchConfig(
        strategy="best_of_n", n=n, m=1, depth=depth, step_tokens=step_tokens, stop_ids=(stop,),
        delimiter_id=ids[0], rule=SamplingRule(temperature=1.0),
    )  # fmt: skip
    wave_cfg, refill_cfg = dataclasses.replace(cfg, n=slots), dataclasses.replace(cfg, slots=slots)
    step_level = lambda c, seed: search(
        policy, params, verifier, vparams, tokens, lengths, jax.random.key(seed), c
    )

    def waves():
        return [step_level(wave_cfg, w) for w in range(n // slots)]

    def refilled():
        return search_refill(
            policy, params, verifier, vparams, tokens, lengths, jax.random.key(0), refill_cfg
        )

    (wave_s, wave_out), (refill_s, out) = timed_pair(waves, refilled)
    (row_s, row_out), _ = timed_pair(lambda: step_level(cfg, 0), lambda: None, reps=2)
    total = problems_ * n
    finished = lambda outs: sum(int(o.finished.sum()) for o in outs)
    lengths_of = lambda outs: np.concatenate([o.lengths.ravel() for o in outs])
    cols = [
        ("waves", wave_s, wave_out, slots),
        ("row per path", row_s, [row_out], n),
        ("refill", refill_s, [out], slots),
    ]
    line = lambda name, f: f"{name:<28}" + "".join(f"{f(*c[1:]):>14}" for c in cols)
    return [
        f"4. best-of-{n} search with a PRM, {problems_} problems, up to {depth} steps of {step_tokens} tokens, "
        f"answers of mixed length (stop with probability {4 / new_tokens:.3f} a token); the step-level search "
        f"in waves of {slots} rows per problem and with a row per path, against {slots} rows by slot refill",
        f"{'':<28}" + "".join(f"{c[0]:>14}" for c in cols) + f"{'refill/waves':>14}",
        line("paths/s", lambda s, o, r: f"{total / s:.1f}") + f"{wave_s / refill_s:>13.2f}x",
        line("rows per problem", lambda s, o, r: str(r)),
        line("finished paths", lambda s, o, r: str(finished(o))),
        line("mean path length", lambda s, o, r: f"{lengths_of(o).mean():.1f}"),
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

    (dense_s, dense), (paged_s, out) = timed_pair(run(policy, verifier), run(paged(policy), paged(verifier)))
    assert np.array_equal(dense.tokens, out.tokens), "paged search differs from dense"
    np.testing.assert_allclose(dense.scores, out.scores, atol=1e-5)
    return f"{prompt_len:>8}{n:>5}{m:>4}{steps:>7}{dense_s:>12.2f}{paged_s:>12.2f}{dense_s / paged_s:>12.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="prompt 256, 64 new tokens, 2 search steps")
    args = parser.parse_args(argv)
    prompt, new, steps = (256, 64, 2) if args.quick else (1024, 256, 8)
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
    print(f"\n2. PRM beam search, {steps} steps of 16 tokens, seconds per search (fastest of 3)")
    print(f"{'prompt':>8}{'N':>5}{'M':>4}{'steps':>7}{'dense s':>12}{'paged s':>12}{'dense/paged':>13}")
    for prompt_len in (prompt, 32):
        print(beam_row(models, ids, prompt_len, 16, 4, steps, 16))
    print()
    print("\n".join(refill_table(models, 4, 32, 8, 128 if not args.quick else 64)))
    print()
    print("\n".join(search_refill_table(models, ids, 4, 32, 8, 8 if not args.quick else 4, 16)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
