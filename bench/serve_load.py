"""`rtc serve` under load: N concurrent streaming clients for a bounded time, by reasoning effort.

Run: `python bench/serve_load.py --model RUN [--clients 32] [--seconds 60] [--effort low,high]`.
Starts the server (`python -m rtc.main --config=experiments/configs/serve.py`) on a free 127.0.0.1
port, compiles its batch shapes with a warm-up, then runs one phase per effort (`--seconds` split
evenly between them): each of `--clients` clients (the official `openai` client, asyncio) sends one
streaming request after another, greedy, each a two-operand arithmetic question. Per phase it prints
the time to the first reasoning token and to the first answer token (p50 / p99), the end-to-end
latency, served tokens/s (completion tokens, reasoning included), requests/s and errors (an exception,
or a stream without usage). Then it stops the server and measures the offline sampler
(`Reasoner.generate`, the same questions as one batch of `--clients` rows, after a compile call) for
the served / offline ratio, and the low / high latency ratio when both ran.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EFFORTS = ("none", "low", "medium", "high")


def questions(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"Compute {rng.randint(1, 99)}{rng.choice('+-*')}{rng.randint(1, 99)}." for _ in range(count)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, clients: int, batch_wait_ms: float) -> subprocess.Popen:
    max_batch = 1 << max(0, (clients - 1).bit_length())
    command = [
        sys.executable,
        "-m",
        "rtc.main",
        "--config=experiments/configs/serve.py",
        f"--workdir={model}",
        f"--config.port={port}",
        f"--config.max_batch={max_batch}",
        f"--config.max_queue={max(256, 4 * clients)}",
        "--config.model_name=bench",
        f"--config.batch_wait_ms={batch_wait_ms}",
    ]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if json.loads(response.read())["status"] == "ok":
                    return server
        except OSError:
            if server.poll() is not None:
                sys.exit(f"the server exited: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
    server.kill()
    sys.exit("the server did not start in 300 s")


def health(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=10) as response:
        return json.loads(response.read())


async def one_request(client, question: str, effort: str, max_tokens: int | None = None) -> dict:
    """One streamed request: its timings (s from its start) and counts, or its error."""
    start = time.perf_counter()
    first_reasoning = first_answer = None
    usage = None
    extra = {} if effort == "none" else {"reasoning_effort": effort}
    if max_tokens is not None:
        extra["max_completion_tokens"] = max_tokens
    try:
        stream = await client.chat.completions.create(
            model="bench",
            messages=[{"role": "user", "content": question}],
            stream=True,
            stream_options={"include_usage": True},
            **extra,
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                now = time.perf_counter() - start
                if first_reasoning is None and (choice.delta.model_extra or {}).get("reasoning_content"):
                    first_reasoning = now
                if first_answer is None and choice.delta.content:
                    first_answer = now
    except Exception as error:  # counted, not raised: the bench reports errors
        return {"error": f"{type(error).__name__}: {error}"}
    if usage is None:
        return {"error": "stream ended without usage"}
    return {
        "latency": time.perf_counter() - start,
        "first_reasoning": first_reasoning,
        "first_answer": first_answer,
        "tokens": usage.completion_tokens,
        "reasoning_tokens": usage.completion_tokens_details.reasoning_tokens,
    }


async def phase(
    base_url: str, clients: int, seconds: float, effort: str, seed: int, max_tokens: int | None
) -> tuple[list[dict], float, float]:
    """`clients` closed-loop clients for `seconds`; every request started in time is waited for.
    Returns the results, the seconds taken and the mean request rows per batch the server ran."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    pool = questions(4096, seed)
    results: list[dict] = []
    before = health(base_url)
    start = time.perf_counter()

    async def run(c: int):
        i = c
        while time.perf_counter() - start < seconds:
            results.append(await one_request(client, pool[i % len(pool)], effort, max_tokens))
            i += clients

    await asyncio.gather(*(run(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    await client.close()
    after = health(base_url)
    rows = (after["rows_served"] - before["rows_served"]) / max(1, after["batches"] - before["batches"])
    return results, elapsed, rows


async def warm_up(base_url: str, clients: int, efforts: list[str], max_tokens: int | None) -> None:
    """A burst of every power-of-two size up to `clients`, per effort: the server compiles its shapes."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    for effort in efforts:
        size = 1
        while size <= clients:
            await asyncio.gather(*(one_request(client, q, effort, max_tokens) for q in questions(size, 99)))
            size *= 2
    await client.close()


def percentile(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v is not None)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def pair(rows: list[dict], field: str) -> str:
    values = [r[field] for r in rows]
    return f"{percentile(values, 50):.3f} / {percentile(values, 99):.3f}"


def offline_tokens_per_s(
    model: str, clients: int, efforts: list[str], max_tokens: int | None
) -> dict[str, float]:
    """The offline sampler's tokens/s at batch `clients`, per effort (median of 3 after a compile call)."""
    import rtc

    reasoner = rtc.load(model)
    batch = questions(clients, 7)
    out = {}
    for effort in efforts:
        kwargs = {} if effort == "none" else {"reasoning_effort": effort}
        kwargs["max_new_tokens"] = max_tokens
        reasoner.generate(batch, **kwargs)
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            results = reasoner.generate(batch, **kwargs)
            rates.append(sum(r.num_tokens for r in results) / (time.perf_counter() - start))
        out[effort] = statistics.median(rates)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", required=True, help="a run's workdir or a checkpoint (what rtc.load takes)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60, help="total, split evenly between the efforts")
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="max_completion_tokens (efforts cap thinking at a share)"
    )
    parser.add_argument("--batch-wait-ms", type=float, default=50.0, help="the server's batch_wait_ms")
    parser.add_argument("--effort", default="low,high", help=f"comma-separated, of {', '.join(EFFORTS)}")
    args = parser.parse_args()
    efforts = args.effort.split(",")
    if any(e not in EFFORTS for e in efforts):
        sys.exit(f"--effort takes {', '.join(EFFORTS)}; got {args.effort}")
    port = free_port()
    load_start = os.getloadavg()[0]
    server = start_server(args.model, port, args.clients, args.batch_wait_ms)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        warm_start = time.perf_counter()
        asyncio.run(warm_up(base_url, args.clients, efforts, args.max_tokens))
        warm = time.perf_counter() - warm_start
        served = {}
        for i, effort in enumerate(efforts):
            served[effort] = asyncio.run(
                phase(base_url, args.clients, args.seconds / len(efforts), effort, i, args.max_tokens)
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    offline = offline_tokens_per_s(args.model, args.clients, efforts, args.max_tokens)

    print(
        f"\nrtc serve, {args.model}, {args.clients} streaming clients, {args.seconds:.0f} s "
        f"({args.seconds / len(efforts):.0f} s per effort), greedy, max_completion_tokens "
        f"{args.max_tokens or 'default'}, batch_wait_ms {args.batch_wait_ms:g}; warm-up {warm:.0f} s; "
        f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end\n"
    )
    head = (
        "| effort | requests | errors | TTFT reasoning p50 / p99 (s) | TTFT answer p50 / p99 (s) "
        "| latency p50 / p99 (s) | reasoning tokens / request | rows / batch | served tokens/s | requests/s "
        "| offline tokens/s (batch {c}) | served / offline |"
    ).format(c=args.clients)
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    medians = {}
    for effort, (results, elapsed, rows) in served.items():
        ok = [r for r in results if "error" not in r]
        errors = len(results) - len(ok)
        tokens = sum(r["tokens"] for r in ok)
        rate = tokens / elapsed
        medians[effort] = percentile([r["latency"] for r in ok], 50)

        thinking = statistics.mean(r["reasoning_tokens"] for r in ok) if ok else float("nan")
        print(
            f"| {effort} | {len(results)} | {errors} | {pair(ok, 'first_reasoning')} | {pair(ok, 'first_answer')} "
            f"| {pair(ok, 'latency')} | {thinking:.1f} | {rows:.1f} | {rate:.0f} | {len(results) / elapsed:.1f} "
            f"| {offline[effort]:.0f} | {rate / offline[effort]:.2f} |"
        )
        for r in results[:3]:
            if "error" in r:
                print(f"  error: {r['error'][:200]}")
    if "low" in medians and "high" in medians:
        print(f"\nmedian latency high / low effort: {medians['high'] / medians['low']:.2f}x")


if __name__ == "__main__":
    main()
