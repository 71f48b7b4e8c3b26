"""The reward models' training data: the policy's sampled solutions labelled by outcome (ORM) or step by
step (PRM: exact, Monte-Carlo or human labels), sampled once and cached in `WORKDIR/rm_data/`; and the
held-out solutions that choose the reward model's step (`validation_data`, `rtc.rewards.selection`)."""

import json
import logging
import tempfile
from pathlib import Path

import jax
import numpy as np
from etils import epath

from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.errors import ConfigError
from rtc.rewards import hard_negatives, prm800k, rm_data
from rtc.rewards.step_labels import ExactLabeler, HumanLabeler, MonteCarloLabeler
from rtc.sampling import settings

STEP_LABELS = ("exact", "mc_hard", "mc_soft", "human")


def make_labeler(config, tokenizer, policy, policy_params, rng: jax.Array):
    """The step labeler named by `config.rm_data.labels` (exact / mc_hard / mc_soft / human)."""
    r = config.rm_data
    ignore = (tokenizer.think_start_id,)
    if r.labels == "human":
        return HumanLabeler(tokenizer.step_id, ignore)
    if r.labels == "exact":
        if not get_task(config.task.name).synthetic:
            raise ConfigError(f"exact step labels need a synthetic task, not {config.task.name!r}")
        return ExactLabeler(tokenizer, tokenizer.step_id, ignore)
    if r.labels in ("mc_hard", "mc_soft"):
        return MonteCarloLabeler(
            policy,
            policy_params,
            tokenizer,
            get_task(config.task.name),
            settings.from_block(config.eval, tokenizer, r.mc_temperature),
            r.mc_rollouts,
            r.mc_prefix_batch,
            rng,
            tokenizer.step_id,
            soft=r.labels == "mc_soft",
            ignore_ids=ignore,
        )
    raise ConfigError(f"unknown rm_data.labels {r.labels!r} for a PRM; known: {list(STEP_LABELS)}")


def label_solutions(config, tokenizer, policy, policy_params, solutions, rng) -> tuple[dict, dict]:
    """Training arrays for `solutions` and the label counts (skips by reason, positive rate)."""
    seq_len = config.rm.seq_len
    if config.mode == "orm":
        arrays = rm_data.encode_solutions(solutions, seq_len, tokenizer.pad_id)
        arrays["label"] = rm_data.outcome_labels(get_task(config.task.name), tokenizer, solutions)
        return arrays, {"solutions": len(solutions), "positive_rate": float(arrays["label"].mean())}
    labelled = make_labeler(config, tokenizer, policy, policy_params, rng)(solutions)
    kept = [i for i, labels in enumerate(labelled.labels) if labels is not None]
    if not kept:
        raise ConfigError(
            f"none of the {len(solutions)} sampled solutions can be labelled step by step "
            f"(skipped: {labelled.skipped}); train the policy longer"
        )
    solutions = [solutions[i] for i in kept]
    labels = [labelled.labels[i] for i in kept]
    arrays = rm_data.encode_solutions(solutions, seq_len, tokenizer.pad_id)
    arrays.update(rm_data.step_label_arrays(solutions, labels, tokenizer.step_id, seq_len))
    steps = np.concatenate(labels)
    counts = {"solutions": len(solutions), "steps": int(steps.size), "positive_rate": float(steps.mean())}
    return arrays, {**counts, **{f"skipped_{k}": v for k, v in labelled.skipped.items()}}


def save_training_data(directory: epath.Path, arrays: dict, description: dict, name: str = "train") -> None:
    """`{name}.npz` (the arrays), then `{name}.json` (signature and counts): the cache is complete once the
    JSON exists. The npz is written locally and copied whole, so `directory` may be a URL."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        rm_data.save_arrays(Path(staging) / f"{name}.npz", arrays)
        (directory / f"{name}.npz").write_bytes((Path(staging) / f"{name}.npz").read_bytes())
    (directory / f"{name}.json").write_text(json.dumps(description, indent=1))


def load_cached(directory: epath.Path, signature: dict, name: str = "train") -> dict | None:
    """The arrays `save_training_data` cached as `name` in `directory` for `signature`; None when there
    are none. Arrays cached for another signature are a ConfigError."""
    if not (directory / f"{name}.json").is_file():
        return None
    saved = json.loads((directory / f"{name}.json").read_text())
    if saved["signature"] != json.loads(json.dumps(signature)):
        raise ConfigError(f"{directory} holds data of another config; use a new workdir")
    logging.info("%s data from %s: %s", name, directory, saved["counts"])
    with (directory / f"{name}.npz").open("rb") as f:
        return rm_data.load_arrays(f)


def validation_range(config) -> range:
    """The training problems held out to choose the reward model's step (`rm_data.validation_problems`):
    the ones right after the first `rm_data.num_problems`, so the training data stay as they were."""
    r = config.rm_data
    count = r.get("validation_problems") or 0
    if count < 0:
        raise ConfigError(f"rm_data.validation_problems must be >= 0, got {count}")
    start = r.num_problems if count else 0
    return range(start, start + count)


def slipped_chains(config, tokenizer, records) -> list:
    """`rm_data.hard_negatives` slipped copies and the gold chain of each of the first
    `rm_data.hard_negative_problems` training problems (`rtc.rewards.hard_negatives`), the held-out
    validation problems left out; none when 0."""
    r = config.rm_data
    if not r.hard_negatives:
        return []
    held_out = validation_range(config)
    count = min(r.hard_negative_problems or r.num_problems, len(records))
    chosen = [records[i] for i in range(count) if i not in held_out]
    rng = np.random.default_rng(config.seed + 11)
    solutions = hard_negatives.hard_negative_solutions(tokenizer, chosen, r.hard_negatives, rng)
    logging.info("%d gold chains and %d slipped copies", len(chosen), len(chosen) * r.hard_negatives)
    return solutions


def training_signature(config) -> dict:
    """What the training data depend on; the cache is reused only for the same signature."""
    rm_fields = config.rm_data.to_dict()
    rm_fields.pop("validation_problems", None)  # the training data do not depend on it, unless:
    signature = {
        "mode": config.mode,
        "rm_data": rm_fields,
        "task": config.task.to_dict(),
        "seq_len": config.rm.seq_len,
        "seed": config.seed,
        "policy": config.policy_workdir,
    }
    held_out = validation_range(config)
    r = config.rm_data
    if held_out and r.get("hard_negatives") and (r.hard_negative_problems or r.num_problems) > held_out.start:
        signature["held_out"] = [held_out.start, held_out.stop]  # the hard negatives skip these problems
    return signature


def training_data(config, workdir: epath.PathLike, tokenizer, policy, policy_params) -> dict:
    """The labelled training arrays, sampled once and cached in `workdir/rm_data/`."""
    directory = epath.Path(workdir) / "rm_data"
    signature = training_signature(config)
    cached = load_cached(directory, signature)
    if cached is not None:
        return cached
    r = config.rm_data
    rng = jax.random.key(config.seed + 10)
    if r.labels == "human":  # PRM800K-format solutions with their labels, instead of the policy's
        solutions, file_counts = prm800k.load(r.human_path, tokenizer, r.neutral)
        logging.info("read %s: %s", r.human_path, file_counts)
    else:
        records = task_records(config, "train", workdir)
        solutions = rm_data.sample_solutions(
            policy,
            policy_params,
            tokenizer,
            [records[i] for i in range(min(r.num_problems, len(records)))],
            settings.from_block(config.eval, tokenizer, r.temperature),
            r.group_size,
            r.sample_batch_size,
            jax.random.fold_in(rng, 0),
        )
        solutions += slipped_chains(config, tokenizer, records)
    arrays, counts = label_solutions(
        config, tokenizer, policy, policy_params, solutions, jax.random.fold_in(rng, 1)
    )
    logging.info("labelled training data: %s", counts)
    save_training_data(directory, arrays, {"signature": signature, "counts": counts})
    return arrays


def validation_data(config, workdir: epath.PathLike, tokenizer, policy, policy_params) -> tuple[dict, tuple]:
    """`(arrays, (P, N))`: `rm_data.group_size` (N) sampled solutions of each of the P held-out problems
    (`validation_range`), problem-major, as `tokens: i32[M, T]`, `completion_mask: bool[M, T]` and
    `correct: bool[M]` (the task's verifier on the final answer); sampled like the training solutions, once,
    and cached in `workdir/rm_data/validation.*`."""
    r = config.rm_data
    held_out = validation_range(config)
    if not held_out:
        raise ConfigError("rm.select_every needs held-out problems: set rm_data.validation_problems")
    shape = (len(held_out), r.group_size)
    directory = epath.Path(workdir) / "rm_data"
    sampling = ("num_problems", "validation_problems", "group_size", "temperature", "sample_batch_size")
    signature = {
        "rm_data": {name: r[name] for name in sampling},
        "task": config.task.to_dict(),
        "seq_len": config.rm.seq_len,
        "seed": config.seed,
        "policy": config.policy_workdir,
        "problems": [held_out.start, held_out.stop],
    }
    cached = load_cached(directory, signature, "validation")
    if cached is not None:
        return cached, shape
    records = task_records(config, "train", workdir)
    if held_out.stop > len(records):
        raise ConfigError(
            f"rm_data.validation_problems={len(held_out)} holds out the training problems after the first "
            f"rm_data.num_problems={r.num_problems}, but the training split has {len(records)}: lower one"
        )
    solutions = rm_data.sample_solutions(
        policy,
        policy_params,
        tokenizer,
        [records[i] for i in held_out],
        settings.from_block(config.eval, tokenizer, r.temperature),
        r.group_size,
        r.sample_batch_size,
        jax.random.fold_in(jax.random.key(config.seed + 10), 2),  # 0, 1: the training data's
    )
    arrays = rm_data.encode_solutions(solutions, config.rm.seq_len, tokenizer.pad_id)
    arrays["correct"] = rm_data.outcome_labels(get_task(config.task.name), tokenizer, solutions) > 0.5
    correct = arrays["correct"].reshape(shape)
    counts = {
        "problems": shape[0],
        "solutions": len(solutions),
        "solution_accuracy": float(correct.mean()),
        "problems_with_pairs": int((correct.any(axis=1) & ~correct.all(axis=1)).sum()),
    }
    logging.info("held-out validation solutions: %s", counts)
    save_training_data(directory, arrays, {"signature": signature, "counts": counts}, "validation")
    return arrays, shape
