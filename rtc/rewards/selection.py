"""Early stopping of a reward model on held-out within-problem AUROC, not on its training loss.

Search uses a verifier to rank one problem's candidates, so the step kept is the one whose scores rank
the solutions of held-out problems best: every `rm.select_every` steps (and at the last step) the reward
model scores the solutions of `rm_data.validation_problems` training problems it never trains on, a PRM's
solution score being `rm_data.aggregation` of its step scores (as `rm_evaluate` scores solutions), and
their within-problem AUROC against the task verifier's verdict (`verifier_metrics.within_problem_auroc`)
is logged as `rm/validation_auroc`. The earliest step with the highest AUROC is chosen.

Files in the workdir:
- `best/STEP`: the chosen params (an orbax checkpoint of `{"params": ...}`, `rtc.checkpoint`), beside the
  run's own `checkpoints/`, which keep only their last few steps;
- `selection.json`: every evaluated step's AUROC and the chosen step (`chosen_step`; null while no
  evaluation is finite, e.g. when no held-out problem has both right and wrong solutions).
`training.load_reward_model` loads the chosen params by default. `rm/validation_auroc` goes to the run's
metrics (`metrics.jsonl` and TensorBoard); a URL workdir's `metrics.jsonl` is copied whole by the training
loop's writer, so there only TensorBoard and `selection.json` keep it.

Resume stays exact: the evaluation reads the params and changes nothing, and both files are written only
at the training loop's checkpoint steps, just before it saves the same step. A run resumed from step S
drops the evaluations after S and sets aside the kept params of steps after S (`Checkpointer.set_aside_after`);
the steps it replays score the same params again.
"""

import dataclasses
import json
import logging
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.metrics import MetricWriter
from rtc.parallel import distributed
from rtc.rewards import reward_model as rm
from rtc.rewards import rm_evaluate
from rtc.rewards import verifier_metrics as metrics

SELECTION_FILE = "selection.json"
BEST_DIR = "best"
METRIC = "within_problem_auroc"


@dataclasses.dataclass(frozen=True, eq=False)
class Validation:
    """Held-out solutions that choose a reward model's step.

    tokens: i32[M, T] and completion_mask: bool[M, T] laid out as in training; correct: bool[M], the task
    verifier's verdict; M = P x N solutions, problem-major, `shape = (P, N)`. `kind` (orm / prm), and for a
    PRM the `aggregation` of its step scores at `delimiter_id`; scored in batches of `batch_size`.
    """

    tokens: np.ndarray
    completion_mask: np.ndarray
    correct: np.ndarray
    shape: tuple[int, int]
    kind: str
    aggregation: str
    delimiter_id: int
    batch_size: int

    def summary(self) -> dict:
        """Problems, solutions, the fraction correct and the problems with both right and wrong solutions
        (only those count towards the AUROC)."""
        correct = self.correct.reshape(self.shape)
        mixed = correct.any(axis=1) & ~correct.all(axis=1)
        return {
            "problems": self.shape[0],
            "solutions": int(correct.size),
            "solution_accuracy": float(correct.mean()),
            "problems_with_pairs": int(mixed.sum()),
        }


def solution_scores(model, params, validation: Validation) -> np.ndarray:
    """f32[M]: the reward model's probability that each held-out solution is right (an ORM's head at the
    last completion token, a PRM's `aggregation` of its step scores)."""
    v = validation
    logits = rm_evaluate.score_logits(model, params, v.tokens, v.batch_size)  # f32[M, T]
    if v.kind == "orm":
        return rm_evaluate.solution_scores("orm", logits, v.completion_mask, None)["orm"]
    step_end = rm.step_end_mask(v.tokens, v.completion_mask, v.delimiter_id)
    return np.asarray(rm.aggregate(v.aggregation, jax.nn.sigmoid(logits), step_end))


def validation_auroc(model, params, validation: Validation) -> float:
    """The within-problem AUROC of `params` on the held-out solutions; nan when a score is not finite (the
    training loop stops such a run at its next log) or no problem has both right and wrong solutions."""
    scores = solution_scores(model, params, validation)
    if not np.all(np.isfinite(scores)):
        return float("nan")
    shape = validation.shape
    return metrics.within_problem_auroc(scores.reshape(shape), validation.correct.reshape(shape))


def chosen_step(evaluations: dict[int, float]) -> int | None:
    """The earliest step with the highest finite AUROC of `evaluations` ({step: AUROC}); None if none."""
    finite = [(step, value) for step, value in sorted(evaluations.items()) if np.isfinite(value)]
    if not finite:
        return None
    best = max(value for _, value in finite)
    return next(step for step, value in finite if value == best)


def read_selection(workdir: epath.PathLike) -> dict | None:
    """The `selection.json` of a reward-model run, or None (a run without early stopping)."""
    path = epath.Path(workdir) / SELECTION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def restore_best(workdir: epath.PathLike, step: int):
    """The params kept in `best/` at `step`."""
    with Checkpointer(epath.Path(workdir) / BEST_DIR) as checkpointer:
        return checkpointer.restore_params(step)


def best_steps(workdir: epath.PathLike) -> list[int]:
    """The steps whose params `best/` holds (none without early stopping)."""
    directory = epath.Path(workdir) / BEST_DIR
    if not directory.is_dir():
        return []
    with Checkpointer(directory) as checkpointer:
        return checkpointer.all_steps()


class Selector:
    """Scores the reward model inside the training loop's step and keeps the params of the best step.

    `wrap(step_fn)` is the loop's step; `resume` its `on_resume`. `score(params) -> AUROC`. Use as a
    context manager around `loop.run`: it holds the `best/` checkpointer and a metric writer.
    """

    def __init__(
        self, workdir: epath.PathLike, cadence, every: int, score: Callable[[dict], float], summary: dict
    ):
        self.workdir = epath.Path(workdir)
        self.cadence, self.every, self.score, self.summary = cadence, every, score, summary
        self.evaluations: dict[int, float] = {}
        self.step = 0
        self.pending = None  # (step, params copy): a new best not yet written to best/

    def __enter__(self):
        # A resume may start up to `max_to_keep` checkpoints back, each of which may have written one best
        # after it: one more than that keeps the best as of any step a run can resume from.
        keep = self.cadence.max_to_keep
        self._best = Checkpointer(self.workdir / BEST_DIR, max_to_keep=None if keep is None else keep + 1)
        return self

    def __exit__(self, *exc):
        self._best.close()

    def resume(self, start: int) -> None:
        """Continues from step `start`: the evaluations and kept params of later steps are dropped."""
        record = read_selection(self.workdir) or {"evaluations": []}
        self.evaluations = {e["step"]: e[METRIC] for e in record["evaluations"] if e["step"] <= start}
        if (self._best.latest_step() or 0) > start:
            self._best.set_aside_after(start)
        self.step, self.pending = start, None

    def wrap(self, step_fn):
        """The loop's step `step_fn`, then the evaluation on its cadence and, at a checkpoint step, the
        selection written."""
        c = self.cadence

        def step(state, position):
            state, device, host = step_fn(state, position)
            self.step += 1
            if self.step % self.every == 0 or self.step == c.num_steps:
                self.evaluate(state["params"])
            if self.step % c.checkpoint_every == 0 or self.step == c.num_steps:
                self.commit()
            return state, device, host

        return step

    def evaluate(self, params) -> None:
        """Scores `params` (this step's) and holds a copy when they beat every earlier step."""
        value = self.score(params)
        self.evaluations[self.step] = value
        best = chosen_step(self.evaluations)
        if best == self.step:
            self.pending = (self.step, jax.tree.map(jnp.copy, params))  # the next update donates these
        shown = "none yet" if best is None else f"{self.evaluations[best]:.3f} at step {best}"
        # a writer of its own, open only while it writes: it appends to the loop's metrics.jsonl
        with MetricWriter(self.workdir, progress=False) as writer:
            writer.write(self.step, {"validation_auroc": value}, prefix="rm/")
            writer.log(f"step {self.step}  validation within-problem AUROC {value:.3f}  (best {shown})")

    def commit(self) -> None:
        """Writes a pending best to `best/`, then `selection.json`."""
        if self.pending is not None:
            step, params = self.pending
            self._best.save(step, {"params": params}, {METRIC: self.evaluations[step]}, force=True)
            self.pending = None
        record = {
            "metric": METRIC,
            "select_every": self.every,
            "validation": self.summary,
            "evaluations": [{"step": s, METRIC: v} for s, v in sorted(self.evaluations.items())],
            "chosen_step": chosen_step(self.evaluations),
            "step": self.step,
        }
        if distributed.is_primary():
            (self.workdir / SELECTION_FILE).write_text(json.dumps(record, indent=1))
        logging.info("selection at step %d: chosen step %s", self.step, record["chosen_step"])
