"""The reward models' training data: the policy's sampled solutions labelled by outcome (ORM) or step by
step (PRM: exact, Monte-Carlo or human labels), sampled once and cached in `WORKDIR/rm_data/`."""

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


def save_training_data(directory: epath.Path, arrays: dict, description: dict) -> None:
    """`train.npz` (the arrays), then `train.json` (signature and counts): the cache is complete once
    `train.json` exists. The npz is written locally and copied whole, so `directory` may be a URL."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        rm_data.save_arrays(Path(staging) / "train.npz", arrays)
        (directory / "train.npz").write_bytes((Path(staging) / "train.npz").read_bytes())
    (directory / "train.json").write_text(json.dumps(description, indent=1))


def slipped_chains(config, tokenizer, records) -> list:
    """`rm_data.hard_negatives` slipped copies and the gold chain of each of the first
    `rm_data.hard_negative_problems` training problems (`rtc.rewards.hard_negatives`); none when 0."""
    r = config.rm_data
    if not r.hard_negatives:
        return []
    count = min(r.hard_negative_problems or r.num_problems, len(records))
    chosen = [records[i] for i in range(count)]
    rng = np.random.default_rng(config.seed + 11)
    solutions = hard_negatives.hard_negative_solutions(tokenizer, chosen, r.hard_negatives, rng)
    logging.info("%d gold chains and %d slipped copies", count, count * r.hard_negatives)
    return solutions


def training_data(config, workdir: epath.PathLike, tokenizer, policy, policy_params) -> dict:
    """The labelled training arrays, sampled once and cached in `workdir/rm_data/`."""
    directory = epath.Path(workdir) / "rm_data"
    signature = {
        "mode": config.mode,
        "rm_data": config.rm_data.to_dict(),
        "task": config.task.to_dict(),
        "seq_len": config.rm.seq_len,
        "seed": config.seed,
        "policy": config.policy_workdir,
    }
    if (directory / "train.json").is_file():
        saved = json.loads((directory / "train.json").read_text())
        if saved["signature"] != json.loads(json.dumps(signature)):
            raise ConfigError(f"{directory} holds data of another config; use a new workdir")
        logging.info("training data from %s: %s", directory, saved["counts"])
        with (directory / "train.npz").open("rb") as f:
            return rm_data.load_arrays(f)
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
