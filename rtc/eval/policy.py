"""A policy's held-out evaluation: greedy and sampled accuracy by difficulty, thinking traces, and one
completion streamed token by token."""

import io
import sys

import jax
import numpy as np
from etils import epath

from rtc.data.format import prompt_tokens
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.eval.accuracy import accuracy_by_difficulty, format_table, sample_completions
from rtc.metrics import MetricWriter
from rtc.parallel import mesh as mesh_lib
from rtc.sampling import settings
from rtc.sampling.sampler import generate
from rtc.sampling.stream import StreamPrinter


def evaluate(
    config, workdir: epath.PathLike, tokenizer, model, params, writer: MetricWriter, step: int
) -> dict:
    """Greedy and sampled accuracy by difficulty on the held-out split (`config.eval`); prints the table,
    a few thinking traces and one streamed completion; returns `{mode: accuracies}`."""
    e = config.eval
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(e.num_examples, len(records)))]
    task = get_task(config.task.name)
    mesh = mesh_lib.make_mesh(config.num_devices or None)
    mesh_lib.check_divisible(e.batch_size, mesh)
    results = {}
    for mode, temperature in (("greedy", 0.0), ("sampled", e.temperature)):
        texts, thinking = sample_completions(
            model,
            params,
            tokenizer,
            records,
            settings.from_block(e, tokenizer, temperature),
            jax.random.key(config.seed + 1),
            e.batch_size,
            batch_sharding=mesh_lib.batch_sharded(mesh),
        )
        results[mode] = accuracy_by_difficulty(task, records, texts)
        results[mode]["mean_thinking_tokens"] = float(np.mean(thinking))
        writer.write(step, results[mode], prefix=f"eval/{mode}/")
        if mode == "greedy":
            traces = [f"Q: {r['question']}\nA: {text}" for r, text in zip(records[: e.num_traces], texts)]
            for trace in traces:
                writer.write_text(step, "eval/trace", trace)
    if jax.process_index() == 0:
        print(f"\nHeld-out accuracy on {len(records)} {config.task.name} problems (step {step}):")
        print(format_table(results))
        print("\nThinking traces (greedy):")
        print("\n\n".join(traces))
    stream_trace(config, tokenizer, model, params, records[min(e.num_traces, len(records) - 1)])
    return results


def stream_trace(config, tokenizer, model, params, record: dict) -> None:
    """Prints one held-out problem and the model's completion token by token as it is sampled.

    Every process samples (the params span all of them); only process 0 prints.
    """
    out = sys.stdout if jax.process_index() == 0 else io.StringIO()
    printer = StreamPrinter(tokenizer.decode, out=out)
    out.write(
        f"\nStreaming (sampled, temperature {config.eval.temperature}): {record['question']}\nthinking... "
    )
    cfg = settings.from_block(config.eval, tokenizer, config.eval.temperature)
    generate(
        model,
        params,
        [prompt_tokens(tokenizer, record)],
        jax.random.key(config.seed + 2),
        cfg,
        stream=printer,
    )
    jax.effects_barrier()
    out.write("\n")


def evaluate_run(config, workdir: epath.PathLike, tokenizer, model, params, step: int) -> dict:
    """`evaluate` with a metric writer of its own (no progress bar)."""
    with MetricWriter(workdir, progress=False) as writer:
        return evaluate(config, workdir, tokenizer, model, params, writer, step)
