"""Sampler, beam-search and SFT-update throughput as tokens/s and MFU, side by side with Hugging Face `generate`.

Run: `python bench/throughput.py` or `--quick` (fewer reps, a shorter peak measurement and `generate`
cut sooner). Before the beam-search row they took about 45 s and 35 s on 2 idle CPU cores; the row adds
a compile and one more `generate` per round, and `--quick` took 3.2 min at load average 10 on 2 cores
(other jobs stall torch's threads and every `generate` runs to its `max_time`). Prints the measured float32
matmul peak once, then:
  1-2. sampler new tokens/s and MFU for two model sizes (batch 32, prompt 32, 128 new tokens,
       temperature 1, no stop tokens), next to transformers `generate` (PyTorch CPU, 2 threads as
       in the DESIGN, and 1 thread) on a `LlamaForCausalLM` of the same shape, and the ratio
       against the DESIGN target (rtc >= 3x the faster of the two);
  3.   beam search (`rtc.sampling.beam_search`) at the demo size: 8 problems x 4 beams (the same 32
       rows as the sampler), prompt 32, 128 new tokens, no stop tokens, next to transformers
       `generate(num_beams=4, do_sample=False)`, against the same 3x target. Both sides count
       problems x beams x new tokens (every beam is extended once a step; no hypothesis ends early);
  4.   the SFT update (batch 32 x seq 128) tokens/s and MFU against the DESIGN target (>= 50%).
Each time is the median over several rounds after one warmup (compile) call, with
`block_until_ready`; within a round the timed calls take turns, so load from other jobs on a
shared machine falls on rtc and the peer alike. Torch's 2 OpenMP threads stall badly when another
process holds a core (the 1-thread column does not), so each `generate` is cut at `max_time`.
The peer needs `pip install -e .[bench]` (or `bench/requirements-peers.txt`); without it the rtc
columns still print. The printed report is also saved as markdown (`--out`, default
bench/results/throughput.md).
"""

import argparse
import contextlib
import io
import itertools
import os
import pathlib
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rtc.model import Model, ModelConfig, model_config
from rtc.sampling.beam_search import BeamSearchConfig, beam_search
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, generate
from rtc.train.optimizer import adamw
from rtc.train.sft import sft_loss
from rtc.train.state import init_train_state, make_update

try:
    from bench.matmul_peak import measure_matmul_peak
except ImportError:  # run as `python bench/throughput.py`: bench/ itself is on sys.path
    from matmul_peak import measure_matmul_peak

BATCH, PROMPT_LEN, NEW_TOKENS, SEQ_LEN, VOCAB = 32, 32, 128, 128, 1024
SIZES = {"cpu-small": "demo: 4L x 256, 4 heads", "test-tiny": "2L x 64, 4 heads"}
DEMO = "cpu-small"
PEER_THREADS = (2, 1)  # 2 is the DESIGN's setting; 1 shows how much a busy core costs torch's OpenMP
SAMPLER_TARGET, SFT_TARGET = 3.0, 0.5  # DESIGN.md "Performance stance"
BEAM_PROBLEMS, NUM_BEAMS = 8, 4  # 32 rows, as the sampler's batch


def warmed(fn: Callable[[], int]) -> Callable[[], int]:
    """`fn` after one untimed call (the compile, for jitted code)."""
    fn()
    return fn


def median_rates(calls: dict, reps: int) -> dict:
    """`{key: (median seconds, median tokens/s)}` of warmed-up calls that block until done and
    return the tokens they produced. The calls take turns within each of `reps` rounds, so load
    from other jobs on a shared machine falls on all of them alike."""
    times, rates = {key: [] for key in calls}, {key: [] for key in calls}
    for _ in range(reps):
        for key, call in calls.items():
            start = time.perf_counter()
            tokens = call()
            seconds = time.perf_counter() - start
            times[key].append(seconds)
            rates[key].append(tokens / seconds)
    return {key: (statistics.median(times[key]), statistics.median(rates[key])) for key in calls}


CACHE_PHASES = 4  # SamplerConfig.cache_phases: the KV cache grows in 4 phases of 32 new tokens


def sampler_flops(config: ModelConfig) -> float:
    """Model FLOPs of one sampler call: the prefill plus one forward per new token.

    The forwards see contexts 1 .. PROMPT_LEN + NEW_TOKENS (the last sampled token is fed too), so
    each is counted at the mean context length; masked slots of the cache are not counted.
    """
    forwards = PROMPT_LEN + NEW_TOKENS
    return BATCH * forwards * config.flops_per_token((1 + forwards) / 2)


def prompts() -> list[list[int]]:
    return np.random.default_rng(0).integers(5, VOCAB, (BATCH, PROMPT_LEN)).tolist()


def rtc_sampler(config: ModelConfig) -> Callable[[], int]:
    """A warmed-up `generate` call (a new sampling key each call) returning the new tokens."""
    model = Model(config)
    params = model.init_params(jax.random.key(0))
    cfg = SamplerConfig(
        max_new_tokens=NEW_TOKENS, stop_ids=(), rule=SamplingRule(temperature=1.0), cache_phases=CACHE_PHASES
    )
    batch, seeds = prompts(), itertools.count()

    def call():
        out = jax.block_until_ready(generate(model, params, batch, jax.random.key(next(seeds)), cfg))
        return int(out.lengths.sum())

    if warmed(call)() != BATCH * NEW_TOKENS:
        raise RuntimeError("the sampler stopped before max_new_tokens")
    return call


def peer_model(config: ModelConfig):
    """A random-init transformers `LlamaForCausalLM` of the same shape; None when torch or transformers
    is not installed."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    peer_config = transformers.LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.embed_dim,
        intermediate_size=config.mlp_dim,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings,
    )
    return transformers.LlamaForCausalLM(peer_config).eval()


def peer_generate(
    config: ModelConfig,
    threads: int,
    max_seconds: float,
    batch: list[list[int]],
    rows_per_prompt: int,
    **options,
) -> Callable[[], int] | None:
    """A warmed-up transformers `generate(**options)` on `peer_model(config)` over `batch`, returning the
    new tokens of all `len(batch) * rows_per_prompt` rows; None when the peer is not installed.

    `min_new_tokens` keeps its eos out, as rtc runs with no stop ids. `max_seconds` is `generate`'s
    `max_time`: a call still running then stops early and counts the tokens it made, which bounds the
    run when a busy core stalls torch's OpenMP threads.
    """
    model = peer_model(config)
    if model is None:
        return None
    import torch

    input_ids = torch.tensor(batch, dtype=torch.long)
    kwargs = dict(
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        pad_token_id=0,
        max_time=max_seconds,
        **options,
    )

    def call():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            out = model.generate(input_ids, **kwargs)
        return len(batch) * rows_per_prompt * (out.shape[1] - PROMPT_LEN)

    return warmed(call)


def peer_sampler(config: ModelConfig, threads: int, max_seconds: float) -> Callable[[], int] | None:
    """`generate` sampling at temperature 1 (no top-k) on the sampler's batch."""
    return peer_generate(config, threads, max_seconds, prompts(), 1, do_sample=True, temperature=1.0, top_k=0)


def rtc_beam_search(config: ModelConfig) -> Callable[[], int]:
    """A warmed-up `beam_search` call returning problems x beams x new tokens."""
    model = Model(config)
    params = model.init_params(jax.random.key(0))
    cfg = BeamSearchConfig(num_beams=NUM_BEAMS, max_new_tokens=NEW_TOKENS, cache_phases=CACHE_PHASES)
    batch = prompts()[:BEAM_PROBLEMS]

    def call():
        out = jax.block_until_ready(beam_search(model, params, batch, cfg))
        return NUM_BEAMS * int(out.lengths[:, 0].sum())

    if warmed(call)() != BEAM_PROBLEMS * NUM_BEAMS * NEW_TOKENS:
        raise RuntimeError("beam search stopped before max_new_tokens")
    return call


def peer_beam_search(config: ModelConfig, threads: int, max_seconds: float) -> Callable[[], int] | None:
    """`generate(num_beams=NUM_BEAMS, do_sample=False)` (HF's defaults otherwise), counting problems x
    beams x new tokens."""
    batch = prompts()[:BEAM_PROBLEMS]
    return peer_generate(config, threads, max_seconds, batch, NUM_BEAMS, do_sample=False, num_beams=NUM_BEAMS)


def sft_update(config: ModelConfig) -> tuple[Callable, dict, dict]:
    """`(jitted update with the state donated, train state, fixed random batch)` for one SFT step."""
    model = Model(config)
    optimizer = adamw(1e-3, weight_decay=0.1, grad_clip=1.0)
    state = init_train_state(model.init_params(jax.random.key(0)), optimizer, jax.random.key(1))
    loss_fn = lambda params, batch, rng: sft_loss(params, batch, model)
    update = jax.jit(make_update(loss_fn, optimizer), donate_argnums=0)
    tokens = jax.random.randint(jax.random.key(2), (BATCH, SEQ_LEN + 1), 0, config.vocab_size)
    return update, state, {"tokens": tokens, "loss_mask": jnp.ones(tokens.shape, jnp.float32)}


def sft_step(config: ModelConfig) -> Callable[[], int]:
    """A warmed-up SFT update call on a fixed batch, returning the tokens trained on."""
    update, state, batch = sft_update(config)

    def call():
        nonlocal state
        state, metrics = update(state, batch)
        jax.block_until_ready(metrics)
        return BATCH * SEQ_LEN

    return warmed(call)


def verdict(value: float, target: float) -> str:
    return "meets it" if value >= target else "MISSES it"


def measure_samplers(configs: dict, reps: int, peer_max_seconds: float) -> dict:
    """`{("rtc" | torch threads, preset): (seconds, tokens/s)}`; no peer keys when it is absent."""
    calls = {}
    for name, config in configs.items():
        calls["rtc", name] = rtc_sampler(config)
        for threads in PEER_THREADS:
            peer = peer_sampler(config, threads, peer_max_seconds)
            if peer is not None:
                calls[threads, name] = peer
    return median_rates(calls, reps)


def print_sampler_table(configs: dict, results: dict, peak: float, peer_max_seconds: float):
    print(
        f"1-2. Sampler: batch {BATCH}, prompt {PROMPT_LEN}, {NEW_TOKENS} new tokens, rtc cache_phases={CACHE_PHASES}, "
        f"temperature 1, no stop "
        f"tokens; new tokens/s = {BATCH}*{NEW_TOKENS} / call time"
    )
    peer_header = "".join(f" {f'HF {t}thr tok/s':>14} {'rtc/HF':>7}" for t in PEER_THREADS)
    header = (
        f"{'model':<10} {'shape':<24} {'params':>7} {'rtc s':>7} {'rtc tok/s':>10} {'MFU':>6}{peer_header}"
    )
    print(header)
    print("-" * len(header))
    for name, config in configs.items():
        rtc_seconds, rtc_rate = results["rtc", name]
        mfu = sampler_flops(config) / rtc_seconds / peak
        row = (
            f"{name:<10} {SIZES[name]:<24} {config.num_params / 1e6:>6.2f}M {rtc_seconds:>7.3f} "
            f"{rtc_rate:>10.0f} {mfu:>6.1%}"
        )
        for threads in PEER_THREADS:
            if (threads, name) in results:
                hf_seconds, hf_rate = results[threads, name]
                cut = "*" if hf_seconds >= peer_max_seconds else " "
                row += f" {hf_rate:>13.0f}{cut} {rtc_rate / hf_rate:>6.2f}x"
            else:
                row += f" {'-':>14} {'-':>7}"
        print(row)
    print("MFU: prefill + one forward per new token at the mean context length (config.flops_per_token)")
    if (PEER_THREADS[0], DEMO) not in results:
        print("peer not installed: pip install -e .[bench]\n")
        return
    import torch
    import transformers

    print(
        f"HF: transformers {transformers.__version__} LlamaForCausalLM.generate, torch {torch.__version__}, "
        f"do_sample, temperature 1, top_k=0, min_new_tokens={NEW_TOKENS}; Nthr = torch threads; "
        f"* = cut at max_time={peer_max_seconds:.0f} s, rate from the tokens made"
    )
    best_peer = max(results[t, DEMO][1] for t in PEER_THREADS)
    ratio = results["rtc", DEMO][1] / best_peer
    print(
        f"target rtc >= {SAMPLER_TARGET:.0f}x HF tokens/s at {DEMO} (against the faster HF thread count): "
        f"{ratio:.2f}x, {verdict(ratio, SAMPLER_TARGET)}\n"
    )


def measure_beam_search(config: ModelConfig, reps: int, peer_max_seconds: float) -> dict:
    """`{"rtc" | torch threads: (seconds, tokens/s)}` at one model size; no peer keys when it is absent."""
    calls = {"rtc": rtc_beam_search(config)}
    for threads in PEER_THREADS:
        peer = peer_beam_search(config, threads, peer_max_seconds)
        if peer is not None:
            calls[threads] = peer
    return median_rates(calls, reps)


def print_beam_table(config: ModelConfig, results: dict, peer_max_seconds: float):
    print(
        f"3. Beam search: {BEAM_PROBLEMS} problems x {NUM_BEAMS} beams, prompt {PROMPT_LEN}, {NEW_TOKENS} new "
        f"tokens, rtc cache_phases={CACHE_PHASES}, length_penalty 1, no stop tokens; "
        f"tokens/s = {BEAM_PROBLEMS}*{NUM_BEAMS}*{NEW_TOKENS} / call time"
    )
    peer_header = "".join(f" {f'HF {t}thr tok/s':>14} {'rtc/HF':>7}" for t in PEER_THREADS)
    header = f"{'model':<10} {'shape':<24} {'params':>7} {'rtc s':>7} {'rtc tok/s':>10}{peer_header}"
    print(header)
    print("-" * len(header))
    rtc_seconds, rtc_rate = results["rtc"]
    row = (
        f"{DEMO:<10} {SIZES[DEMO]:<24} {config.num_params / 1e6:>6.2f}M {rtc_seconds:>7.3f} {rtc_rate:>10.0f}"
    )
    for threads in PEER_THREADS:
        if threads in results:
            hf_seconds, hf_rate = results[threads]
            cut = "*" if hf_seconds >= peer_max_seconds else " "
            row += f" {hf_rate:>13.0f}{cut} {rtc_rate / hf_rate:>6.2f}x"
        else:
            row += f" {'-':>14} {'-':>7}"
    print(row)
    if PEER_THREADS[0] not in results:
        print("peer not installed: pip install -e .[bench]\n")
        return
    print(
        f"HF: generate(num_beams={NUM_BEAMS}, do_sample=False, min_new_tokens={NEW_TOKENS}), defaults "
        f"length_penalty=1, early_stopping=False; * = cut at max_time={peer_max_seconds:.0f} s"
    )
    ratio = rtc_rate / max(results[t][1] for t in PEER_THREADS)
    print(
        f"target rtc >= {SAMPLER_TARGET:.0f}x HF tokens/s at {DEMO} (against the faster HF thread count): "
        f"{ratio:.2f}x, {verdict(ratio, SAMPLER_TARGET)}\n"
    )


def print_sft_table(configs: dict, results: dict, peak: float):
    tokens = BATCH * SEQ_LEN
    print(
        f"4. SFT update: jit(make_update(sft_loss, adamw), donate_argnums=0), batch {BATCH} x seq {SEQ_LEN}, "
        f"mask all ones; FLOPs = 3 x forward at context {SEQ_LEN}"
    )
    header = f"{'model':<10} {'shape':<24} {'step s':>7} {'tok/s':>9} {'GFLOP/s':>8} {'MFU':>6}"
    print(header)
    print("-" * len(header))
    mfu = {}
    for name, config in configs.items():
        seconds, rate = results[name]
        flops_per_second = 3 * config.flops_per_token(SEQ_LEN) * tokens / seconds
        mfu[name] = flops_per_second / peak
        print(
            f"{name:<10} {SIZES[name]:<24} {seconds:>7.3f} {rate:>9.0f} "
            f"{flops_per_second / 1e9:>8.1f} {mfu[name]:>6.1%}"
        )
    print(f"target MFU >= {SFT_TARGET:.0%} at {DEMO}: {mfu[DEMO]:.1%}, {verdict(mfu[DEMO], SFT_TARGET)}")


class Tee(io.TextIOBase):
    """Writes to every stream it holds: the report prints as it goes and is kept for `--out`."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps and a shorter peak measurement")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(__file__).parent / "results" / "throughput.md",
        help="markdown file the printed report is saved to",
    )
    args = parser.parse_args()
    reps = 3 if args.quick else 5
    peer_max_seconds = 5.0 if args.quick else 15.0

    report = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, report)):
        measure_and_print(reps, peer_max_seconds, quick=args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# bench/throughput.py{' --quick' if args.quick else ''}\n\n```\n{report.getvalue()}```\n"
    )
    print(f"saved to {args.out}")


def measure_and_print(reps: int, peer_max_seconds: float, quick: bool):
    """Runs every measurement, then prints the report."""
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform} x{jax.device_count()}, {os.cpu_count()} CPUs. "
        f"Times: median of {reps} rounds after a warmup call, calls interleaved; the machine is shared, "
        f"so expect 10-20% noise. Load average now: {os.getloadavg()[0]:.1f}."
    )
    configs = {name: model_config(name, vocab_size=VOCAB) for name in SIZES}
    peak_sizes = (1024,) if quick else (1024, 2048)
    peak_before = measure_matmul_peak(sizes=peak_sizes, reps=reps) * 1e9
    samplers = measure_samplers(configs, reps, peer_max_seconds)
    beams = measure_beam_search(configs[DEMO], reps, peer_max_seconds)
    sft = median_rates({name: sft_step(config) for name, config in configs.items()}, reps)
    peak_after = measure_matmul_peak(sizes=peak_sizes, reps=reps) * 1e9
    peak = max(peak_before, peak_after)
    print(
        f"Measured float32 matmul peak: {peak / 1e9:.1f} GFLOP/s (bench/matmul_peak.py, best size; "
        f"{peak_before / 1e9:.0f} before and {peak_after / 1e9:.0f} after the runs below, MFU uses the "
        f"larger: a busy core halves it)\n"
    )
    print_sampler_table(configs, samplers, peak, peer_max_seconds)
    print_beam_table(configs[DEMO], beams, peer_max_seconds)
    print_sft_table(configs, sft, peak)


if __name__ == "__main__":
    main()
