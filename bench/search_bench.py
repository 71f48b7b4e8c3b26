"""The compiled test-time search against the plain-Python reference, and its throughput as N grows.

Run: `python bench/search_bench.py` (about 4 min on 2 shared CPU cores, 95 s of it the reference,
slow by design; measured there: compiled 9.5 s against 94 s, 10x) or `--quick` (about 30 s: 4
problems, N=4, M=2, 3 steps of 6 tokens, a smaller sweep).
Prints two tables:
  1. PRM beam search (Snell et al. 2024, sec. 5.1), compiled (`rtc.search.tree_search.search`, one
     XLA program) against the HF search-and-learn style reference (`rtc.search.reference`: Python
     loops over problems, steps and beams, every prefix re-read at every step; Beeching et al. 2024)
     on the same inputs, after asserting they return the same outputs. Compiled: the first call
     minus the median call is reported as compile time; reference: its jitted pieces warmed up
     first, then one timed call. Target: compiled >= 5x faster.
  2. problems/s of compiled best-of-N and beam search (M = min(4, N)) as N grows, at fixed problems.
Models: `cpu-small` shape (4 layers x 256, vocabulary 1024), random weights; the policy's untied
output layer is scaled x16 so its choices depend on the context, as a trained model's do, and the
delimiter and stop ids are the tokens it emits most and 10th most (so steps end at delimiters and
some paths finish). The verifier is the same shape with a scalar head (random, unit scale).
Times are wall-clock on a shared machine: other jobs on the cores inflate them; the load average
is printed, an idle machine gives the cleanest numbers.
"""

import argparse
import collections
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rtc.model import Model, model_config
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, sample
from rtc.search import reference
from rtc.search.config import SearchConfig
from rtc.search.tree_search import search

PRESET, VOCAB, HEAD_SCALE = "cpu-small", 1024, 16.0
SPEEDUP_TARGET = 5.0
SWEEP_N = (1, 4, 16, 64)


def build_models(preset: str):
    """(policy, params, verifier, verifier params): random weights, see the module docstring."""
    config = model_config(preset, vocab_size=VOCAB, tie_embeddings=False)
    policy = Model(config)
    params = policy.init_params(jax.random.key(0))
    params = {**params, "lm_head": params["lm_head"] * HEAD_SCALE}
    verifier = Model(dataclasses.replace(config, tie_embeddings=True, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    return policy, params, verifier, vparams


def problems(count: int, width: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Random prompts of 16..`width` tokens: (i32[B, width] right-padded, i32[B])."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(16, width + 1, count).astype(np.int32)
    tokens = np.zeros((count, width), np.int32)
    for b, n in enumerate(lengths):
        tokens[b, :n] = rng.integers(5, VOCAB, n)
    return tokens, lengths


def frequent_tokens(policy, params, prompts, lengths) -> list[int]:
    """Token ids by how often the policy samples them after `prompts` (96 tokens, temperature 1)."""
    cfg = SamplerConfig(max_new_tokens=96, stop_ids=(), rule=SamplingRule(temperature=1.0))
    out = sample(
        policy,
        params,
        prompts,
        lengths,
        jax.random.key(9),
        cfg=cfg,
        stream=None,
        cache_dtype=jnp.float32,
        batch_sharding=None,
    )
    return [token for token, _ in collections.Counter(np.asarray(out.tokens).ravel().tolist()).most_common()]


def search_config(args, ids, strategy="beam", n=None, m=None) -> SearchConfig:
    n = args.n if n is None else n
    return SearchConfig(
        strategy=strategy,
        n=n,
        m=(args.m if m is None else m) if strategy != "best_of_n" else 1,
        depth=args.steps,
        step_tokens=args.step_tokens,
        stop_ids=(ids[10],),
        delimiter_id=ids[0],
        rule=SamplingRule(temperature=1.0),
    )


def time_compiled(models, prompts, lengths, cfg, reps: int):
    """(compile seconds, median run seconds, output as numpy) of the compiled search."""

    def call():
        start = time.perf_counter()
        out = jax.block_until_ready(search(*models, prompts, lengths, jax.random.key(3), cfg))
        return time.perf_counter() - start, out

    first, _ = call()
    runs = [call() for _ in range(reps)]
    seconds = statistics.median(t for t, _ in runs)
    return first - seconds, seconds, jax.tree.map(np.asarray, runs[0][1])


def warm_reference(models, prompts, cfg):
    """Compiles the reference's jitted pieces at the shapes its timed call uses."""
    policy, params, verifier, vparams = models
    width = prompts.shape[1] + cfg.max_path_tokens
    tokens = jnp.zeros((1, width), jnp.int32)
    _, cache = reference.prefill(policy, params, tokens, 1)
    reference.decode_token(policy, params, jnp.int32(0), cache)
    reference.draw(cfg.rule, jnp.zeros((prompts.shape[0] * cfg.n, VOCAB), jnp.float32), jax.random.key(0))
    mask = jnp.zeros((1, width), bool)
    jax.block_until_ready(
        reference.path_score(
            verifier, vparams, tokens, mask, mask, cfg.verifier_kind, cfg.delimiter_id, cfg.aggregation
        )
    )


def mismatched_fields(compiled, expected) -> list[str]:
    """Fields of two `SearchOutput`s that differ (scores: by more than 1e-5)."""
    bad = []
    for field in dataclasses.fields(compiled):
        a, b = getattr(compiled, field.name), getattr(expected, field.name)
        same = np.allclose(a, b, atol=1e-5) if field.name == "scores" else np.array_equal(a, b)
        bad += [] if same else [field.name]
    return bad


def compare(args, models, ids):
    prompts, lengths = problems(args.problems)
    cfg = search_config(args, ids)
    compile_s, compiled_s, out = time_compiled(models, prompts, lengths, cfg, args.reps)
    warm_reference(models, prompts, cfg)
    start = time.perf_counter()
    expected = reference.reference_search(*models, prompts, lengths, jax.random.key(3), cfg)
    reference_s = time.perf_counter() - start
    bad = mismatched_fields(out, expected)
    if bad:
        raise AssertionError(f"compiled search and reference differ in {bad}")
    print(
        f"1. Beam search, {args.problems} problems, N={cfg.n}, M={cfg.m}, {cfg.depth} steps of <= "
        f"{cfg.step_tokens} tokens, temperature 1, PRM 'last', delimiter {cfg.delimiter_id}, stop {cfg.stop_ids}: "
        f"outputs identical (tokens, lengths, finished, duplicate, best, scores within 1e-5, token counts)"
    )
    ended = int(((out.tokens == cfg.delimiter_id).sum()))
    print(
        f"   {out.steps} steps run, {int(out.generated_tokens.sum())} tokens generated, "
        f"{ended} delimiters in the final paths, {int(out.finished.sum())}/{out.finished.size} paths finished"
    )
    print(
        f"| {'implementation':<34} | {'compile s':>9} | {'run s':>8} | {'problems/s':>10} | {'speedup':>7} |"
    )
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 10}|{'-' * 12}|{'-' * 9}|")
    rows = [
        ("compiled (tree_search.search)", f"{compile_s:.1f}", compiled_s),
        ("Python reference (reference.py)", "warmed", reference_s),
    ]
    for name, compile_text, seconds in rows:
        print(
            f"| {name:<34} | {compile_text:>9} | {seconds:>8.2f} | {args.problems / seconds:>10.2f} | "
            f"{reference_s / seconds:>6.1f}x |"
        )
    speedup = reference_s / compiled_s
    verdict = "meets it" if speedup >= SPEEDUP_TARGET else "MISSES it"
    print(f"target compiled >= {SPEEDUP_TARGET:.0f}x the reference: {speedup:.1f}x, {verdict}\n")


def sweep(args, models, ids):
    prompts, lengths = problems(args.sweep_problems)
    print(
        f"2. Compiled search throughput, {args.sweep_problems} problems, {args.steps} steps of <= "
        f"{args.step_tokens} tokens, median of {args.reps} calls after a compiling one"
    )
    print(
        f"| {'strategy':<9} | {'N':>3} | {'M':>2} | {'compile s':>9} | {'run s':>7} | {'problems/s':>10} | {'gen tok/s':>9} |"
    )
    print(f"|{'-' * 11}|{'-' * 5}|{'-' * 4}|{'-' * 11}|{'-' * 9}|{'-' * 12}|{'-' * 11}|")
    for strategy in ("best_of_n", "beam"):
        for n in args.sweep_n:
            cfg = search_config(args, ids, strategy, n=n, m=min(4, n))
            compile_s, seconds, out = time_compiled(models, prompts, lengths, cfg, args.reps)
            print(
                f"| {strategy:<9} | {n:>3} | {cfg.m:>2} | {compile_s:>9.1f} | {seconds:>7.2f} | "
                f"{args.sweep_problems / seconds:>10.2f} | {out.generated_tokens.sum() / seconds:>9,.0f} |"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a much smaller setting (about 30 s)")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--step-tokens", type=int, default=12)
    parser.add_argument("--sweep-problems", type=int, default=8)
    parser.add_argument("--sweep-n", type=int, nargs="+", default=list(SWEEP_N))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true", help="only the throughput sweep")
    args = parser.parse_args()
    if args.quick:
        args.problems, args.n, args.m, args.steps, args.step_tokens = 4, 4, 2, 3, 6
        args.sweep_problems, args.sweep_n, args.reps = 4, [1, 4, 16], 2
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform} x{jax.device_count()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; model {PRESET} shape, vocabulary {VOCAB}, random weights\n"
    )
    models = build_models(PRESET)
    ids = frequent_tokens(models[0], models[1], *problems(args.problems))
    if not args.skip_reference:
        compare(args, models, ids)
    sweep(args, models, ids)


if __name__ == "__main__":
    main()
