"""Recipes: the stages a run chains, one function per `config.mode`, each `recipe(config, workdir)`.

- `sft`: SFT, then the held-out evaluation;
- `rl` (grpo, ppo): the initial policy (`policy_workdir`, a finished SFT run; else a cold start of
  `sft.num_steps` SFT steps into `WORKDIR/sft`; else a pretrained checkpoint or random weights), RL, then
  the held-out evaluation;
- `reward_model` (orm, prm): the policy (`policy_workdir`, else SFT into `WORKDIR/policy`), the
  verifier's network (the policy's, or with `rm.preset` another preset: `verifier_workdir`, else SFT into
  `WORKDIR/verifier_sft`), the policy's solutions labelled, reward-model training (with `rm.select_every`,
  the step kept chosen on held-out within-problem AUROC), then the verifier's evaluation.
Each stage resumes on its own, so rerunning a recipe in the same workdir continues where it stopped.
Every recipe writes the run's resolved config to `WORKDIR/config.json` first. WORKDIR may be a URL
(`gs://bucket/run`, `s3://...`): every file of a run is read and written through `etils.epath`.
`halt_after`: stop the main training stage after that step, as a preempted job would (tests of resume).
"""

import dataclasses
import json

import jax
import ml_collections
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.errors import ConfigError
from rtc.eval.policy import evaluate_run
from rtc.model import PRESETS, Model, ModelConfig
from rtc.parallel import distributed
from rtc.pretrained.run_model import build_model, load_model
from rtc.rewards import checker, labelled_data, rm_evaluate, selection
from rtc.rewards import reward_model as rm
from rtc.rewards import training as rm_training
from rtc.rl import training as rl_training
from rtc.train import loop, sft

CONFIG_FILE = checker.RUN_CONFIG  # "config.json"
VERIFIER_SFT = "verifier_sft"


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
    """The trained params of any run in `workdir` (SFT, GRPO, PPO, ORM, PRM): the policy's for RL runs, and
    for a reward model the step early stopping chose, if it chose one (`rm_training.restore_params`)."""
    if (epath.Path(workdir) / rm_training.DESCRIPTION_FILE).is_file():
        return rm_training.restore_params(workdir, step)
    with Checkpointer(epath.Path(workdir) / "checkpoints") as checkpointer:
        params = checkpointer.restore_params(step)
    return params["policy"] if "policy" in params else params


def load_run(workdir: epath.PathLike, step: int | None = None) -> tuple:
    """`(config, tokenizer, model, params)` of a trained run, from its workdir alone. A reward model's
    `model` is its own (scalar head on, its preset whatever the policy's); an RL run's params are the
    policy's."""
    config = read_config(workdir)
    tokenizer, model, _ = load_model(config)
    if config.mode in ("orm", "prm"):
        model, params = rm_training.load_reward_model(workdir, step)
        return config, tokenizer, model, params
    return config, tokenizer, model, restore_params(workdir, step)


def sft_recipe(config, workdir: epath.PathLike, *, halt_after: int | None = None) -> dict:
    """SFT then evaluation; returns the evaluation results ({} when the run halted early).

    With `policy_workdir` set (the checker config), training starts from that run's params with a fresh
    optimizer and schedule; else from the pretrained checkpoint, if any, or a random init."""
    workdir = epath.Path(workdir)
    write_config(config, workdir)
    tokenizer, model, params = load_model(config)
    if config.get("policy_workdir"):
        params = start_from(config.policy_workdir, model)
    state = sft.train(config, config.sft, workdir, tokenizer, model, params, halt_after=halt_after)
    if not loop.finished(state, loop.Cadence.of(config.sft)):
        return {}
    return evaluate_run(config, workdir, tokenizer, model, state["params"], int(state["step"]))


def start_from(policy_workdir: epath.PathLike, model) -> dict:
    """The params of the finished run in `policy_workdir`, which must be `model`'s network."""
    params = restore_params(policy_workdir)
    expected = jax.eval_shape(model.init_params, jax.random.key(0))
    if jax.tree.structure(params) != jax.tree.structure(expected) or any(
        a.shape != b.shape for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected))
    ):
        raise ConfigError(f"{policy_workdir} holds another network than this run's model config")
    return params


def load_checker(config, tokenizer) -> dict:
    """`{"checker": (model, params)}`: the generative verifier of `checker_workdir` (an SFT run, e.g.
    experiments/configs/checker.py), or `{}` when it is unset. It reads the policy's tokens, so it must
    share the policy's tokenizer (`rewards.checker.load_checker`)."""
    if not config.get("checker_workdir"):
        return {}
    return {
        "checker": checker.load_checker(
            config.checker_workdir, config.get("tokenizer_path"), config.get("pretrained"), tokenizer
        )
    }


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


def verifier_preset(config) -> str | None:
    """`rm.preset` when it names another network than the policy's, else None: the reward model is then the
    policy's network, `model` overrides included."""
    preset = config.rm.get("preset")
    if preset is None:
        return None
    if preset not in PRESETS:
        raise ConfigError(f"unknown rm.preset {preset!r}; known: {sorted(PRESETS)}")
    if config.get("pretrained"):
        raise ConfigError(
            f"rm.preset={preset!r} with a pretrained policy ({config.pretrained}): a preset's verifier is "
            "trained on rtc's tokenizer; leave rm.preset unset to build the verifier on the policy's network"
        )
    return None if preset == config.model.preset else preset


def verifier_block(config) -> ml_collections.ConfigDict:
    """The `model` block of the verifier's own network: `rm.preset` alone, with the policy's context when
    `model.max_seq_len` is set (both read the same sequences)."""
    block = {name: None for name in config.model.keys()}
    block.update(preset=config.rm.preset, max_seq_len=config.model.max_seq_len)
    return ml_collections.ConfigDict(block)


def verifier_model(config, tokenizer, policy: Model) -> Model:
    """The network the reward model is built on, without its head: the policy's, or `rm.preset`'s."""
    if verifier_preset(config) is None:
        return policy
    return build_model(ml_collections.ConfigDict({"model": verifier_block(config)}), tokenizer.vocab_size)


def model_name(block) -> str:
    """A `model` block as words: its preset and the fields it overrides."""
    overrides = {k: v for k, v in block.items() if k != "preset" and v is not None}
    return repr(block.preset) + (f" with {overrides}" if overrides else "")


def same_network(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether two configs have the same parameters (the context, cache paging and head aside)."""
    ignored = dict(max_seq_len=0, kv_page_size=0, scalar_head=False)
    return dataclasses.replace(a, **ignored) == dataclasses.replace(b, **ignored)


def check_verifier_run(config, verifier: Model) -> None:
    """`verifier_workdir` must be an SFT run of the verifier's network (`rm.preset`, else the policy's),
    with the run's tokenizer: checked from its config before anything is trained."""
    run = read_config(config.verifier_workdir)
    preset = config.rm.get("preset")
    expected = f"rm.preset {preset!r}" if preset else f"the policy's model {model_name(config.model)}"
    if run.get("pretrained") or config.get("pretrained"):
        if run.get("pretrained") != config.get("pretrained"):
            raise ConfigError(
                f"verifier_workdir {config.verifier_workdir} starts from pretrained="
                f"{run.get('pretrained')!r}, this run's policy from pretrained={config.get('pretrained')!r}"
            )
        return  # the same pretrained network: `rm.init_from_policy` compares the parameters' shapes
    if run.get("tokenizer_path") != config.get("tokenizer_path"):
        raise ConfigError(
            f"verifier_workdir {config.verifier_workdir} was trained with tokenizer_path="
            f"{run.get('tokenizer_path')!r}, this run uses {config.get('tokenizer_path')!r}"
        )
    found = build_model(run, verifier.config.vocab_size).config
    if not same_network(found, verifier.config):
        raise ConfigError(
            f"verifier_workdir {config.verifier_workdir} is a run of model {model_name(run.model)}, but the "
            f"verifier is {expected}: set rm.preset to the run's preset or give a run of {expected}"
        )


def verifier_sft_config(config, workdir: epath.Path) -> ml_collections.ConfigDict:
    """The SFT config of the verifier's own network: the policy's (`policy_config`) with its model."""
    c = policy_config(config, workdir)
    c.model = verifier_block(config)
    return c


def verifier_params(config, workdir: epath.Path, tokenizer, verifier: Model, params):
    """The trunk the reward model starts from: `verifier_workdir`'s params, else the policy's `params` when
    the verifier is the policy's network, else its own SFT on the task (the `sft` block), trained into
    `workdir/verifier_sft` (resumable)."""
    if config.get("verifier_workdir"):
        return restore_params(config.verifier_workdir)
    if verifier_preset(config) is None:
        return params
    sft_config = verifier_sft_config(config, workdir)
    write_config(sft_config, workdir / VERIFIER_SFT)
    state = sft.train(sft_config, sft_config.sft, workdir / VERIFIER_SFT, tokenizer, verifier)
    return state["params"]


def write_description(workdir: epath.Path, description: dict) -> None:
    """`reward_model.json`; a workdir holding checkpoints of another reward model is a ConfigError."""
    path = workdir / rm_training.DESCRIPTION_FILE
    if path.is_file() and (workdir / "checkpoints").is_dir() and loop.latest_step(workdir) is not None:
        before = json.loads(path.read_text())["model"]
        if before != json.loads(json.dumps(description["model"])):
            raise ConfigError(f"{workdir} holds a reward model of another model config; use a new workdir")
    if distributed.is_primary():
        path.write_text(json.dumps(description, indent=1))


def validation_set(config, workdir: epath.Path, tokenizer, policy, params) -> selection.Validation | None:
    """The held-out solutions that choose the reward model's step, or None without `rm.select_every`."""
    if not config.rm.get("select_every"):
        return None
    arrays, shape = labelled_data.validation_data(config, workdir, tokenizer, policy, params)
    return selection.Validation(
        tokens=arrays["tokens"],
        completion_mask=arrays["completion_mask"],
        correct=arrays["correct"],
        shape=shape,
        kind=config.mode,
        aggregation=config.rm_data.aggregation,
        delimiter_id=tokenizer.step_id,
        batch_size=config.eval_rm.score_batch_size,
    )


def reward_model_recipe(config, workdir: epath.PathLike, *, halt_after: int | None = None) -> dict:
    """Policy, the verifier's network, labelled data, reward-model training, then evaluation; returns the
    evaluation results."""
    if config.mode not in ("orm", "prm"):
        raise ConfigError(f"the reward-model recipe runs modes 'orm' and 'prm', not {config.mode!r}")
    workdir = epath.Path(workdir)
    write_config(config, workdir)
    tokenizer, policy, _ = load_model(config)
    verifier = verifier_model(config, tokenizer, policy)
    if config.get("verifier_workdir"):
        check_verifier_run(config, verifier)
    rm_evaluate.check_context("reward model", verifier, config.rm.seq_len)
    if config.rm.get("select_every") and not config.rm_data.get("validation_problems"):
        raise ConfigError("rm.select_every needs held-out problems: set rm_data.validation_problems")
    params = policy_params(config, workdir, tokenizer, policy)
    trunk = verifier_params(config, workdir, tokenizer, verifier, params)
    model = Model(rm.with_head(verifier.config))
    write_description(workdir, rm_training.describe(config, model, tokenizer))
    # the labelled data are the policy's solutions, whichever network judges them
    data = labelled_data.training_data(config, workdir, tokenizer, policy, params)
    validation = validation_set(config, workdir, tokenizer, policy, params)
    state = rm_training.train(
        config, config.rm, workdir, model, trunk, data, validation=validation, halt_after=halt_after
    )
    if not loop.finished(state, loop.Cadence.of(config.rm)):
        return {}
    chosen = state["params"] if validation is None else rm_training.restore_params(workdir)
    scorers = {config.mode: (model, chosen)}
    if config.eval_rm.compare_workdir:  # e.g. the ORM run beside this PRM run, for best-of-N
        other = rm_training.load_description(config.eval_rm.compare_workdir)["kind"]
        if other in scorers:
            raise ConfigError(f"eval_rm.compare_workdir is another {other} run; it should be the other kind")
        scorers[other] = rm_training.load_reward_model(config.eval_rm.compare_workdir)
    checkers = load_checker(config, tokenizer)
    return rm_evaluate.evaluate(config, workdir, tokenizer, policy, params, scorers, checkers)
