"""Where the sampler's decode time goes, at the DESIGN's demo shape (batch 32, prompt 32, 128 new).

Run: `python bench/decode_profile.py` (about 25 s on 2 CPU cores). Profiles `rtc` as it is
(KV cache `[B, Hkv, S, D]`, projections as 2-D matmuls) and prints
  1. the sampler's time per new token next to one jitted decode-step forward and the prefill;
  2. temperature-1 against greedy (temperature 0: no Gumbel noise, so the sampling-rule cost drops
     out), calls interleaved round-robin;
  3. the XLA ops that take the most time in one temperature-1 sampler call (from a `jax.profiler`
     trace), summed over layers, and their shares by kind.
Times are medians of several calls after a warmup call; the machine is shared, so they are noisy.
The old `[B, S, Hkv, D]` cache layout against the library's is compared in bench/kv_write.py.
"""

import collections
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

from rtc.model import Model, model_config
from rtc.sampling import sampler
from rtc.sampling.rules import SamplingRule

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
    other jobs on a shared machine falls on every call alike."""
    times = collections.defaultdict(list)
    for _ in range(reps):
        for key, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


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
    """One jitted decode-step forward with its logits (cache at the mean context) and one jitted prefill."""
    length = PROMPT_LEN + NEW_TOKENS
    positions = jnp.broadcast_to(jnp.arange(PROMPT_LEN), tokens.shape)

    @jax.jit
    def prefill(params, tokens):
        return model.apply(params, tokens, positions, model.init_cache(BATCH, length))[2]

    @functools.partial(jax.jit, donate_argnums=2)
    def step(params, token, cache):
        logits, _, cache = model.apply(params, token, cache["index"][:, None], cache)
        return logits, cache  # the logits too, or XLA drops the final norm and output projection

    cache = prefill(params, tokens)
    cache = {**cache, "index": jnp.full((BATCH,), PROMPT_LEN + NEW_TOKENS // 2, jnp.int32)}
    token = tokens[:, :1]

    def decode():
        nonlocal cache
        logits, cache = step(params, token, cache)
        cache = {**cache, "index": cache["index"] - 1}  # stay at the same slot
        return logits, cache

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


def decode_category(key: str) -> str:
    """A coarse kind of one `op_profile` key of the sampler."""
    op, source = key.split(": ", 1)
    if op == "dot" and source == "(no source)":  # XLA rewrote the T=1 einsums and dropped their metadata
        return "decode attention dots (q.k and p.v, batched over B x Hkv)"
    if "dot_general" in source:
        if "while/body" in source:
            return "decode projections and output head (2-D matmuls)"
        return "prefill matmuls and attention"
    if op.startswith("iota_reduce") or "_gumbel" in source or "threefry" in source:
        return "sampling rule (Gumbel noise, argmax)"
    if op.startswith(("transpose", "copy")):
        return "layout copies (transpose/copy)"
    if "scatter" in source or "dynamic_update_slice" in source:
        return "cache and output writes (scatter, dynamic_update_slice)"
    if "Transformer" in source:
        return "other model ops (norms, RoPE, softmax, mask)"
    return "step bookkeeping and the rest"


def main():
    config = model_config("cpu-small", vocab_size=1024)
    model = Model(config)
    params = model.init_params(jax.random.key(0))
    prompts = np.random.default_rng(0).integers(5, 1024, (BATCH, PROMPT_LEN)).tolist()
    tokens = jnp.asarray(prompts, jnp.int32)
    temperature_1, greedy = SamplingRule(temperature=1.0), SamplingRule(temperature=0.0)
    print(
        f"cpu-small (4L x 256, vocab 1024), KV cache [B, Hkv, S, D], batch {BATCH}, prompt {PROMPT_LEN}, "
        f"{NEW_TOKENS} new tokens; medians of {REPS} calls after warmup (shared machine: noisy)\n"
    )

    calls = {"T=1": sampler_call(model, params, prompts, temperature_1)}
    calls["greedy"] = sampler_call(model, params, prompts, greedy)
    for call in calls.values():  # compile
        jax.block_until_ready(call())
    seconds = interleaved_median_seconds(calls)
    step_seconds, prefill_seconds = step_and_prefill_seconds(model, params, tokens)

    print("1. Sampler per token vs one decode-step forward (temperature 1)")
    per_token = (seconds["T=1"] - prefill_seconds) / NEW_TOKENS
    print(
        f"   sampler call {seconds['T=1'] * 1e3:.0f} ms; prefill {prefill_seconds * 1e3:.1f} ms; "
        f"(call - prefill) / {NEW_TOKENS} = {per_token * 1e3:.2f} ms per step"
    )
    print(
        f"   one jitted decode-step forward (own dispatch, cache at slot {PROMPT_LEN + NEW_TOKENS // 2}): "
        f"{step_seconds * 1e3:.2f} ms; sampler step / forward = {per_token / step_seconds:.2f}\n"
    )

    print("2. Temperature 1 vs greedy (calls interleaved round-robin)")
    print(f"   {'rule':<8} {'call ms':>8} {'ms/step':>8}")
    for name, value in seconds.items():
        print(f"   {name:<8} {value * 1e3:>8.0f} {(value - prefill_seconds) / NEW_TOKENS * 1e3:>8.2f}")
    print(f"   greedy / T=1 call time: {seconds['greedy'] / seconds['T=1']:.2f}\n")

    print("3. Slowest XLA ops in one temperature-1 sampler call (profiler trace, summed over layers)")
    call, compiled_text = compiled_sampler_call(model, params, prompts, temperature_1)
    rows = op_profile(call, compiled_text)
    total = sum(ms for ms, _, _ in rows)
    print(f"   {'ms':>7} {'share':>6} {'calls':>6}  op: source")
    for ms, count, key in rows[:TOP_OPS]:
        print(f"   {ms:>7.1f} {ms / total:>6.1%} {count:>6}  {key[:110]}")
    shares = collections.Counter()
    for ms, _, key in rows:
        shares[decode_category(key)] += ms
    print(f"   all ops: {total:.0f} ms (tracing slows the call: read the shares); by kind:")
    for name, ms in shares.most_common():
        print(f"   {ms / total:>6.1%}  {name}")


if __name__ == "__main__":
    main()
