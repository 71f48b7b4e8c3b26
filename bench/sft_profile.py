"""Where the SFT update's time goes at the DESIGN's demo shape (cpu-small, batch 32 x seq 128).

Run: `python bench/sft_profile.py` (about 10 s on 2 CPU cores). Traces one jitted
`make_update(sft_loss, adamw)` step with `jax.profiler` and prints the share of XLA op time in
matmuls, in layout copies (transposes XLA inserts around the dots) and in everything else, then
the slowest ops summed over layers. Tracing slows the step; read the shares, not the times.
"""

import collections

import jax

try:
    from bench.decode_profile import op_profile
    from bench.throughput import sft_update
except ImportError:  # run as `python bench/sft_profile.py`: bench/ itself is on sys.path
    from decode_profile import op_profile
    from throughput import sft_update

from rtc.model import model_config

TOP_OPS = 15


def category(key: str) -> str:
    op, source = key.split(": ", 1)
    if op.startswith(("transpose", "copy")):
        return "layout copies (transpose/copy fusions)"
    if "dot_general" in source and op.startswith(("ynn_fusion", "dot")):
        return "matmuls (dot_general)"
    if "Transformer" in source:
        return "other model ops (elementwise, reductions, RoPE, softmax)"
    return "loss, optimizer and the rest"


def main():
    config = model_config("cpu-small", vocab_size=1024)
    update, state, batch = sft_update(config)
    executable = update.lower(state, batch).compile()

    def step():
        nonlocal state
        state, metrics = executable(state, batch)
        return metrics

    rows = op_profile(step, executable.as_text())
    total = sum(ms for ms, _, _ in rows)
    shares = collections.Counter()
    for ms, _, key in rows:
        shares[category(key)] += ms
    print(f"SFT update, cpu-small (vocab 1024), batch 32 x seq 128; one traced step, all ops {total:.0f} ms")
    for name, ms in shares.most_common():
        print(f"   {ms / total:>6.1%}  {name}")
    print(f"\n   {'ms':>7} {'share':>6} {'calls':>6}  op: source (slowest {TOP_OPS})")
    for ms, count, key in rows[:TOP_OPS]:
        print(f"   {ms:>7.1f} {ms / total:>6.1%} {count:>6}  {key[:110]}")
    print(f"   ({jax.devices()[0].platform}; tracing slows the step: read the shares)")


if __name__ == "__main__":
    main()
