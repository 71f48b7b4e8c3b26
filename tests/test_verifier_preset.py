"""A reward model of another preset than its policy's, and its step chosen on held-out within-problem AUROC.

The tiny PRM run whose verifier (test-tiny-wide) trains its own SFT; `verifier_workdir` and `rm.preset`
checked before anything is trained; early stopping (the chosen step, the params loaded, exact resume);
`select_every=0` and the policy's own preset leaving a run as it was; search with a verifier of another
shape and context.
"""

import dataclasses
import importlib
import json

import jax
import numpy as np
import pytest

from helpers import assert_trees_close
from rtc import recipes
from rtc.checkpoint import Checkpointer
from rtc.errors import ConfigError
from rtc.metrics import read_metrics
from rtc.model import Model, model_config
from rtc.pretrained.run_model import build_model
from rtc.rewards import labelled_data, rm_data, selection
from rtc.rewards import reward_model as rm
from rtc.rewards import training as rm_training
from rtc.search import runner
from rtc.train import loop

WIDE = "test-tiny-wide"
AUROC = selection.METRIC


def rm_config(name: str, arg: str = "tiny"):
    """`experiments/configs/{name}.py:get_config(arg)`."""
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


def even_verdicts(task, tokenizer, solutions) -> np.ndarray:
    """Stands in for the task's verifier: the tiny policy answers nothing right, so no within-problem AUROC
    would be defined. A completion of an even number of tokens counts as right."""
    return np.array([len(s.completion_ids) % 2 == 0 for s in solutions], np.float32)


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, data_dir):
    """`(workdir, config, results)`: a tiny PRM run of a test-tiny policy judged by a test-tiny-wide
    verifier, its step chosen every 2 steps on 8 held-out problems."""
    config = rm_config("prm")
    config.data_dir = str(data_dir)
    config.rm.update(preset=WIDE, select_every=2)
    config.rm_data.validation_problems = 8
    workdir = tmp_path_factory.mktemp("wide_prm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rm_data, "outcome_labels", even_verdicts)
        results = recipes.reward_model_recipe(config, workdir)
    return workdir, config, results


def test_a_verifier_of_another_preset_trains_its_own_sft_and_loads(wide_run, tokenizer):
    workdir, config, results = wide_run
    assert config.model.preset == "test-tiny"
    assert recipes.read_config(workdir / recipes.VERIFIER_SFT).model.preset == WIDE
    assert loop.latest_step(workdir / recipes.VERIFIER_SFT) == config.sft.num_steps
    expected = model_config(WIDE, vocab_size=tokenizer.vocab_size, scalar_head=True)
    description = rm_training.load_description(workdir)
    assert description["model"] == json.loads(json.dumps(dataclasses.asdict(expected)))
    model, params = rm_training.load_reward_model(workdir)
    assert model.config == expected
    assert params["embedding"].shape == (tokenizer.vocab_size, expected.embed_dim)
    assert recipes.load_run(workdir)[2].config == expected
    # the policy (test-tiny) sampled the labelled data; the verifier scored the held-out ones
    assert recipes.read_config(workdir / "policy").model.preset == "test-tiny"
    assert "prm_product/within_problem_auroc" in results
    validation = json.loads((workdir / "rm_data" / "validation.json").read_text())
    assert validation["signature"]["problems"] == [8, 16]  # after the 8 training problems


def test_the_chosen_step_has_the_best_validation_auroc_and_loads_by_default(wide_run):
    workdir, _, _ = wide_run
    record = selection.read_selection(workdir)
    assert record["validation"]["problems"] == 8 and record["validation"]["problems_with_pairs"] > 0
    steps = [e["step"] for e in record["evaluations"]]
    values = [e[AUROC] for e in record["evaluations"]]
    assert steps == [2, 4] and all(np.isfinite(values))
    assert record["chosen_step"] == steps[int(np.argmax(values))]
    logged = [
        (r["step"], r["rm/validation_auroc"]) for r in read_metrics(workdir) if "rm/validation_auroc" in r
    ]
    assert logged == list(zip(steps, values))
    _, params = rm_training.load_reward_model(workdir)
    with Checkpointer(workdir / "checkpoints") as checkpointer:
        assert_trees_close(params, checkpointer.restore_params(record["chosen_step"]), atol=0)


def test_verifier_workdir_and_preset_are_checked_before_training(wide_run, data_dir, tmp_path, tokenizer):
    workdir, _, _ = wide_run
    config = rm_config("prm")
    config.data_dir = str(data_dir)
    config.verifier_workdir = str(workdir / recipes.VERIFIER_SFT)  # a test-tiny-wide SFT run
    with pytest.raises(
        ConfigError, match=r"model 'test-tiny-wide', but the verifier is the policy's model 'test-tiny'"
    ):
        recipes.reward_model_recipe(config, tmp_path / "unset")
    config.rm.preset = "cpu-small"
    with pytest.raises(
        ConfigError, match=r"model 'test-tiny-wide', but the verifier is rm.preset 'cpu-small'"
    ):
        recipes.reward_model_recipe(config, tmp_path / "other")
    config.rm.preset = "tiny"
    with pytest.raises(ConfigError, match=r"unknown rm.preset 'tiny'; known: \[.*'test-tiny-wide'"):
        recipes.reward_model_recipe(config, tmp_path / "unknown")
    assert not any((tmp_path / name / "policy").exists() for name in ("unset", "other", "unknown"))
    # a run of the named preset is taken as it is: its params are the verifier's trunk, no SFT of its own
    config.rm.preset = WIDE
    policy = build_model(config, tokenizer.vocab_size)
    verifier = recipes.verifier_model(config, tokenizer, policy)
    recipes.check_verifier_run(config, verifier)
    trunk = recipes.verifier_params(config, tmp_path / "given", tokenizer, verifier, None)
    assert_trees_close(trunk, recipes.restore_params(workdir / recipes.VERIFIER_SFT), atol=0)
    assert not (tmp_path / "given" / recipes.VERIFIER_SFT).exists()


def test_the_policys_own_preset_without_selection_is_the_path_it_was(wide_run, data_dir, tmp_path, tokenizer):
    workdir, _, _ = wide_run
    config = rm_config("orm")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(workdir / "policy")
    config.rm.preset = "test-tiny"  # the policy's: the same as unset
    recipes.reward_model_recipe(config, tmp_path / "run")
    for name in (
        recipes.VERIFIER_SFT,
        selection.BEST_DIR,
        selection.SELECTION_FILE,
        "rm_data/validation.json",
    ):
        assert not (tmp_path / "run" / name).exists(), name
    policy = build_model(config, tokenizer.vocab_size)
    model, params = rm_training.load_reward_model(tmp_path / "run")
    assert model.config == rm.with_head(policy.config)
    # the reward model trained straight from the policy's params on the same data
    data = labelled_data.training_data(config, tmp_path / "run", tokenizer, None, None)  # the cached data
    state = rm_training.train(
        config, config.rm, tmp_path / "direct", model, recipes.restore_params(config.policy_workdir), data
    )
    assert_trees_close(params, state["params"], atol=0)


# --- early stopping on given arrays --------------------------------------------------------------------


def cue_data(n: int, seed: int, t: int = 24) -> dict:
    """ORM rows whose last completion token shows the verdict (100: right, 200: wrong), at varying ends."""
    rng = np.random.default_rng(seed)
    label = rng.random(n) < 0.5
    ends = rng.integers(10, 20, n)
    tokens = rng.integers(9, 900, (n, t)).astype(np.int32)
    tokens[np.arange(n), ends - 1] = np.where(label, 100, 200)
    mask = np.arange(t)[None, :] < ends[:, None]
    mask[:, :6] = False
    return {"tokens": tokens, "completion_mask": mask, "label": label.astype(np.float32)}


@pytest.fixture(scope="module")
def cue_setup():
    """`(config, model, policy params, training data, validation)`: 4 steps, each evaluated and saved."""
    config = rm_config("orm")
    config.rm.update(
        num_steps=4, learning_rate=1e-3, log_every=1, checkpoint_every=1, max_to_keep=4, select_every=1
    )
    policy = Model(model_config("test-tiny", vocab_size=1024))
    held_out = cue_data(32, seed=5)
    validation = selection.Validation(
        held_out["tokens"],
        held_out["completion_mask"],
        held_out["label"] > 0.5,
        shape=(8, 4),
        kind="orm",
        aggregation="last",
        delimiter_id=8,
        batch_size=8,
    )
    model = Model(rm.with_head(policy.config))
    return config, model, policy.init_params(jax.random.key(3)), cue_data(64, seed=1), validation


def train(setup, workdir, tokenizer, halt_after=None, **updates) -> dict:
    """Trains the cue setup (its `rm` block updated) into `workdir`, with the run's `reward_model.json`."""
    config, model, params, data, validation = setup
    config = config.copy_and_resolve_references()
    config.rm.update(updates)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / rm_training.DESCRIPTION_FILE).write_text(
        json.dumps(rm_training.describe(config, model, tokenizer))
    )
    return rm_training.train(
        config, config.rm, workdir, model, params, data, validation=validation, halt_after=halt_after
    )


def test_early_stopping_keeps_and_loads_the_best_step(cue_setup, tmp_path, tokenizer):
    state = train(cue_setup, tmp_path / "run", tokenizer)
    record = selection.read_selection(tmp_path / "run")
    values = [e[AUROC] for e in record["evaluations"]]
    assert [e["step"] for e in record["evaluations"]] == [1, 2, 3, 4]
    chosen = record["chosen_step"]
    assert chosen == 1 + int(np.argmax(values)) < 4  # the head learns the cue at step 2; ties keep the first
    _, loaded = rm_training.load_reward_model(tmp_path / "run")
    with Checkpointer(tmp_path / "run" / "checkpoints") as checkpointer:
        assert_trees_close(loaded, checkpointer.restore_params(chosen), atol=0)
    assert not np.array_equal(loaded["value_head"], state["params"]["value_head"])  # not the last step
    assert_trees_close(rm_training.load_reward_model(tmp_path / "run", step=4)[1], state["params"], atol=0)
    # select_every=0: the same training, nothing chosen or kept
    off = train(cue_setup, tmp_path / "off", tokenizer, select_every=0)
    assert_trees_close(off["params"], state["params"], atol=0)
    assert not (tmp_path / "off" / selection.BEST_DIR).exists()
    assert selection.read_selection(tmp_path / "off") is None
    # resuming before the best step sets its kept params aside and replays it
    train(cue_setup, tmp_path / "run", tokenizer, resume_step=1)
    assert (tmp_path / "run" / selection.BEST_DIR / f"{chosen}.set_aside").is_dir()
    assert selection.read_selection(tmp_path / "run") == record
    assert_trees_close(rm_training.load_reward_model(tmp_path / "run")[1], loaded, atol=0)


def test_early_stopping_resumes_exactly(cue_setup, tmp_path, tokenizer):
    every_two = dict(checkpoint_every=2, max_to_keep=2)
    train(cue_setup, tmp_path / "whole", tokenizer, **every_two)
    # killed after step 3: step 3's evaluation is not written; the rerun replays it from step 2
    train(cue_setup, tmp_path / "resumed", tokenizer, halt_after=3, **every_two)
    assert [e["step"] for e in selection.read_selection(tmp_path / "resumed")["evaluations"]] == [1, 2]
    train(cue_setup, tmp_path / "resumed", tokenizer, **every_two)
    whole, resumed = (selection.read_selection(tmp_path / name) for name in ("whole", "resumed"))
    assert resumed == whole
    assert_trees_close(
        rm_training.load_reward_model(tmp_path / "resumed")[1],
        rm_training.load_reward_model(tmp_path / "whole")[1],
        atol=0,
    )


# --- search ----------------------------------------------------------------------------------------------


def test_search_with_a_verifier_of_another_shape_and_context():
    from test_search import DELIM, PROMPTS, config, rescored

    policy = Model(model_config("test-tiny", vocab_size=12, max_seq_len=128))
    params = policy.init_params(jax.random.key(0))
    cfg = config("beam", aggregation="min")  # paths of 20 tokens after prompts of up to 7
    # room for every path, but not for the last step's slack the policy's cache keeps
    verifier = Model(model_config(WIDE, vocab_size=12, max_seq_len=40, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    result = runner.run(policy, params, verifier, vparams, PROMPTS, jax.random.key(3), cfg)
    assert (result.tokens == DELIM).any()
    np.testing.assert_allclose(result.scores, rescored(verifier, vparams, PROMPTS, result, cfg), atol=1e-5)
    short = Model(dataclasses.replace(verifier.config, max_seq_len=24))
    with pytest.raises(ConfigError, match="exceeds the verifier's context of 24 tokens"):
        runner.run(policy, params, short, vparams, PROMPTS, jax.random.key(3), cfg)
