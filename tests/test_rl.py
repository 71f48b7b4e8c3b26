"""GRPO and PPO end to end: rollout layout, fused == host path, resume == uninterrupted, 8 devices == 1."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_trees_close, run_on_fake_devices
from rtc.checkpoint import Checkpointer
from rtc.data import arithmetic
from rtc.eval import traces
from rtc.data.format import prompt_tokens
from rtc.metrics import read_metrics
from rtc.rewards import rule
from rtc.data.tasks import get_task
from rtc import recipes
from rtc.model import Model
from rtc.rl import learner, programs
from rtc.rl import training as rl_training
from rtc.rl.rollout import repeat_groups, sequences
from rtc.parallel import mesh as mesh_lib
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, generate, pad_prompts
from rtc.train import optimizer as optimizer_lib


def grpo_config(arg="tiny"):
    from experiments.configs import grpo

    config = grpo.get_config(arg)
    # a random policy rarely answers; a length penalty gives the groups reward variance to learn from
    config.rewards.weights = {"correct": 1.0, "overlong": 1.0}
    config.rewards.overlong_cache = config.rl.max_new_tokens
    return config


def test_rollout_sequences_reproduce_the_sampler_logprobs(model, tokenizer):
    params = model.init_params(jax.random.key(1))
    prompts = [[2, 11, 12, 13], [2, 21], [2, 31, 32]]
    cfg = SamplerConfig(max_new_tokens=8, stop_ids=(tokenizer.eos_id,), rule=SamplingRule(temperature=1.0))
    out = generate(model, params, prompts, jax.random.key(2), cfg)
    tokens, lengths = pad_prompts(prompts, 0, 8, model.max_seq_len)
    seqs = sequences(jnp.asarray(tokens), jnp.asarray(lengths), out.tokens, out.lengths, pad_id=0)
    for b, prompt in enumerate(prompts):
        n = int(out.lengths[b])
        row = np.asarray(seqs["tokens"][b])
        assert row[: len(prompt)].tolist() == prompt
        assert row[len(prompt) : len(prompt) + n].tolist() == np.asarray(out.tokens[b, :n]).tolist()
        # target t is token t + 1: the completion's targets start at len(prompt) - 1
        assert np.flatnonzero(np.asarray(seqs["mask"][b])).tolist() == list(
            range(len(prompt) - 1, len(prompt) - 1 + n)
        )
    logp, _, _ = learner.forward(model, params, seqs["tokens"], seqs["positions"], temperature=1.0)
    for b, prompt in enumerate(prompts):
        n = int(out.lengths[b])
        start = len(prompt) - 1
        np.testing.assert_allclose(logp[b, start : start + n], out.logprobs[b, :n], atol=2e-5)


def test_zero_variance_groups_are_masked_and_counted(model, tokenizer):
    params = model.init_params(jax.random.key(1))
    cfg = learner.RLConfig(group_size=2)
    state = learner.init_state(params, optimizer_lib.adamw(1e-3, 0.0, 1.0), jax.random.key(0))
    tokens = jnp.tile(jnp.arange(2, 10)[None], (4, 1))
    seqs = {"tokens": tokens, "positions": jnp.tile(jnp.arange(8)[None], (4, 1)), "mask": jnp.ones((4, 7))}
    exp, stats = learner.make_experience(model, None, state, seqs, jnp.array([1.0, 1.0, 0.0, 1.0]), cfg)
    assert float(stats["zero_variance_fraction"]) == 0.5
    np.testing.assert_array_equal(exp["loss_mask"].sum(axis=1), [0, 0, 7, 7])
    assert np.all(np.isfinite(exp["advantages"])) and np.all(exp["advantages"][:2] == 0)


def test_one_update_skips_the_old_policy_forward_with_the_same_loss_and_gradient(model, tokenizer):
    params = model.init_params(jax.random.key(1))
    state = learner.init_state(params, optimizer_lib.adamw(1e-3, 0.0, 1.0), jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(2), (4, 8), 3, 100)
    seqs = {"tokens": tokens, "positions": jnp.tile(jnp.arange(8)[None], (4, 1)), "mask": jnp.ones((4, 7))}
    rewards = jnp.array([1.0, 0.0, 0.0, 1.0])
    one = learner.RLConfig(group_size=2, mu=1)
    exp, _ = learner.make_experience(model, None, state, seqs, rewards, one)
    assert "old_logp" not in exp  # mu = 1: the old policy is the current one
    explicit = {
        **exp,
        "old_logp": learner.forward(model, params, tokens, seqs["positions"], one.temperature)[0],
    }

    def loss_and_grad(batch):
        return jax.value_and_grad(lambda p: learner.rl_loss(p, batch, model, None, one)[0])(state["params"])

    (loss, grad), (loss_explicit, grad_explicit) = loss_and_grad(exp), loss_and_grad(explicit)
    np.testing.assert_allclose(loss, loss_explicit, rtol=1e-6)
    assert_trees_close(grad, grad_explicit, atol=1e-6)
    exp_two, _ = learner.make_experience(
        model, None, state, seqs, rewards, learner.RLConfig(group_size=2, mu=2)
    )
    assert "old_logp" in exp_two  # several updates keep the rollout policy's log-probs fixed


def _batch(tokenizer, group_size, num_prompts=2):
    records = list(arithmetic.generate("train", num_prompts, seed=0, levels=(1,)))
    prompts, lengths = pad_prompts([prompt_tokens(tokenizer, r) for r in records], tokenizer.pad_id, 16, 128)
    prompts, lengths = repeat_groups(prompts, lengths, group_size)
    return [r for r in records for _ in range(group_size)], jnp.asarray(prompts), jnp.asarray(lengths)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_fused_step_equals_rollout_then_host_rewards(model, tokenizer, algorithm):
    config = grpo_config("tiny_ppo" if algorithm == "ppo" else "tiny")
    cfg = rl_training.rl_config(config)
    cfg = learner.RLConfig(**{**cfg.__dict__, "max_new_tokens": 16})
    sampler_cfg = SamplerConfig(
        16, (tokenizer.answer_end_id, tokenizer.eos_id), rule=SamplingRule(temperature=1.0)
    )
    schedule, optimizer = lambda step: 1e-3, optimizer_lib.adamw(1e-3, 0.0, 1.0)
    critic = (
        Model(model.config.__class__(**{**model.config.__dict__, "scalar_head": True}))
        if algorithm == "ppo"
        else None
    )
    params = model.init_params(jax.random.key(3))
    make_state = lambda: learner.init_state(
        jax.tree.map(jnp.copy, params),  # the steps donate their state
        optimizer,
        jax.random.key(4),
        rl_training.critic_params(params, critic, jax.random.key(5)) if critic else None,
    )
    mesh = mesh_lib.make_mesh(1)
    shardings = (
        jax.tree.map(lambda _: mesh_lib.replicated(mesh), make_state()),
        mesh_lib.batch_sharded(mesh),
    )
    weights = (("correct", 1.0), ("overlong", 1.0))
    records, prompts, lengths = _batch(tokenizer, cfg.group_size)
    gold = jnp.array([int(r["answer"]) for r in records], jnp.int32)

    reward = programs.DeviceReward.of(tokenizer, weights, 16, 16)
    parts = programs.Learner(model, critic, cfg, optimizer, schedule, tokenizer.pad_id)
    fused = programs.make_fused_step(parts, sampler_cfg, reward, shardings)
    fused_state, fused_metrics, _ = fused(make_state(), prompts, lengths, gold)

    state, key = learner.split_rng(make_state())
    out = programs.make_rollout(model, sampler_cfg, shardings[1])(
        state["params"]["policy"], prompts, lengths, key
    )
    texts = [
        tokenizer.decode(np.asarray(out.tokens[i, : out.lengths[i]]).tolist()) for i in range(len(records))
    ]
    fns = rule.make_reward_fns(get_task("arithmetic"), 16, 16)
    total, _, _ = rule.score(fns, rule.RewardSpec(weights), texts, records, np.asarray(out.lengths))
    learn = programs.make_learn_step(parts, shardings)
    host_state, host_metrics = learn(state, prompts, lengths, out, jnp.asarray(total), None)

    assert float(fused_metrics["reward_std"]) > 0  # the update had something to learn from
    np.testing.assert_allclose(fused_metrics["loss"], host_metrics["loss"], rtol=1e-5, atol=1e-7)
    assert_trees_close(fused_state["params"], host_state["params"], atol=1e-6)
    assert not np.allclose(fused_state["params"]["policy"]["final_norm"], params["final_norm"])


def _run(config, workdir, halt_after=None):
    return recipes.rl_recipe(config, workdir, halt_after=halt_after)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_shrunk_run_logs_metrics_and_resumes_exactly(tmp_path, data_dir, sft_run, algorithm):
    config = grpo_config("tiny_ppo" if algorithm == "ppo" else "tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)  # the cold start is run by test_grpo_from_a_pretrained_checkpoint
    config.rl.update(num_steps=4, checkpoint_every=2)
    results = _run(config, tmp_path / "whole")
    assert "accuracy" in results["greedy"]
    metrics = read_metrics(tmp_path / "whole")
    train = [m for m in metrics if "train/loss" in m]
    assert [m["step"] for m in train] == [1, 2, 3, 4]
    expected = {
        "reward_mean",
        "reward_std",
        "reward/correct",
        "reward/overlong",
        "accuracy",
        "completion_length",
        "thinking_length",
        "clip_fraction_low",
        "clip_fraction_high",
        "kl",
        "entropy",
        "grad_norm",
        "zero_variance_fraction",
        "self_correction_rate",
    }
    assert expected <= {k.removeprefix("train/") for k in train[0]}
    if algorithm == "ppo":
        assert "train/value_loss" in train[0]
    memory = [m for m in metrics if "memory/param_and_optimizer_bytes" in m]
    assert memory and memory[0]["memory/param_and_optimizer_bytes"] > 0

    # halted after the checkpoint of step 2: the resumed run redoes step 3
    assert _run(config, tmp_path / "resumed", halt_after=3) == {}
    _run(config, tmp_path / "resumed")
    assert_trees_close(
        recipes.restore_params(tmp_path / "resumed"), recipes.restore_params(tmp_path / "whole"), atol=0
    )
    whole = [m for m in read_metrics(tmp_path / "whole") if m.get("step") == 4 and "train/loss" in m][0]
    resumed = [m for m in read_metrics(tmp_path / "resumed") if m.get("step") == 4 and "train/loss" in m][0]
    for key in ("train/loss", "train/reward_mean", "train/grad_norm", "train/kl"):
        assert resumed[key] == whole[key], key
    # sample traces at every step (trace_every=1), one per prompt for the first trace_samples=4 prompts drawn
    # (a round of dynamic sampling draws 2 x 2); the resumed run's file reads the same
    samples = traces.read_samples(tmp_path / "whole" / traces.TRACES_FILE)
    assert [r["step"] for r in samples] == [step for step in (1, 2, 3, 4) for _ in range(4)]
    assert set(samples[0]) == {"step", "question", "completion", "correct", "self_corrects", "thrashes"}
    resumed_samples = traces.read_samples(tmp_path / "resumed" / traces.TRACES_FILE)
    assert [(r["step"], r["completion"]) for r in resumed_samples] == [
        (r["step"], r["completion"]) for r in samples
    ]


def test_self_correction_on_hand_examples():
    assert not traces.self_corrects("<think>8*4=32\n37+32=69\n</think><answer>69</answer>")
    # a revision: the same expression computed again with another value
    assert traces.self_corrects("<think>8*4=31\n8*4=32\n37+32=69\n</think><answer>69</answer>")
    # a repeated step with the same value is repetition, not correction
    assert not traces.self_corrects("<think>8*4=32\n8*4=32\n37+32=69\n</think><answer>69</answer>")
    # a retraction followed by a different value, in the cue's step or the next one
    assert traces.self_corrects("<think>8*4=31\nWait, 8*4=32\n</think><answer>32</answer>")
    assert traces.self_corrects("<think>37+31=68\nActually, no.\n37+32=69\n</think><answer>69</answer>")
    # a cue that changes nothing is not a correction
    assert not traces.self_corrects("<think>8*4=32\nWait, 8*4=32\n</think><answer>32</answer>")
    # nor is a cue followed by a step that continues from the value before it
    assert not traces.self_corrects("<think>8*4=32\nWait,\n32+1=33\n</think><answer>33</answer>")
    # budget forcing's injected "Wait," is not the model retracting; a revision after it still counts
    forced = "<think>37+31=68\nWait, 37+32=69\n</think><answer>69</answer>"
    assert traces.self_corrects(forced) and not traces.self_corrects(forced, injected=("Wait,",))
    assert traces.self_corrects("<think>8*4=31\nWait, 8*4=32\n</think>", injected=("Wait,",))
    assert (
        traces.self_correction_rate(["<think>1+1=3\n1+1=2\n</think>", "<think>1+1=2\n1+1=2\n</think>"]) == 0.5
    )
    assert traces.repetition_rate(["<think>a\na\na\n</think>", "<think>a\nb\n</think>"]) == 0.5


def test_trace_samples_round_trip_and_truncate_at_a_resumed_step(tmp_path):
    path = tmp_path / traces.TRACES_FILE
    traces.truncate_samples(path, 0)  # no file yet: nothing to do
    traces.append_samples(path, 1, ["<think>1+1=3\n1+1=2\n</think>"], ["q1"], [True])
    traces.append_samples(path, 2, ["<think>a\na\na\n</think>", "x"], ["q2", "q3"], [False, False])
    traces.append_samples(path, 3, ["y"], ["q4"], [False])
    samples = traces.read_samples(path)
    assert [(r["step"], r["question"]) for r in samples] == [(1, "q1"), (2, "q2"), (2, "q3"), (3, "q4")]
    assert samples[0]["self_corrects"] and not samples[0]["thrashes"] and samples[0]["correct"]
    assert samples[1]["thrashes"] and not samples[1]["correct"]
    traces.truncate_samples(path, 1)  # resumed from the checkpoint of step 1
    traces.append_samples(path, 2, ["again"], ["q2"], [True])
    assert [(r["step"], r["completion"]) for r in traces.read_samples(path)] == [
        (1, "<think>1+1=3\n1+1=2\n</think>"),
        (2, "again"),
    ]


def test_bad_rl_settings_are_config_errors():
    from rtc.errors import ConfigError

    with pytest.raises(ConfigError, match="rl algorithm 'a2c'"):
        learner.RLConfig(algorithm="a2c")
    with pytest.raises(ConfigError, match="mu must be >= 1"):
        learner.RLConfig(mu=0)
    with pytest.raises(ConfigError, match="unknown reward function 'speling'"):
        rule.RewardSpec.from_dict({"correct": 1.0, "speling": 1.0}).check(
            list(rule.make_reward_fns(None, 8, 0))
        )
    config = grpo_config()
    config.rl.device_rewards = "on"
    with pytest.raises(ConfigError, match="device_rewards='on' needs the arithmetic task"):
        rl_training.use_device_rewards(config, get_task("countdown"))


# XLA_FLAGS must be set before jax is imported, hence a fresh process.
SHARDED = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import importlib.util
    import jax, numpy as np
    sys.path.insert(0, "tests")
    from test_rl import grpo_config
    from rtc import recipes
    from rtc.pretrained.run_model import build_model
    from rtc.rl import training
    from rtc.tokenizer.tokenizer import Tokenizer

    out = Path(sys.argv[1])
    tokenizer = Tokenizer.load()
    for algorithm in ("grpo", "ppo"):
        for n in (8, 1):
            config = grpo_config("tiny_ppo" if algorithm == "ppo" else "tiny")
            config.data_dir = str(out / "data")
            config.num_devices = n
            config.rl.num_steps = 2
            config.sft.num_steps = 0  # random weights: the devices are compared, not the policy
            model = build_model(config, tokenizer.vocab_size)
            workdir = out / f"{algorithm}{n}"
            policy = recipes.cold_start(config, workdir, tokenizer, model, None)
            state = training.train(config, config.rl, workdir, tokenizer, model, policy)
            leaves = jax.tree_util.tree_leaves_with_path(state["params"])
            np.savez(out / f"{algorithm}{n}.npz", **{jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves})
    (out / "done").write_text(json.dumps(jax.device_count()))
""")


def test_eight_devices_equal_one(tmp_path):
    run_on_fake_devices(SHARDED, str(tmp_path), timeout=900)
    assert (tmp_path / "done").read_text() == "8"
    for algorithm in ("grpo", "ppo"):
        eight, one = np.load(tmp_path / f"{algorithm}8.npz"), np.load(tmp_path / f"{algorithm}1.npz")
        assert sorted(eight) == sorted(one)
        for key in one:
            np.testing.assert_allclose(eight[key], one[key], rtol=0, atol=2e-6, err_msg=f"{algorithm} {key}")


def test_process_supervision_learns_from_step_rewards(model, tokenizer):
    """Step rewards from a callable (here a toy "PRM": +1 for each step that ends with a digit)."""
    config = grpo_config("tiny")
    cfg = learner.RLConfig(
        **{**rl_training.rl_config(config).__dict__, "process_supervision": True, "max_new_tokens": 16}
    )
    sampler_cfg = SamplerConfig(
        16, (tokenizer.answer_end_id, tokenizer.eos_id), rule=SamplingRule(temperature=1.0)
    )
    optimizer = optimizer_lib.adamw(1e-3, 0.0, 1.0)
    params = model.init_params(jax.random.key(3))
    state = learner.init_state(jax.tree.map(jnp.copy, params), optimizer, jax.random.key(4))
    mesh = mesh_lib.make_mesh(1)
    shardings = (jax.tree.map(lambda _: mesh_lib.replicated(mesh), state), mesh_lib.batch_sharded(mesh))
    records, prompts, lengths = _batch(tokenizer, cfg.group_size)
    state, key = learner.split_rng(state)
    out = programs.make_rollout(model, sampler_cfg, shardings[1])(
        state["params"]["policy"], prompts, lengths, key
    )

    def toy_prm(prm_params, tokens, completion):
        ends = completion & (jnp.arange(tokens.shape[1]) % 3 == 0)[None]  # every third token ends a "step"
        return jnp.where(ends, prm_params["bias"] + (tokens % 2), 0.0), ends

    parts = programs.Learner(model, None, cfg, optimizer, None, tokenizer.pad_id)
    learn = programs.make_learn_step(parts, shardings, toy_prm)
    new_state, metrics = learn(
        state, prompts, lengths, out, jnp.zeros(len(records)), {"bias": jnp.float32(0.5)}
    )
    assert np.isfinite(float(metrics["loss"])) and float(metrics["advantage_abs_mean"]) > 0
    assert not np.allclose(new_state["params"]["policy"]["final_norm"], params["final_norm"])
    with pytest.raises(Exception, match="per-step rewards"):
        programs.make_learn_step(parts, shardings)(
            new_state, prompts, lengths, out, jnp.zeros(len(records)), None
        )


def test_grpo_from_a_pretrained_checkpoint(tmp_path, data_dir):
    config = grpo_config("tiny_pretrained")
    config.data_dir = str(data_dir)
    config.rl.num_steps = 2
    results = _run(config, tmp_path)
    assert "accuracy" in results["greedy"]
    assert len([m for m in read_metrics(tmp_path) if "train/loss" in m]) == 2
    # the cold start: sft.num_steps SFT steps from the checkpoint into WORKDIR/sft, then RL from them
    with Checkpointer(tmp_path / "sft" / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [config.sft.num_steps]
    assert (tmp_path / "sft" / "config.json").is_file()
