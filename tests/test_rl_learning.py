"""RL that learns: a task a tiny policy can learn in seconds, and faults that must stop it learning.

The task: the prompt is two digits `a b`, the completion one token, the reward 1 when it is the digit
`max(a, b)`. A random policy of a 16-token vocabulary starts near 1/16. GRPO (every advantage estimator)
and PPO must raise the mean reward from below 0.2 to above 0.5 (the last 5 steps' mean) within 40 steps of 16 prompts x 8 samples,
with fixed keys and data (deterministic on the CPU). The same run with an injected fault must fail it:
the advantage's sign flipped, the old log-probs taken from the current policy with mu > 1 (the trust
region never acts: the clip fraction stays 0), and the loss mask shifted by one token.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.model import Model
from rtc.model.config import ModelConfig
from rtc.parallel import mesh as mesh_lib
from rtc.rl import advantages as adv_lib
from rtc.rl import learner, losses, programs
from rtc.rl import training as rl_training
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig
from rtc.train import optimizer as optimizer_lib

PAD, BOS, STOP, DIGIT0 = 0, 1, 2, 3  # digit d is token DIGIT0 + d
PROMPTS, GROUP, STEPS = 16, 8, 40
START_BELOW, END_ABOVE = 0.2, 0.5

TINY = ModelConfig(
    vocab_size=16,
    num_layers=1,
    embed_dim=32,
    num_heads=2,
    num_kv_heads=2,
    head_dim=16,
    mlp_dim=64,
    max_seq_len=16,
)


def larger_digit_reward(tokens, lengths, gold):
    """f32[B]: 1 where the first completion token is the gold digit."""
    r = (tokens[:, 0] == gold).astype(jnp.float32)
    return r, {"correct": r}


def larger_digit_batches(steps: int, seed: int = 0):
    """`steps` batches of `(prompts i32[P * G, 3], lengths i32[P * G], gold i32[P * G])`, groups adjacent."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ab = rng.integers(0, 10, (PROMPTS, 2))
        prompts = np.stack([np.full(PROMPTS, BOS), DIGIT0 + ab[:, 0], DIGIT0 + ab[:, 1]], axis=1)
        yield (
            np.repeat(prompts, GROUP, axis=0).astype(np.int32),
            np.full(PROMPTS * GROUP, 3, np.int32),
            np.repeat(DIGIT0 + ab.max(axis=1), GROUP).astype(np.int32),
        )


def train(algorithm="grpo", advantage="grpo", mu=2, oversample=1) -> dict:
    """Runs the fused RL step on the task; returns the per-step metrics as lists."""
    model = Model(TINY)
    critic = Model(ModelConfig(**{**TINY.__dict__, "scalar_head": True})) if algorithm == "ppo" else None
    cfg = learner.RLConfig(
        algorithm=algorithm,
        group_size=GROUP,
        advantage=advantage,
        mu=mu,
        max_new_tokens=1,
        logprob_parity=True,
        loss=losses.PolicyLossConfig(epsilon=0.2, epsilon_high=0.28, kl_coef=0.0),
    )
    optimizer = optimizer_lib.adamw(1e-2, 0.0, 1.0)
    params = model.init_params(jax.random.key(0))
    critic_params = rl_training.critic_params(params, critic, jax.random.key(2)) if critic else None
    state = learner.init_state(params, optimizer, jax.random.key(1), critic_params)
    mesh = mesh_lib.make_mesh(1)
    shardings = (jax.tree.map(lambda _: mesh_lib.replicated(mesh), state), mesh_lib.batch_sharded(mesh))
    parts = programs.Learner(model, critic, cfg, optimizer, None, PAD)
    sampler_cfg = SamplerConfig(1, (STOP,), pad_id=PAD, rule=SamplingRule(temperature=1.0))
    step = programs.make_fused_step(
        parts, sampler_cfg, larger_digit_reward, shardings, num_groups=PROMPTS if oversample > 1 else None
    )
    history: dict = {}
    batches = larger_digit_batches(STEPS * oversample)
    for _ in range(STEPS):
        drawn = [next(batches) for _ in range(oversample)]
        prompts, lengths, gold = (np.concatenate(x) for x in zip(*drawn))
        state, metrics, _ = step(state, prompts, lengths, gold)
        for k, v in metrics.items():
            history.setdefault(k, []).append(float(v))
    return history


def learned(history: dict, mu: int) -> bool:
    """The test's criterion: reward starts low and ends high; with mu > 1 the clipped ratio acts."""
    reward = history["reward_mean"]
    start, end = np.mean(reward[:2]), np.mean(reward[-5:])
    clipped = np.mean(np.add(history["clip_fraction_low"], history["clip_fraction_high"]))
    return start < START_BELOW and end > END_ABOVE and (mu == 1 or clipped > 0)


@pytest.mark.parametrize(
    "algorithm, advantage, mu",
    [
        ("grpo", "grpo", 2),
        ("grpo", "dr_grpo", 1),
        ("grpo", "rloo", 1),
        ("grpo", "batch_std", 2),
        ("ppo", "grpo", 2),
    ],
)
def test_reward_rises_on_the_larger_digit_task(algorithm, advantage, mu):
    history = train(algorithm, advantage, mu)
    assert learned(history, mu), (history["reward_mean"][:2], history["reward_mean"][-5:])
    # the sampler's and the learner's log-probs of the same tokens agree: the on-policy assumption holds
    assert max(history["logprob_parity_max"]) < 1e-4


def _flip_sign(monkeypatch):
    grpo = adv_lib.ADVANTAGES["grpo"]
    monkeypatch.setitem(adv_lib.ADVANTAGES, "grpo", lambda r, eps, ddof: -grpo(r, eps, ddof))


def _old_logp_from_current_policy(monkeypatch):
    make_experience = learner.make_experience

    def stale(*args, **kwargs):
        exp, stats = make_experience(*args, **kwargs)
        exp.pop("old_logp", None)  # rl_loss then takes the current policy's (stop-gradient) log-probs
        return exp, stats

    monkeypatch.setattr(learner, "make_experience", stale)


def _mask_shifted_by_one(monkeypatch):
    sequences = programs.sequences

    def shifted(*args):
        seqs = sequences(*args)
        mask = seqs["mask"]  # marks the completion's tokens instead of its targets
        return {**seqs, "mask": jnp.pad(mask[:, :-1], ((0, 0), (1, 0)))}

    monkeypatch.setattr(programs, "sequences", shifted)


@pytest.mark.parametrize("fault", [_flip_sign, _old_logp_from_current_policy, _mask_shifted_by_one])
def test_the_learning_test_fails_on_an_injected_fault(monkeypatch, fault):
    fault(monkeypatch)
    assert not learned(train("grpo", "grpo", mu=2), mu=2)


def test_dynamic_sampling_trains_on_informative_groups_only():
    """Drawing twice the prompts, every trained group has reward variance while the draw has enough of them;
    the draw's cost is reported, and the policy still learns."""
    history = train("grpo", "grpo", mu=2, oversample=2)
    drawn = np.array(history["draw_informative_fraction"]) * 2 * PROMPTS  # informative groups drawn
    expected = np.minimum(drawn, PROMPTS) / PROMPTS
    np.testing.assert_allclose(history["informative_fraction"], expected, atol=1e-6)
    assert set(history["draw_groups_per_trained"]) == {2.0}
    assert np.mean(history["informative_fraction"]) > np.mean(history["draw_informative_fraction"])
    assert learned(history, mu=2)
