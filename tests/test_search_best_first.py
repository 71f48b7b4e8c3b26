"""Best-first search over steps: frontier insertion, pop and stop rule by hand; the compiled search equals the
plain-Python reference (rtc/search/reference.py) field by field; the paged KV cache equals the dense one.

The random policy is tests/test_search_reference.py's (test-tiny, vocabulary 64, untied output layer scaled
x12): it emits the delimiter (50) often and the stop ids (2, 10) often enough that paths finish early.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.sampling.rules import SamplingRule
from rtc.search import best_first, runner
from rtc.search import reference_best_first as reference
from rtc.search.config import SearchConfig

VOCAB, STOPS, DELIM = 64, (2, 10), 50
PROMPTS = np.array([[1, 5, 6, 7, 0, 0, 0, 0], [1, 9, 10, 11, 12, 13, 14, 0]], np.int32)  # i32[B, P]
LENGTHS = np.array([4, 7], np.int32)
GREEDY, SAMPLED = SamplingRule(temperature=0.0), SamplingRule(temperature=1.0)
INF = float("inf")


@pytest.fixture(scope="module")
def models():
    config = model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128, tie_embeddings=False)
    policy = Model(config)
    params = policy.init_params(jax.random.key(0))
    params = {**params, "lm_head": params["lm_head"] * 12.0}
    verifier = Model(dataclasses.replace(config, tie_embeddings=True, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    return policy, params, verifier, vparams


def config(**overrides) -> SearchConfig:
    fields = dict(
        strategy="best_first",
        n=4,
        m=2,
        depth=6,
        step_tokens=5,
        stop_ids=STOPS,
        delimiter_id=DELIM,
        rule=SAMPLED,
    )
    return SearchConfig(**{**fields, **overrides})


# Three problems, F = 4 slots, M = 2 children each:
# 0: room for both: kept slots 0, 2 stay; the children fill the free slots 1 and 3 in order.
# 1: full: 0.9 (child 1), 0.7, 0.5 are kept, then 0.3 ties between slot 1 and child 0: the slot wins;
#    slot 3 (0.2) is evicted and child 1 takes it; child 0 is dropped.
# 2: both children are below every kept slot of a full frontier: dropped, nothing moves.
FRONTIER = [[0.5, -INF, 0.7, -INF], [0.5, 0.3, 0.7, 0.2], [0.4, 0.8, 0.6, 0.5]]
CHILDREN = [[0.6, 0.1], [0.3, 0.9], [0.1, 0.2]]
KEPT = [[0.5, 0.6, 0.7, 0.1], [0.5, 0.3, 0.7, 0.9], [0.4, 0.8, 0.6, 0.5]]
DEST = [[1, 3], [4, 3], [4, 4]]


def test_insert_by_hand():
    priority, dest = best_first.insert(jnp.array(FRONTIER), jnp.array(CHILDREN))
    np.testing.assert_allclose(priority, KEPT)
    np.testing.assert_array_equal(dest, DEST)
    for b in range(3):  # the reference's rule is the same
        kept, ref_dest = reference.frontier_insert(FRONTIER[b], CHILDREN[b])
        assert ref_dest == DEST[b]
        assert kept == [p > -INF and s not in ref_dest for s, p in enumerate(FRONTIER[b])]


def test_equal_children_fill_free_slots_in_order_and_empty_children_never_enter():
    priority, dest = best_first.insert(jnp.array([[0.9, -INF, -INF]]), jnp.array([[0.4, 0.4]]))
    np.testing.assert_allclose(priority, [[0.9, 0.4, 0.4]])
    np.testing.assert_array_equal(dest, [[1, 2]])
    priority, dest = best_first.insert(jnp.array([[0.9, -INF, -INF]]), jnp.array([[-INF, -INF]]))
    np.testing.assert_allclose(priority, [[0.9, -INF, -INF]])
    np.testing.assert_array_equal(dest, [[3, 3]])


def test_pop_and_stop_rule_by_hand():
    priority = jnp.array([[0.3, 0.5, 0.5], [0.9, 0.5, -INF], [0.4, 0.95, 0.2], [-INF, -INF, -INF]])
    finished = jnp.array([[False] * 3, [True, False, False], [False, True, True], [False] * 3])
    # a tie goes to the lower slot; a finished path is never popped
    np.testing.assert_array_equal(best_first.pop(priority, finished)[:3], [1, 1, 0])
    # over once the best slot is finished (1, 2) or nothing is open (3)
    np.testing.assert_array_equal(best_first.settled(priority, finished), [False, True, True, True])


def both(models, cfg, seed=3):
    """(compiled output as numpy, reference output) on the same inputs."""
    policy, params, verifier, vparams = models
    rng = jax.random.key(seed)
    compiled = best_first.search_best_first(policy, params, verifier, vparams, PROMPTS, LENGTHS, rng, cfg)
    return jax.tree.map(np.asarray, compiled), reference.reference_best_first(
        policy, params, verifier, vparams, PROMPTS, LENGTHS, rng, cfg
    )


CASES = {
    "greedy": dict(rule=GREEDY),
    "sampled": dict(),
    "orm": dict(verifier_kind="orm"),
    "orm-min": dict(verifier_kind="orm", aggregation="min", seed=5),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_equals_reference(models, case):
    fields = dict(CASES[case])
    seed = fields.pop("seed", 3)
    cfg = config(**fields)
    compiled, ref = both(models, cfg, seed)
    used = ~compiled.duplicate
    assert (compiled.tokens == DELIM).any(), "no step ended at the delimiter"
    assert compiled.finished.any(), "no path finished"
    if cfg.rule.greedy:  # the M children of a path are equal: the best one finishes before the depth
        assert compiled.steps < cfg.depth
    else:  # after 3 iterations all 4 slots are full (2, then 1 + 2, then 2 + 2): the 4th evicts or drops
        assert compiled.steps >= 4
    assert (compiled.lengths[used] > 0).all() and (compiled.lengths[~used] == 0).all()
    for field in dataclasses.fields(compiled):
        a, b = getattr(compiled, field.name), getattr(ref, field.name)
        if field.name == "scores":
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=field.name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=field.name)
    # every iteration's tokens were read by the verifier after the prompt
    np.testing.assert_array_equal(compiled.verifier_tokens, compiled.generated_tokens + LENGTHS)


def test_paged_cache_equals_dense(models):
    policy, params, verifier, vparams = models
    paged = lambda model: Model(dataclasses.replace(model.config, kv_page_size=4))
    prompts = [p[:n].tolist() for p, n in zip(PROMPTS, LENGTHS)]
    cfg, rng = config(), jax.random.key(3)
    dense = runner.run(policy, params, verifier, vparams, prompts, rng, cfg)
    out = runner.run(paged(policy), params, paged(verifier), vparams, prompts, rng, cfg)
    assert dense.steps >= 4 and dense.finished.any()
    for name in ("tokens", "lengths", "finished", "duplicate", "best", "generated_tokens", "verifier_tokens"):
        np.testing.assert_array_equal(getattr(out, name), getattr(dense, name), err_msg=name)
    np.testing.assert_allclose(out.scores, dense.scores, atol=1e-5)


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="M must be <= N"):
        config(n=2, m=3)
    with pytest.raises(ConfigError, match="lookahead must be 0"):
        config(lookahead=1)
    config(n=3, m=2)  # a frontier need not be a multiple of M
