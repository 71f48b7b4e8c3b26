"""Recipes: the stages a run chains, one function per `config.mode`, each `recipe(config, workdir)`.

- `sft`: SFT, then the held-out evaluation;
- `rl` (grpo, ppo): the initial policy (`policy_workdir`, a finished SFT run; else a cold start of
  `sft.num_steps` SFT steps into `WORKDIR/sft`; else a pretrained checkpoint or random weights), RL, then
  the held-out evaluation;
- `reward_model` (orm, prm): the policy (`policy_workdir`, else SFT into `WORKDIR/policy`), labelled
  solutions, reward-model training, then the verifier's evaluation.
Each stage resumes on its own, so rerunning a recipe in the same workdir continues where it stopped.
Every recipe writes the run's resolved config to `WORKDIR/config.json` first. WORKDIR may be a URL
(`gs://bucket/run`, `s3://...`): every file of a run is read and written through `etils.epath`.
`halt_after`: stop the main training stage after that step, as a preempted job would (tests of resume).
"""

import json

import jax
import ml_collections
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.errors import ConfigError
from rtc.eval.policy import evaluate_run
from rtc.model import Model
from rtc.parallel import distributed
from rtc.pretrained.run_model import load_model
from rtc.rewards import labelled_data, rm_evaluate
from rtc.rewards import reward_model as rm
from rtc.rewards import training as rm_training
from rtc.rl import training as rl_training
from rtc.train import loop, sft

CONFIG_FILE = "config.json"


def write_config(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> None:
    """The resolved config as JSON in the workdir (process 0), so a finished run can be read back alone."""
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if distributed.is_primary():
        (workdir / CONFIG_FILE).write_text(config.to_json(indent=1, sort_keys=True) + "\n")


def read_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to its workdir."""
    path = epath.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not an rtc run directory")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def restore_params(workdir: epath.PathLike, step: int | None = None):
    """The trained params of any run in `workdir` (SFT, GRPO, PPO, ORM, PRM): the policy's for RL runs."""
    with Checkpointer(epath.Path(workdir) / "checkpoints") as checkpointer:
        params = checkpointer.restore_params(step)
    return params["policy"] if "policy" in params else params


def load_run(workdir: epath.PathLike, step: int | None = None) -> tuple:
    """`(config, tokenizer, model, params)` of a trained run, from its workdir alone. A reward model's
    `model` has its scalar head; an RL run's params are the policy's."""
    config = read_config(workdir)
    tokenizer, model, _ = load_model(config)
    if config.mode in ("orm", "prm"):
        model = Model(rm.with_head(model.config))
    return config, tokenizer, model, restore_params(workdir, step)


def sft_recipe(config, workdir: epath.PathLike, *, halt_after: int | None = None) -> dict:
    """SFT then evaluation; returns the evaluation results ({} when the run halted early)."""
    workdir = epath.Path(workdir)
    write_config(config, workdir)
    tokenizer, model, params = load_model(config)
    state = sft.train(config, config.sft, workdir, tokenizer, model, params, halt_after=halt_after)
    if not loop.finished(state, loop.Cadence.of(config.sft)):
        return {}
    return evaluate_run(config, workdir, tokenizer, model, state["params"], int(state["step"]))


def cold_start(config, workdir: epath.Path, tokenizer, model, pretrained):
    """`initial_policy()` for RL: `(params, where they came from)`."""

    def initial_policy():
        if config.policy_workdir:
            return restore_params(config.policy_workdir), f"SFT run {config.policy_workdir}"
        if config.sft.num_steps > 0:
            write_config(config, workdir / "sft")
            state = sft.train(config, config.sft, workdir / "sft", tokenizer, model, pretrained)
            return state["params"], f"cold start: {config.sft.num_steps} SFT steps in {workdir / 'sft'}"
        if pretrained is not None:
            return pretrained, f"pretrained checkpoint {config.pretrained}"
        return model.init_params(jax.random.key(config.seed)), "random weights (no cold start)"

    return initial_policy


def rl_recipe(config, workdir: epath.PathLike, *, halt_after: int | None = None) -> dict:
    """GRPO or PPO then held-out evaluation of the policy; returns the evaluation results."""
    workdir = epath.Path(workdir)
    write_config(config, workdir)
    tokenizer, model, pretrained = load_model(config)
    initial_policy = cold_start(config, workdir, tokenizer, model, pretrained)
    state = rl_training.train(
        config, config.rl, workdir, tokenizer, model, initial_policy, halt_after=halt_after
    )
    if not loop.finished(state, loop.Cadence.of(config.rl)):
        return {}
    return evaluate_run(config, workdir, tokenizer, model, state["params"]["policy"], int(state["step"]))


def policy_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> ml_collections.ConfigDict:
    """The SFT config of a reward model's policy: the run's task, model, sampling and `sft` block."""
    return ml_collections.ConfigDict(
        {
            "mode": "sft",
            "seed": config.seed,
            "num_devices": config.num_devices,
            "tokenizer_path": config.tokenizer_path,
            "data_dir": config.data_dir or str(workdir / "data"),
            "task": config.task.to_dict(),
            "model": config.model.to_dict(),
            "sft": config.sft.to_dict(),
            "eval": config.eval.to_dict(),
        }
    )


def policy_params(config, workdir: epath.Path, tokenizer, model):
    """The policy a reward model learns to judge: restored from `config.policy_workdir`, or trained into
    `workdir/policy`."""
    if config.policy_workdir:
        return restore_params(config.policy_workdir)
    sft_config = policy_config(config, workdir)
    write_config(sft_config, workdir / "policy")
    state = sft.train(sft_config, sft_config.sft, workdir / "policy", tokenizer, model)
    return state["params"]


def reward_model_recipe(config, workdir: epath.PathLike, *, halt_after: int | None = None) -> dict:
    """Policy, labelled data, reward-model training, then evaluation; returns the evaluation results."""
    if config.mode not in ("orm", "prm"):
        raise ConfigError(f"the reward-model recipe runs modes 'orm' and 'prm', not {config.mode!r}")
    workdir = epath.Path(workdir)
    write_config(config, workdir)
    tokenizer, policy, _ = load_model(config)
    params = policy_params(config, workdir, tokenizer, policy)
    model = Model(rm.with_head(policy.config))
    description = rm_training.describe(config, model, tokenizer)
    if distributed.is_primary():
        (workdir / rm_training.DESCRIPTION_FILE).write_text(json.dumps(description, indent=1))
    data = labelled_data.training_data(config, workdir, tokenizer, policy, params)
    state = rm_training.train(config, config.rm, workdir, model, params, data, halt_after=halt_after)
    if not loop.finished(state, loop.Cadence.of(config.rm)):
        return {}
    scorers = {config.mode: (model, state["params"])}
    if config.eval_rm.compare_workdir:  # e.g. the ORM run beside this PRM run, for best-of-N
        other = rm_training.load_description(config.eval_rm.compare_workdir)["kind"]
        if other in scorers:
            raise ConfigError(f"eval_rm.compare_workdir is another {other} run; it should be the other kind")
        scorers[other] = rm_training.load_reward_model(config.eval_rm.compare_workdir)
    return rm_evaluate.evaluate(config, workdir, tokenizer, policy, params, scorers)
