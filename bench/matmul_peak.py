"""Float32 matmul peak of this machine, the denominator of model FLOP utilisation.

Run: `python bench/matmul_peak.py` (about 10 s on 2 CPU cores). Prints GFLOP/s of a jitted
`jnp.dot` per square size, the median of several timed calls after warmup, and the max.
On a shared machine the numbers are noisy; the max over sizes is the figure to use.
"""

import statistics
import time

import jax
import jax.numpy as jnp

SIZES = (512, 1024, 2048)


def matmul_gflops(n: int, reps: int = 5, warmup: int = 2) -> float:
    """GFLOP/s of a float32 [n, n] @ [n, n] (2 n^3 flops), median over `reps` timed calls."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    for _ in range(warmup):
        dot(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def measure_matmul_peak(sizes=(1024, 2048), reps: int = 5) -> float:
    """The best float32 matmul GFLOP/s over `sizes`."""
    return max(matmul_gflops(n, reps) for n in sizes)


def main():
    print(f"float32 matmul, jitted jnp.dot, {jax.devices()[0].platform} x{jax.device_count()}")
    print(f"{'size':>6} {'GFLOP/s':>9}")
    results = {n: matmul_gflops(n, reps=7) for n in SIZES}
    for n, gflops in results.items():
        print(f"{n:>6} {gflops:>9.1f}")
    print(f"{'max':>6} {max(results.values()):>9.1f}")


if __name__ == "__main__":
    main()
