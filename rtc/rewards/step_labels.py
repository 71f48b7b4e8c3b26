"""Per-step correctness labels from three sources behind one interface.

A labeler is called on solutions and returns `Labelled`: for each solution an array `f32[S]` (one
label in [0, 1] per step) or None, with the count of skipped solutions by reason.
- `ExactLabeler`: synthetic tasks know each step's gold value; the first wrong step and every step
  after it are bad.
- `MonteCarloLabeler` (Math-Shepherd, Wang et al. 2024): from each step prefix, roll out N
  completions; hard label = any reaches the gold answer, soft label = the fraction that do.
- `HumanLabeler`: labels that came with the solution (PRM800K, `rtc.rewards.prm800k`).

Every labeler skips, and counts, a solution with no step delimiter (`no_delimiter`) or an empty step
(`empty_step`): neither has a step whose content can be judged.
"""

import collections
import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from rtc.data.answers import extract_answer, numbers_equal
from rtc.data.step_values import value_after_last_equals
from rtc.errors import ConfigError
from rtc.rewards.rm_data import Solution, defect, step_ends, step_texts
from rtc.sampling.sampler import SamplerConfig, completions, generate


@dataclasses.dataclass
class Labelled:
    """`labels[i]`: f32[S_i] for solution i, or None when skipped; `skipped`: reason -> count."""

    labels: list[np.ndarray | None]
    skipped: dict[str, int]


def _screen(solutions: Sequence[Solution], delimiter_id: int, ignore_ids: Sequence[int]):
    """(defect reason or None per solution, counts of the reasons)."""
    reasons = [defect(s.completion_ids, delimiter_id, ignore_ids) for s in solutions]
    return reasons, dict(collections.Counter(r for r in reasons if r))


def exact_step_labels(texts: Sequence[str], gold_values: Sequence[str]) -> np.ndarray:
    """f32[S]: 1 for each step up to the first wrong one, 0 from it on.

    Step i is right when the number after its last `=` equals gold step i's value
    (`value_after_last_equals`, `numbers_equal`); a step past the gold chain, or one whose gold value
    is unknown (empty), is wrong. Only values are compared, in order: a step with the right value
    from the wrong operands (`22*0=0` for gold `42*0=0`) counts as right, and a correct chain in
    another order than the gold one (possible in countdown, not in arithmetic) as wrong.
    """
    right = [
        i < len(gold_values)
        and bool(gold_values[i])
        and numbers_equal(value_after_last_equals(text), gold_values[i])
        for i, text in enumerate(texts)
    ]
    return np.cumprod(np.array(right, bool)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ExactLabeler:
    """Exact labels from the records' `step_values` (synthetic tasks)."""

    tokenizer: object
    delimiter_id: int
    ignore_ids: tuple[int, ...] = ()  # e.g. <think>: not step content

    def __call__(self, solutions: Sequence[Solution]) -> Labelled:
        reasons, skipped = _screen(solutions, self.delimiter_id, self.ignore_ids)
        labels = []
        for s, reason in zip(solutions, reasons):
            if reason:
                labels.append(None)
                continue
            if not s.record.get("step_values"):
                raise ConfigError(
                    f"exact step labels need records with step_values; {s.record['question']!r} has none "
                    "(use Monte-Carlo labels for this task)"
                )
            texts = step_texts(self.tokenizer, s.completion_ids, self.delimiter_id)
            labels.append(exact_step_labels(texts, list(s.record["step_values"])))
        return Labelled(labels, skipped)


def step_prefixes(solution: Solution, delimiter_id: int) -> list[tuple[int, ...]]:
    """`[bos] + prompt + completion` up to and including each step's delimiter."""
    return [
        solution.prompt_ids + solution.completion_ids[: e + 1]
        for e in step_ends(solution.completion_ids, delimiter_id)
    ]


def rollout_outcomes(
    model,
    params,
    tokenizer,
    task,
    solutions: Sequence[Solution],
    cfg: SamplerConfig,
    num_rollouts: int,
    prefix_batch: int,
    rng: jax.Array,
    delimiter_id: int,
) -> list[np.ndarray]:
    """bool[S_i, N] per solution: whether rollout n from step prefix s reaches the gold answer.

    All prefixes of all solutions are flattened; each batch of `prefix_batch` prefixes, repeated
    `num_rollouts` times, is one call of the compiled sampler (`prefix_batch * num_rollouts` rows;
    the last batch is padded with copies so every call has one shape). Math-Shepherd's "completer"
    (Wang et al. 2024).
    """
    owners = [
        (i, k) for i, s in enumerate(solutions) for k in range(len(step_ends(s.completion_ids, delimiter_id)))
    ]
    prefixes = [p for s in solutions for p in step_prefixes(s, delimiter_id)]
    correct = np.zeros((len(prefixes), num_rollouts), bool)
    for start in range(0, len(prefixes), prefix_batch):
        chunk = prefixes[start : start + prefix_batch]
        rows = [p for p in chunk for _ in range(num_rollouts)]
        rows += [rows[0]] * (prefix_batch * num_rollouts - len(rows))
        out = generate(model, params, rows, jax.random.fold_in(rng, start), cfg)
        for row, rollout in enumerate(completions(out)[: len(chunk) * num_rollouts]):
            prefix_index = start + row // num_rollouts
            i, _ = owners[prefix_index]
            prefix = prefixes[prefix_index][len(solutions[i].prompt_ids) :]
            text = tokenizer.decode(list(prefix) + rollout)
            correct[prefix_index, row % num_rollouts] = task.is_correct(
                extract_answer(text), solutions[i].record
            )
    per_solution, offset = [], 0
    for s in solutions:
        n = len(step_ends(s.completion_ids, delimiter_id))
        per_solution.append(correct[offset : offset + n])
        offset += n
    return per_solution


def hard_labels(outcomes: np.ndarray, num_rollouts: int | None = None) -> np.ndarray:
    """f32[S]: 1 if any of the first `num_rollouts` rollouts reaches the answer (Math-Shepherd HE)."""
    return outcomes[:, :num_rollouts].any(axis=1).astype(np.float32)


def soft_labels(outcomes: np.ndarray, num_rollouts: int | None = None) -> np.ndarray:
    """f32[S]: the fraction of the first `num_rollouts` rollouts reaching the answer (Math-Shepherd SE)."""
    return outcomes[:, :num_rollouts].mean(axis=1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class MonteCarloLabeler:
    """Math-Shepherd labels (Wang et al. 2024): rollouts of `model`/`params` (the policy) per step."""

    model: object
    params: object
    tokenizer: object
    task: object
    cfg: SamplerConfig
    num_rollouts: int
    prefix_batch: int
    rng: jax.Array
    delimiter_id: int
    soft: bool = False
    ignore_ids: tuple[int, ...] = ()

    def outcomes(self, solutions: Sequence[Solution]) -> list[np.ndarray]:
        return rollout_outcomes(
            self.model,
            self.params,
            self.tokenizer,
            self.task,
            solutions,
            self.cfg,
            self.num_rollouts,
            self.prefix_batch,
            self.rng,
            self.delimiter_id,
        )

    def __call__(self, solutions: Sequence[Solution]) -> Labelled:
        reasons, skipped = _screen(solutions, self.delimiter_id, self.ignore_ids)
        kept = [s for s, r in zip(solutions, reasons) if not r]
        reduce = soft_labels if self.soft else hard_labels
        kept_labels = iter([reduce(o) for o in self.outcomes(kept)]) if kept else iter(())
        return Labelled([None if r else next(kept_labels) for r in reasons], skipped)


@dataclasses.dataclass(frozen=True)
class HumanLabeler:
    """The labels each solution carries (`Solution.human_labels`, e.g. from PRM800K)."""

    delimiter_id: int
    ignore_ids: tuple[int, ...] = ()

    def __call__(self, solutions: Sequence[Solution]) -> Labelled:
        reasons, skipped = _screen(solutions, self.delimiter_id, self.ignore_ids)
        labels = []
        for i, (s, reason) in enumerate(zip(solutions, reasons)):
            if not reason and s.human_labels is None:
                reason = "unlabelled"
                skipped[reason] = skipped.get(reason, 0) + 1
            if reason:
                labels.append(None)
                continue
            steps = len(step_ends(s.completion_ids, self.delimiter_id))
            if steps != len(s.human_labels):
                raise ConfigError(f"solution {i} has {steps} steps but {len(s.human_labels)} human labels")
            labels.append(np.array(s.human_labels, np.float32))
        return Labelled(labels, skipped)
