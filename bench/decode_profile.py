"""Where the sampler's decode time goes, at the DESIGN's demo shape (batch 32, prompt 32, 128 new).

Run: `python bench/decode_profile.py` (about 40 s on 2 idle CPU cores). Prints
  1. the sampler's time per new token next to one jitted decode-step forward and the prefill;
  2. what-if variants of the sampler, each built by swapping an `rtc` function at trace time
     (nothing in rtc/ is edited), with the time per call and whether greedy tokens equal the
     baseline's:
       shared-index write   `kv_cache.write` as one `dynamic_update_slice` at a scalar slot
       head-major cache     k, v stored `[B, Hkv, S, D]` (bench/head_major.py): no per-step relayout
       greedy               temperature 0: no Gumbel noise, so the sampling-rule cost drops out
  3. the XLA ops that take the most time in one sampler call (from a `jax.profiler` trace),
     grouped over layers.
Times are medians of several calls after a warmup call; the machine is shared, so they are noisy.
"""

import collections
import contextlib
import functools
import glob
import gzip
import json
import re
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from rtc.model import Model, kv_cache, model_config, transformer
from rtc.sampling import sampler
from rtc.sampling.rules import SamplingRule

try:
    from bench import head_major
except ImportError:  # run as `python bench/decode_profile.py`: bench/ itself is on sys.path
    import head_major

BATCH, PROMPT_LEN, NEW_TOKENS, REPS, TOP_OPS = 32, 32, 128, 5, 12


def median_seconds(fn, reps: int = REPS) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(calls: dict, reps: int = REPS) -> dict:
    """Median seconds per call of each warmed-up `calls[key]()`, timed round-robin so that load from
    other jobs on a shared machine falls on every variant alike."""
    times = collections.defaultdict(list)
    for _ in range(reps):
        for key, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def shared_index_write(buffer, new, index):
    """Every row at slot `index[0]`: exact when all rows advance together (equal prompt lengths)."""
    return jax.lax.dynamic_update_slice(buffer, new.astype(buffer.dtype), (0, index[0], 0, 0))


@contextlib.contextmanager
def swapped(*patches):
    """Temporarily sets `(module, name, value)` attributes; jit traces inside see the new functions."""
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


VARIANTS = {
    "baseline": (),
    "shared-index write": ((kv_cache, "write", shared_index_write),),
    "head-major cache": (
        (kv_cache, "init_cache", head_major.init_cache),
        (kv_cache, "write", head_major.write),
        (transformer, "attention", head_major.attention),
        (transformer, "_attention_mask", head_major.attention_mask),
    ),
}


def variant_model(config, name: str) -> Model:
    """A `Model` of a class of its own: `sample`'s jit keys on the model, so each variant is traced
    anew (under its swaps) rather than served from another variant's cached trace."""
    return type(f"Model[{name}]", (Model,), {})(config)


def sampler_call(model, params, prompts, rule):
    """`generate` on fixed prompts and key, as a zero-argument call."""
    cfg = sampler.SamplerConfig(max_new_tokens=NEW_TOKENS, stop_ids=(), rule=rule)
    return lambda: sampler.generate(model, params, prompts, jax.random.key(0), cfg)


def compiled_sampler_call(model, params, prompts, rule):
    """`(call, compiled HLO text)` of one ahead-of-time compiled `generate` executable."""
    cfg = sampler.SamplerConfig(max_new_tokens=NEW_TOKENS, stop_ids=(), rule=rule)
    run = jax.jit(lambda params, key: sampler.generate(model, params, prompts, key, cfg).tokens)
    key = jax.random.key(0)
    executable = run.lower(params, key).compile()
    return lambda: executable(params, key), executable.as_text()


def step_and_prefill_seconds(model, params, tokens) -> tuple[float, float]:
    """One jitted decode-step forward (cache at the mean context) and one jitted prefill."""
    length = PROMPT_LEN + NEW_TOKENS
    positions = jnp.broadcast_to(jnp.arange(PROMPT_LEN), tokens.shape)

    @jax.jit
    def prefill(params, tokens):
        return model.apply(params, tokens, positions, model.init_cache(BATCH, length))[2]

    @functools.partial(jax.jit, donate_argnums=2)
    def step(params, token, cache):
        return model.apply(params, token, cache["index"][:, None], cache)[2]

    cache = prefill(params, tokens)
    cache = {**cache, "index": jnp.full((BATCH,), PROMPT_LEN + NEW_TOKENS // 2, jnp.int32)}
    token = tokens[:, :1]

    def decode():
        nonlocal cache
        cache = step(params, token, cache)
        cache = {**cache, "index": cache["index"] - 1}  # stay at the same slot
        return cache

    return median_seconds(decode, reps=50), median_seconds(lambda: prefill(params, tokens))


def op_profile(call, compiled_text: str) -> list[tuple[float, int, str]]:
    """`(ms, count, 'op: source')` of every XLA op kind in one traced call, slowest first; ops of
    all layers are summed, with the source (the jax op) from the compiled HLO's metadata."""
    sources = dict(re.findall(r"%([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"", compiled_text))
    jax.block_until_ready(call())
    with tempfile.TemporaryDirectory() as logdir:
        jax.profiler.start_trace(logdir, create_perfetto_trace=True)
        jax.block_until_ready(call())
        jax.profiler.stop_trace()
        trace_files = glob.glob(f"{logdir}/**/*.trace.json.gz", recursive=True)
        with gzip.open(trace_files[0]) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    micros, counts = collections.Counter(), collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name.startswith(("Thunk", "$", "Slinky", "while")):
            continue
        source = re.sub(r"layer_\d+", "layer_*", sources.get(name, ""))
        source = re.sub(r"^(jit\([^)]*\)/)+", "", source)
        op = re.sub(r"[.]\d+$", "", name)
        key = f"{op}: {source or '(no source)'}"
        micros[key] += event.get("dur", 0)
        counts[key] += 1
    return [(us / 1e3, counts[key], key) for key, us in micros.most_common()]


def main():
    config = model_config("cpu-small", vocab_size=1024)
    model = Model(config)
    params = model.init_params(jax.random.key(0))
    prompts = np.random.default_rng(0).integers(5, 1024, (BATCH, PROMPT_LEN)).tolist()
    tokens = jnp.asarray(prompts, jnp.int32)
    temperature_1, greedy = SamplingRule(temperature=1.0), SamplingRule(temperature=0.0)
    print(
        f"cpu-small (4L x 256, vocab 1024), batch {BATCH}, prompt {PROMPT_LEN}, {NEW_TOKENS} new tokens; "
        f"medians of {REPS} calls after warmup (shared machine: noisy)\n"
    )

    sample_seconds = median_seconds(sampler_call(model, params, prompts, temperature_1))
    step_seconds, prefill_seconds = step_and_prefill_seconds(model, params, tokens)
    per_token = (sample_seconds - prefill_seconds) / NEW_TOKENS
    print("1. Sampler per token vs one decode-step forward")
    print(
        f"   sampler call {sample_seconds * 1e3:.0f} ms; prefill {prefill_seconds * 1e3:.1f} ms; "
        f"(call - prefill) / {NEW_TOKENS} = {per_token * 1e3:.2f} ms per step"
    )
    print(
        f"   one jitted decode-step forward (own dispatch, cache at slot {PROMPT_LEN + NEW_TOKENS // 2}): "
        f"{step_seconds * 1e3:.2f} ms\n"
    )

    print("2. What-if variants (rtc functions swapped at trace time; calls interleaved round-robin)")
    calls, greedy_tokens = {}, {}
    for name, patches in VARIANTS.items():
        model_variant = variant_model(config, name)
        with swapped(*patches):  # the first call traces and compiles under the swap; later calls reuse it
            for rule in (temperature_1, greedy):
                calls[name, rule.greedy] = sampler_call(model_variant, params, prompts, rule)
                out = jax.block_until_ready(calls[name, rule.greedy]())
            greedy_tokens[name] = np.asarray(out.tokens)
    seconds = interleaved_median_seconds(calls)
    base = seconds["baseline", False]
    print(f"   {'variant':<20} {'T=1 ms':>8} {'vs base':>8} {'greedy ms':>10} {'greedy tokens':>14}")
    for name in VARIANTS:
        same = "same" if np.array_equal(greedy_tokens[name], greedy_tokens["baseline"]) else "DIFFER"
        print(
            f"   {name:<20} {seconds[name, False] * 1e3:>8.0f} {base / seconds[name, False]:>7.2f}x "
            f"{seconds[name, True] * 1e3:>10.0f} {same:>14}"
        )
    print("   T=1 ms: temperature-1 sampling, as in bench/throughput.py; greedy: temperature 0\n")

    print("3. Slowest XLA ops in one baseline sampler call (profiler trace, summed over layers)")
    call, compiled_text = compiled_sampler_call(model, params, prompts, temperature_1)
    rows = op_profile(call, compiled_text)
    total = sum(ms for ms, _, _ in rows)
    print(f"   {'ms':>7} {'share':>6} {'calls':>6}  op: source")
    for ms, count, key in rows[:TOP_OPS]:
        print(f"   {ms:>7.1f} {ms / total:>6.1%} {count:>6}  {key[:110]}")
    print(
        f"   all ops: {total:.0f} ms; tracing slows the call, so read the shares. A transpose_copy_fusion "
        f"tagged .../scatter is a layer's k or v cache, just written by the scatter, copied whole into the "
        f"[B, Hkv, ...] layout that the attention dots ('dot: (no source)', 2 per layer and step) want."
    )


if __name__ == "__main__":
    main()
