"""The SFT cold-start run: data, jitted update, metrics, checkpoints, then held-out evaluation.

A plain function (big_vision style), not a trainer class. Resume is exact: the checkpoint holds
params, optimizer state, step, rng and the data position, and batches are a pure function of the
position, so a run killed and restarted ends with the same parameters as one left alone.
"""

import io
import logging
import sys
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from rtc.checkpoint import Checkpointer
from rtc.data import tfds_builders
from rtc.data.tasks import get_task
from rtc.eval.accuracy import accuracy_by_difficulty, format_table, prompt_tokens, sample_completions
from rtc.metrics import MetricWriter, check_finite
from rtc.model import Model, model_config
from rtc.parallel import config_mesh, placement
from rtc.parallel import mesh as mesh_lib
from rtc.pretrained import from_config as pretrained_from_config
from rtc.sampling.budget import ThinkingBudget, thinking_limit
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, generate
from rtc.sampling.stream import StreamPrinter
from rtc.tokenizer.build import ensure_model
from rtc.tokenizer.tokenizer import Tokenizer
from rtc.train import optimizer as optimizer_lib
from rtc.train.sft import sft_loss
from rtc.train.sft_data import RowStream, assemble, encode_dataset, process_rows
from rtc.train.state import init_train_state, make_update
from rtc.errors import ConfigError


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> Model:
    """The model named by `config.model.preset`, with any non-None field of `config.model` overriding it."""
    overrides = {k: v for k, v in config.model.items() if k != "preset" and v is not None}
    return Model(model_config(config.model.preset, vocab_size=vocab_size, **overrides))


def task_records(config: ml_collections.ConfigDict, split: str, workdir: Path):
    """The split of `config.task` as random-access records (prepared as TFDS array_record on first use)."""
    kwargs = {k: v for k, v in config.task.items() if k != "name"}
    if "levels" in kwargs:
        kwargs["levels"] = tuple(kwargs["levels"])
    data_dir = Path(config.data_dir) if config.data_dir else workdir / "data"
    return tfds_builders.load(config.task.name, split, data_dir, **kwargs)


def sampler_config(
    config: ml_collections.ConfigDict, tokenizer: Tokenizer, temperature: float
) -> SamplerConfig:
    """Evaluation decoding: stop at `</answer>` or eos, with the configured reasoning budget."""
    e = config.eval
    limit = thinking_limit(
        e.max_new_tokens,
        reasoning_effort=e.reasoning_effort or None,
        budget_tokens=None if e.budget_tokens < 0 else e.budget_tokens,
    )
    budget = ThinkingBudget(
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        max_thinking_tokens=limit,
        min_thinking_tokens=e.min_thinking_tokens,
        cue_ids=tuple(tokenizer.encode(e.cue)) if e.min_thinking_tokens else (),
    )
    return SamplerConfig(
        max_new_tokens=e.max_new_tokens,
        stop_ids=(tokenizer.answer_end_id, tokenizer.eos_id),
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=temperature, top_p=e.top_p if temperature else 1.0),
        budget=budget,
        cache_phases=e.cache_phases,
    )


def _window_metrics(window: list[tuple[int, dict]], timed_from: tuple[int, float], row_tokens: int) -> dict:
    """The mean metrics of a log window plus its throughput, once every step is checked finite.

    `window` holds `(step, metrics on device)` for each step since the last log. Raises `NonFiniteError`
    naming the first step whose loss or grad norm is nan or inf. Throughput counts the steps after
    `timed_from = (step, time)` (none when the window is only a run's first, compiling step), each
    of `row_tokens` tokens. The learning rate is the last step's, not a mean over the schedule.
    """
    steps = [step for step, _ in window]
    values = jax.device_get([metrics for _, metrics in window])  # waits for the window's last step
    elapsed = time.time() - timed_from[1]
    for step, metrics in zip(steps, values):
        check_finite(step, metrics, keys=("loss", "grad_norm"))
    logged = {name: float(np.mean([v[name] for v in values])) for name in values[0]}
    if "learning_rate" in logged:
        logged["learning_rate"] = float(values[-1]["learning_rate"])
    timed = [v for step, v in zip(steps, values) if step > timed_from[0]]
    if timed:
        logged["row_tokens_per_second"] = len(timed) * row_tokens / elapsed
        logged["target_tokens_per_second"] = sum(float(v["target_tokens"]) for v in timed) / elapsed
    return logged


def make_optimizer(config: ml_collections.ConfigDict):
    """`(schedule, optimizer)` from `config.train`: AdamW with warmup and cosine decay."""
    t = config.train
    schedule = optimizer_lib.learning_rate_schedule(t.learning_rate, t.warmup_steps, t.num_steps)
    return schedule, optimizer_lib.adamw(schedule, t.weight_decay, t.grad_clip)


def restore_params(
    config: ml_collections.ConfigDict, workdir: str | Path, model: Model, step: int | None = None
):
    """The params of a run's checkpoint (default: the latest), e.g. to sample from a trained model."""
    _, optimizer = make_optimizer(config)
    template = placement.replicated_template(
        jax.eval_shape(
            lambda: init_train_state(model.init_params(jax.random.key(0)), optimizer, jax.random.key(0))
        )
    )
    with Checkpointer(Path(workdir) / "checkpoints") as checkpointer:
        state, _ = checkpointer.restore(template, step=step)
    return state["params"]


def train(
    config: ml_collections.ConfigDict, workdir: Path, tokenizer: Tokenizer, model: Model, params=None
) -> dict:
    """Runs (or resumes) SFT to `config.train.num_steps`; returns the final train state.

    `params`: the initial parameters (a pretrained checkpoint's, `rtc.pretrained.from_config`);
    None: a random init. A resumed run restores its own checkpoint either way.

    Every `log_every` steps, at every checkpoint and at the end it logs the mean metrics of the steps
    since the last log and their throughput, or stops with `NonFiniteError` at the first of those
    steps whose loss or grad norm is not finite, before anything is saved.
    """
    t = config.train
    if t.seq_len > model.max_seq_len:
        raise ConfigError(
            f"train.seq_len={t.seq_len} exceeds the model's context of {model.max_seq_len} tokens"
        )
    records = task_records(config, "train", workdir)
    started = time.time()
    data = encode_dataset(tokenizer, records, t.seq_len)
    logging.info("encoded %d training examples in %.1fs", len(records), time.time() - started)
    stream = RowStream(data["lengths"], t.seq_len + 1, t.pack, config.seed)
    mesh = placement.mesh_from_config(config)
    config_mesh.batch_size_per_chip(t.batch_size, mesh)  # the batch must split evenly

    schedule, optimizer = make_optimizer(config)
    rng = jax.random.key(config.seed)
    if params is None:
        init = lambda rng: init_train_state(  # noqa: E731
            model.init_params(jax.random.fold_in(rng, 0)), optimizer, jax.random.fold_in(rng, 1)
        )
        args = (rng,)
    else:
        init = lambda params, rng: init_train_state(params, optimizer, jax.random.fold_in(rng, 1))  # noqa: E731
        args = (params, rng)
    state, shardings = placement.init_sharded(init, args, mesh, placement.rules_from_config(config, mesh))
    loss_fn = lambda params, batch, rng: sft_loss(params, batch, model)
    update = placement.jit_update(make_update(loss_fn, optimizer, schedule), shardings, mesh)

    with Checkpointer(workdir / "checkpoints", max_to_keep=t.max_to_keep) as checkpointer:
        position = 0
        if checkpointer.latest_step() is not None:
            state, meta = checkpointer.restore(state)
            position = meta["data_position"]
            logging.info("resumed from step %d (data position %d)", int(state["step"]), position)
        start = int(state["step"])
        local_rows = process_rows(t.batch_size, jax.process_index(), jax.process_count())
        window = []  # (step, metrics on device) since the last log: no host sync per step
        timed_from = None  # (step, time) the throughput is measured from
        with MetricWriter(workdir, total_steps=t.num_steps, initial_step=start) as writer:
            for step in range(start + 1, t.num_steps + 1):
                batch = config_mesh.shard_batch(
                    assemble(data, stream.rows(position, t.batch_size)[local_rows], tokenizer.pad_id), mesh
                )
                state, metrics = update(state, batch)
                position += t.batch_size
                window.append((step, metrics))
                writer.advance()
                if timed_from is None:  # the first step compiles: time only the steps after it
                    jax.block_until_ready(metrics)
                    timed_from = (step, time.time())
                is_last = step == t.num_steps
                is_checkpoint = step % t.checkpoint_every == 0 or is_last
                if step % t.log_every == 0 or is_checkpoint:
                    # The loss is taken before this step's update; a non-finite gradient has already
                    # poisoned the params that are about to be checkpointed.
                    logged = _window_metrics(window, timed_from, t.batch_size * t.seq_len)
                    writer.write(step, logged, prefix="train/")
                    speed = logged.get("row_tokens_per_second")
                    writer.log(
                        f"step {step}/{t.num_steps}  loss {logged['loss']:.4f}  "
                        f"token acc {logged['token_accuracy']:.3f}"
                        + (f"  {speed:,.0f} tok/s" if speed is not None else "")
                    )
                    window = []
                    if is_checkpoint:
                        checkpointer.save(step, state, {"data_position": position, "task": config.task.name})
                    timed_from = (step, time.time())  # the next window excludes logging and saving
                if step == t.halt_after:
                    logging.warning("halting after step %d as configured (train.halt_after)", step)
                    break
    return state


def evaluate(
    config: ml_collections.ConfigDict,
    workdir: Path,
    tokenizer: Tokenizer,
    model: Model,
    params,
    writer: MetricWriter,
    step: int,
) -> dict:
    """Greedy and sampled accuracy by difficulty on the held-out split; prints a few thinking traces."""
    e = config.eval
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(e.num_examples, len(records)))]
    task = get_task(config.task.name)
    mesh = mesh_lib.make_mesh(config.num_devices or None)
    mesh_lib.check_divisible(e.batch_size, mesh)
    results = {}
    for mode, temperature in (("greedy", 0.0), ("sampled", e.temperature)):
        cfg = sampler_config(config, tokenizer, temperature)
        texts, thinking = sample_completions(
            model,
            params,
            tokenizer,
            records,
            cfg,
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


def stream_trace(config, tokenizer: Tokenizer, model: Model, params, record: dict) -> None:
    """Prints one held-out problem and the model's completion token by token as it is sampled.

    Every process samples (the params span all of them); only process 0 prints.
    """
    out = sys.stdout if jax.process_index() == 0 else io.StringIO()
    printer = StreamPrinter(tokenizer.decode, out=out)
    out.write(
        f"\nStreaming (sampled, temperature {config.eval.temperature}): {record['question']}\nthinking... "
    )
    cfg = sampler_config(config, tokenizer, config.eval.temperature)
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


def load_model(config: ml_collections.ConfigDict) -> tuple:
    """`(tokenizer, model, params | None)`: a pretrained checkpoint's (`config.pretrained`), else rtc's
    tokenizer and the preset's model with no params yet (a random init is the caller's)."""
    loaded = pretrained_from_config(config)
    if loaded is None:
        tokenizer = Tokenizer.load(ensure_model(config.tokenizer_path or None))
        loaded = tokenizer, build_model(config, tokenizer.vocab_size), None
    name = config.get("pretrained") or config.model.preset
    logging.info("model %s: %.2fM parameters", name, loaded[1].config.num_params / 1e6)
    return loaded


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """SFT then evaluation; returns the evaluation results."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer, model, params = load_model(config)
    state = train(config, workdir, tokenizer, model, params)
    if int(state["step"]) < config.train.num_steps:
        return {}
    with MetricWriter(workdir, progress=False) as writer:
        return evaluate(config, workdir, tokenizer, model, state["params"], writer, int(state["step"]))
