"""MCTS over reasoning steps: UCT `simulate` and `backward` by hand, and the compiled search's invariants."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.rewards import reward_model as rm
from rtc.search import mcts, runner
from rtc.search.config import SearchConfig

STOP, DELIM = 2, 3
PROMPTS = [[1, 6, 7, 8], [1, 9, 10, 11, 6, 7, 8]]


def config(**overrides):
    fields = dict(strategy="mcts", n=8, m=2, depth=4, step_tokens=5, stop_ids=(STOP,), delimiter_id=DELIM)
    fields.update(overrides)
    return SearchConfig(**fields)


def hand_tree():
    """root 0 (N=3) -> children 1 (W=1.5, N=2) and 2 (W=0.9, N=1); node 1 -> children 3, 4."""
    nodes, m = 5, 2
    children = -np.ones((1, nodes, m), np.int32)
    children[0, 0] = [1, 2]
    children[0, 1] = [3, 4]
    return mcts.Tree(
        parent=jnp.array([[-1, 0, 0, 1, 1]]),
        children=jnp.array(children),
        depth=jnp.array([[0, 1, 1, 2, 2]]),
        visits=jnp.array([[3.0, 2.0, 1.0, 1.0, 1.0]]),
        value=jnp.array([[2.4, 1.5, 0.9, 0.7, 0.8]]),
    )


def test_uct_selection_by_hand():
    # UCT (Kocsis & Szepesvari 2006), c = 1, at the root (N = 3):
    #   child 1: 1.5/2 + sqrt(ln 3 / 2) = 0.75 + 0.7411 = 1.4911
    #   child 2: 0.9/1 + sqrt(ln 3 / 1) = 0.90 + 1.0481 = 1.9481  -> node 2, a leaf
    tree = hand_tree()
    terminal = jnp.zeros((1, 5), bool)
    assert int(mcts.simulate(tree, terminal, config(exploration=1.0))[0]) == 2
    # with node 2's value lowered to 0.2, a small c prefers node 1's higher Q and walks on to a leaf:
    tree = dataclasses.replace(tree, value=tree.value.at[0, 2].set(0.2))
    #   c = 0.1: child 1: 0.8241, child 2: 0.2 + 0.1048 = 0.3048 -> node 1; then at node 1 (N = 2):
    #   child 3: 0.7 + 0.1 sqrt(ln 2) = 0.7833, child 4: 0.8 + 0.0833 = 0.8833 -> node 4
    assert int(mcts.simulate(tree, terminal, config(exploration=0.1))[0]) == 4
    # a terminal node is not descended through
    assert int(mcts.simulate(tree, terminal.at[0, 1].set(True), config(exploration=0.1))[0]) == 1


def test_backup_adds_to_every_ancestor():
    tree = mcts.backward(hand_tree(), jnp.array([4]), jnp.array([2.0]), jnp.array([1.25]))
    np.testing.assert_allclose(tree.visits[0], [5.0, 4.0, 1.0, 1.0, 3.0])
    np.testing.assert_allclose(tree.value[0], [3.65, 2.75, 0.9, 0.7, 2.05])


@pytest.fixture(scope="module")
def models():
    policy = Model(model_config("test-tiny", vocab_size=12, max_seq_len=128))
    params = policy.init_params(jax.random.key(0))
    verifier = Model(dataclasses.replace(policy.config, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    return policy, params, verifier, vparams


def test_mcts_candidates_are_scored_paths(models):
    policy, params, verifier, vparams = models
    cfg = config(trees=2, aggregation="min")
    result = runner.run(policy, params, verifier, vparams, PROMPTS, jax.random.key(3), cfg)
    assert result.tokens.shape[:2] == (2, cfg.trees * cfg.n)
    assert (result.lengths <= cfg.depth * cfg.step_tokens).all()
    used = ~result.duplicate
    assert used.any(axis=1).all() and result.finished[used].any()
    for b, prompt in enumerate(PROMPTS):
        for i in np.flatnonzero(used[b]):
            path = result.tokens[b, i, : result.lengths[b, i]].tolist()
            steps = sum(t == DELIM for t in path) + (path[-1] != DELIM)
            assert steps <= cfg.depth
            mask = jnp.array([[False] * len(prompt) + [True] * len(path)])
            probs, ends = rm.prm_step_rewards(verifier, vparams, jnp.array([prompt + path]), mask, DELIM)
            expected = float(rm.aggregate("min", probs, ends)[0])
            assert abs(result.scores[b, i] - expected) < 1e-5
        # the answer is a finished candidate with the best score among finished ones
        finished = used[b] & result.finished[b]
        assert result.finished[b, result.best[b]]
        assert result.scores[b, result.best[b]] == result.scores[b][finished].max()
    # every candidate path's new tokens were generated (and read by the verifier) by this search
    assert (result.generated_tokens >= (result.lengths * used).max(axis=1)).all()
    assert (result.verifier_tokens == result.generated_tokens + result.prompt_tokens * cfg.trees).all()


def test_mcts_needs_whole_simulations():
    with pytest.raises(ConfigError, match="not divisible"):
        config(n=7, m=2)
    with pytest.raises(ConfigError, match="mcts setting"):
        SearchConfig(
            strategy="beam", n=4, m=2, depth=2, step_tokens=4, stop_ids=(2,), delimiter_id=3, trees=2
        )


def test_rollouts_never_overwrite_a_finished_path(models):
    """Rows of other trees at the depth limit keep rolling with the batch: their paths stay intact."""
    policy, params, verifier, vparams = models
    cfg = config(n=8, m=2, depth=3, step_tokens=4, trees=2)
    checked = 0
    for seed in range(3):
        result = runner.run(policy, params, verifier, vparams, PROMPTS, jax.random.key(seed), cfg)
        for b in range(len(PROMPTS)):
            for i in np.flatnonzero(result.finished[b] & ~result.duplicate[b]):
                assert result.tokens[b, i, result.lengths[b, i] - 1] == STOP, result.tokens[b, i]
                checked += 1
    assert checked > 10
