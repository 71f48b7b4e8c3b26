"""Model FLOP utilisation of the SFT update and of the GRPO step, against the measured float32 matmul peak.

Run: `python bench/mfu.py [--steps 3]` (about 2.5 min on 2 CPU cores at load average 8). Prints one
table and saves it to `bench/results/mfu.md`. MFU = model FLOPs per second / the best float32 matmul
GFLOP/s of `bench/matmul_peak.py` (measured before and after the runs, the larger used). Forward
FLOPs per token are `ModelConfig.flops_per_token(context)` (2 per matmul weight, the tied output
projection included, plus attention; PaLM App. B), the formula `bench/throughput.py` uses. Counted:
- SFT update (`bench/throughput.py`'s `sft_update`, batch 32 x seq 128): forward + backward = 3 forwards
  per token at context 128, as `bench/throughput.py` counts it.
- GRPO update (`programs.make_learn_step`, mu = 1, beta = 0): the loss's forward + backward = 3 forwards per
  token (at mu = 1 the old policy is the current one, so no separate old-policy forward runs; one more
  forward per update with mu > 1, and one with a reference model when beta > 0), over each
  row's prompt + completion tokens less one (padding not counted), at context L - 1, L the padded row.
- GRPO rollout: one forward per prompt and generated token at the mean context (L / 2); a whole step
  is rollout + update. The fused step and the host-reward path (rollout, host rewards, learn step)
  are `bench/rl_throughput.py`'s, after one compiling step; an SFT update, a fused step and a
  host-path step take turns each round, so load from other jobs falls on all alike.
"""

import argparse
import os
import time
from pathlib import Path

import jax
import numpy as np

try:
    from bench import rl_throughput
    from bench.matmul_peak import measure_matmul_peak
    from bench.throughput import BATCH, SEQ_LEN, sft_step
except ImportError:  # run as `python bench/mfu.py`: bench/ itself is on sys.path
    import rl_throughput
    from matmul_peak import measure_matmul_peak
    from throughput import BATCH, SEQ_LEN, sft_step

from rtc.model import model_config

RESULTS = Path(__file__).parent / "results" / "mfu.md"


def take_turns(calls: dict, rounds: int) -> dict:
    """`{name: [result of each call]}`: each warmed-up call once per round, in turn, so load from
    other jobs on a shared machine falls on all of them alike."""
    results = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            results[name].append(call())
    return results


def timed(call):
    def run():
        start = time.perf_counter()
        value = call()
        return time.perf_counter() - start, value

    return run


def update_forwards(cfg) -> int:
    """Forward-pass equivalents per token of one learn step: 3 (forward + backward) per update, plus the
    old-policy forward when there are several updates, plus the reference forward when beta > 0."""
    return 3 * cfg.mu + (cfg.mu > 1) + (cfg.loss.kl_coef > 0)


def grpo_flops(s: dict, generated: float) -> tuple[float, float]:
    """`(update, rollout)` model FLOPs of one GRPO step that generated `generated` tokens."""
    config, cfg = s["model"].config, s["cfg"]
    rows, prompt_len = s["prompts"].shape
    length = prompt_len + cfg.max_new_tokens
    prompt_tokens = float(s["lengths"].sum())
    forwards = update_forwards(cfg)
    update = forwards * (prompt_tokens + generated - rows) * config.flops_per_token(length - 1)
    rollout = (prompt_tokens + generated) * config.flops_per_token(length / 2)
    return update, rollout


def table(rows: list, peak: float) -> list[str]:
    """Markdown lines for `rows` of `(name, counted, seconds, flops)`."""
    lines = [
        "| step | FLOPs counted | s/step | GFLOP/step | GFLOP/s | MFU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, counted, seconds, flops in rows:
        lines.append(
            f"| {name} | {counted} | {seconds:.3f} | {flops / 1e9:.1f} | {flops / seconds / 1e9:.1f} "
            f"| {flops / seconds / peak:.1%} |"
        )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=96)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    peak_before = measure_matmul_peak() * 1e9
    s = rl_throughput.setup("grpo", args.preset, args.prompts, args.group, args.new_tokens)
    config = s["model"].config
    calls = {
        "sft": timed(sft_step(model_config(args.preset, vocab_size=config.vocab_size))),
        "fused": timed(rl_throughput.fused_stepper(s)),
        "split": rl_throughput.split_stepper(s),
    }
    results = take_turns(calls, args.steps)
    peak = max(peak_before, measure_matmul_peak() * 1e9)
    sft_seconds = np.mean([seconds for seconds, _ in results["sft"]])
    fused, fused_tokens = np.mean(results["fused"], axis=0)
    rollout, rewards, update = np.mean([parts for parts, _ in results["split"]], axis=0)
    split_tokens = np.mean([tokens for _, tokens in results["split"]])
    update_flops, rollout_flops = grpo_flops(s, split_tokens)
    fused_flops = sum(grpo_flops(s, fused_tokens))
    num_rows, length = s["prompts"].shape[0], s["prompts"].shape[1] + args.new_tokens
    sft_flops = 3 * BATCH * SEQ_LEN * config.flops_per_token(SEQ_LEN)
    rows = [
        ("SFT update", f"3 fwd x {BATCH}x{SEQ_LEN} tokens", sft_seconds, sft_flops),
        (
            "GRPO update (learn step)",
            f"{update_forwards(s['cfg'])} fwd x {num_rows} rows, L={length}",
            update,
            update_flops,
        ),
        ("GRPO rollout", "1 fwd per prompt + generated token", rollout, rollout_flops),
        ("GRPO step, fused", "rollout + update", fused, fused_flops),
        (
            "GRPO step, host rewards",
            "rollout + update",
            rollout + rewards + update,
            update_flops + rollout_flops,
        ),
    ]
    header = (
        f"MFU, {args.preset} (vocab {config.vocab_size}, {config.num_params / 1e6:.2f}M params); GRPO "
        f"{args.prompts} prompts x G={args.group}, up to {args.new_tokens} new tokens "
        f"({split_tokens / num_rows:.1f} generated per row), mu=1, beta=0; mean of {args.steps} rounds "
        f"after a compiling step, SFT, fused and host-path steps taking turns; float32 matmul peak "
        f"{peak / 1e9:.1f} GFLOP/s ({peak_before / 1e9:.1f} before the runs); jax {jax.__version__}, "
        f"{os.cpu_count()} CPUs, load "
        f"average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    lines = table(rows, peak)
    print(header + "\n\n" + "\n".join(lines))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join([header, "", *lines]) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
