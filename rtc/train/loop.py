"""The one training loop every trainer shares (SFT, reward models, GRPO and PPO).

A plain function in the spirit of big_vision's `train.py`: the trainer hands over its jitted step and a
freshly initialised train state; the loop owns everything around them:
- exact resume: the checkpoint holds the train state (params, optimizer state, step, rng) and the data
  position, and batches are a pure function of the position, so a resumed run ends with the same
  parameters as one left alone;
- the metric writer (metrics.jsonl, TensorBoard, progress bar) and the reduction of a log window to
  its means, with every step checked for a non-finite loss or gradient before anything is saved;
- the log and checkpoint cadence, and `resume_step` to continue from an earlier checkpoint when the
  latest one is damaged.

A step is `step(state, position) -> (state, device_metrics, host_metrics)`: device metrics stay on the
device until the window is logged (no host sync per step), host metrics are plain floats.
"""

import dataclasses
import logging
import time
from typing import Callable

import jax
import numpy as np
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.metrics import MetricWriter, check_finite

StepFn = Callable[[dict, int], tuple[dict, dict, dict]]


@dataclasses.dataclass(frozen=True)
class Cadence:
    """How long a run is and how often it logs and saves (a training block of the config)."""

    num_steps: int
    log_every: int = 50
    checkpoint_every: int = 200
    max_to_keep: int = 2
    resume_step: int | None = None  # continue from this checkpoint instead of the latest

    @classmethod
    def of(cls, block) -> "Cadence":
        """The cadence fields of a config block (other fields, such as the learning rate, are ignored)."""
        return cls(**{f.name: block[f.name] for f in dataclasses.fields(cls) if f.name in block})


@dataclasses.dataclass
class Window:
    """The steps since the last log: `(step, device metrics, host metrics)` and when timing started."""

    steps: list = dataclasses.field(default_factory=list)
    timed_from: tuple[int, float] | None = None  # (step, time): the first, compiling step is not timed

    def reduce(self, rates: tuple[str, ...]) -> dict:
        """The mean of every metric over the window, once each step is checked finite.

        Raises `NonFiniteError` naming the first step whose loss or grad norm is nan or inf. The learning
        rate is the last step's. For each name in `rates`, `{name}_per_second` sums it over the timed steps.
        """
        numbers = jax.device_get([device for _, device, _ in self.steps])  # waits for the last step
        elapsed = time.time() - self.timed_from[1]
        values = []
        for (step, _, host), device in zip(self.steps, numbers):
            check_finite(step, device, keys=("loss", "grad_norm"))
            values.append({**{k: float(v) for k, v in device.items()}, **host})
        logged = {name: float(np.mean([v[name] for v in values])) for name in values[0]}
        if "learning_rate" in logged:
            logged["learning_rate"] = values[-1]["learning_rate"]
        timed = [v for (step, _, _), v in zip(self.steps, values) if step > self.timed_from[0]]
        if timed:
            for name in rates:
                logged[f"{name}_per_second"] = sum(v[name] for v in timed) / elapsed
        return logged


def restore_or_keep(checkpointer: Checkpointer, state: dict, resume_step: int | None) -> tuple[dict, int]:
    """`(state, data position)`: the checkpoint's (the latest, or `resume_step`'s), or `state` at 0.

    Resuming from an earlier step sets the later ones aside (renamed, not deleted), so the run can save
    again without overwriting anything.
    """
    if resume_step is not None:
        state, meta = checkpointer.restore(state, step=resume_step)
        checkpointer.set_aside_after(resume_step)
    elif checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
    else:
        return state, 0
    logging.info("resumed from step %d (data position %d)", int(state["step"]), meta["data_position"])
    return state, meta["data_position"]


def run(
    workdir: epath.PathLike,
    state: dict,
    step_fn: StepFn,
    cadence: Cadence,
    *,
    rows_per_step: int,
    describe: Callable[[int, dict], str],
    meta: dict | None = None,
    rates: tuple[str, ...] = (),
    halt_after: int | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> dict:
    """Runs (or resumes) the steps up to `cadence.num_steps`; returns the final train state.

    `rows_per_step`: how far the data position moves per step; `describe(step, logged)`: the line printed at
    each log; `meta`: JSON saved beside each checkpoint; `halt_after`: stop after that step, as a preempted
    job would (tests of resume); `on_resume(start_step)`: called once before the first step. `workdir`
    may be a URL (`gs://bucket/run`).
    """
    c = cadence
    workdir = epath.Path(workdir)
    with Checkpointer(workdir / "checkpoints", max_to_keep=c.max_to_keep) as checkpointer:
        state, position = restore_or_keep(checkpointer, state, c.resume_step)
        start = int(state["step"])
        if on_resume is not None:
            on_resume(start)
        window = Window()
        with MetricWriter(workdir, total_steps=c.num_steps, initial_step=start) as writer:
            for step in range(start + 1, c.num_steps + 1):
                state, device, host = step_fn(state, position)
                position += rows_per_step
                window.steps.append((step, device, host))
                writer.advance()
                if window.timed_from is None:  # the first step compiles: time only the steps after it
                    jax.block_until_ready(device)
                    window.timed_from = (step, time.time())
                is_checkpoint = step % c.checkpoint_every == 0 or step == c.num_steps
                if step % c.log_every == 0 or is_checkpoint:
                    # The loss is taken before this step's update; a non-finite gradient has already
                    # poisoned the params that are about to be checkpointed: check before saving.
                    logged = window.reduce(rates)
                    writer.write(step, logged, prefix="train/")
                    writer.log(describe(step, logged))
                    if is_checkpoint:
                        checkpointer.save(step, state, {"data_position": position, **(meta or {})})
                        writer.flush()  # a remote workdir's metrics reach it with every checkpoint
                    window = Window(timed_from=(step, time.time()))  # logging and saving are not timed
                if step == halt_after:
                    logging.warning("halting after step %d as asked", step)
                    break
    return state


def finished(state: dict, cadence: Cadence) -> bool:
    """Whether a run's state has reached its last step (a halted run has not)."""
    return int(state["step"]) >= cadence.num_steps


def latest_step(workdir: epath.PathLike) -> int | None:
    """The newest checkpoint step of the run in `workdir`, or None (a run that has not saved yet)."""
    with Checkpointer(epath.Path(workdir) / "checkpoints") as checkpointer:
        return checkpointer.latest_step()
