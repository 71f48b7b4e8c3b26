"""The paged KV cache: copy-on-write by hand, invariants under any sequence of operations, and every user of
the cache (sampler, token beam search, each search strategy) emitting exactly what it emits with the dense
cache."""

import dataclasses

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config, paged_attention, paged_cache
from rtc.sampling import beam_search, sampler
from rtc.sampling.rules import SamplingRule
from rtc.search import runner
from rtc.search.config import SearchConfig

PS = 4  # page size


def empty(rows, slots, pages=None):
    """A one-layer paged cache with one head of width 1, so a slot's key is one number."""
    return paged_cache.init(1, 1, 1, rows, slots, PS, pages)


def write(cache, values):
    """`values: f[B, T]` written at each row's index, as the model writes keys (and values)."""
    plan = paged_cache.plan_write(cache, values.shape[1])
    new = jnp.asarray(values, jnp.float32)[:, None, :, None]  # [B, 1, T, 1]
    layer = {"k": paged_cache.write(cache["layers"][0]["k"], new, plan), "v": cache["layers"][0]["v"]}
    return paged_cache.after_write(cache, [layer], plan, values.shape[1]), plan


def keys(cache):
    """f32[B, W * ps]: every row's slots read through its page table."""
    return np.asarray(paged_attention.gather(cache["layers"][0]["k"], cache["pages"]))[:, 0, :, 0]


def test_fork_shares_full_pages_and_copies_the_partial_one_by_hand():
    cache, _ = write(empty(1, 16, pages=8), np.arange(1, 7)[None])  # slots 0-5: pages 0 (full), 1 (2 of 4)
    np.testing.assert_array_equal(np.asarray(cache["pages"]), [[0, 1, -1, -1]])
    cache = paged_cache.reorder(cache, jnp.array([0, 0, 0]))  # three branches
    assert int(paged_cache.pages_in_use(cache)) == 2
    cache, plan = write(cache, np.array([[10], [20], [30]]))  # each writes slot 6, in shared page 1
    # every row naming page 1 writes into it: row 0 keeps it, rows 1 and 2 get copies (pages 2, 3)
    np.testing.assert_array_equal(
        np.asarray(cache["pages"]), [[0, 1, -1, -1], [0, 2, -1, -1], [0, 3, -1, -1]]
    )
    np.testing.assert_array_equal(np.asarray(plan.copy_src)[:2], [1, 1])
    np.testing.assert_array_equal(np.asarray(plan.copy_dst)[:2], [2, 3])
    got = keys(cache)[:, :7]
    np.testing.assert_array_equal(got, [[1, 2, 3, 4, 5, 6, v] for v in (10, 20, 30)])
    assert int(cache["peak"]) == 4 and not bool(cache["overflow"])


def test_a_row_outside_the_cache_pins_its_pages():
    cache, _ = write(empty(1, 16, pages=8), np.arange(1, 7)[None])
    rows, rest = paged_cache.split_rows(cache)
    child = {**paged_cache.pin(rest, rows["pages"]), **rows}  # a copy of a node that stays elsewhere
    child, _ = write(child, np.array([[9]]))
    assert int(child["pages"][0, 1]) != 1  # wrote into a copy: the pinned node's page 1 is untouched
    np.testing.assert_array_equal(keys({**child, "pages": rows["pages"]})[0, :6], [1, 2, 3, 4, 5, 6])


def test_fresh_pages_and_overflow():
    cache, _ = write(empty(2, 16, pages=3), np.ones((2, 5)))  # 2 pages a row, 3 in the pool
    assert bool(cache["overflow"])
    cache, _ = write(empty(2, 16, pages=4), np.ones((2, 5)))
    assert not bool(cache["overflow"]) and int(cache["peak"]) == 4


def test_dropping_rows_frees_their_pages():
    cache, _ = write(empty(4, 16), np.arange(4 * 9).reshape(4, 9))  # 3 pages a row
    assert int(paged_cache.pages_in_use(cache)) == 12
    cache = paged_cache.reorder(cache, jnp.array([2, 2, 2, 2]))
    assert int(paged_cache.pages_in_use(cache)) == 3


# A random sequence of operations on the paged cache against a dense reference of every row's slots.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 6)),
        st.tuples(st.just("reorder"), st.lists(st.integers(0, 3), min_size=4, max_size=4)),
    ),
    min_size=1,
    max_size=10,
)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(ops=OPS, first=st.integers(1, 7))
def test_any_sequence_of_writes_and_forks_matches_a_dense_cache(ops, first):
    rows, slots = 4, first + 6 * 10
    # rows forked from 1 prompt, each writing at most 60 more slots: the bound the sampler sizes pools by
    cache = empty(rows, slots, paged_cache.pool_pages(1, first, rows, 60, PS))
    cache, _ = write(cache, np.full((rows, first), 7.0))
    dense = np.zeros((rows, slots), np.float32)
    dense[:, :first] = 7.0
    counter = 100.0
    for op, arg in ops:
        if op == "write":
            values = counter + np.arange(rows * arg, dtype=np.float32).reshape(rows, arg)
            counter += rows * arg
            index = np.asarray(cache["index"])
            cache, plan = write(cache, values)
            for r in range(rows):
                dense[r, index[r] : index[r] + arg] = values[r]
            # nothing written this call lands in a page another row names
            written = np.asarray(plan.page_ids).reshape(-1)
            tables = np.asarray(cache["pages"])
            for page in set(written.tolist()):
                assert sum(page in tables[r] for r in range(rows)) == 1, "a written page is shared"
        else:
            cache = paged_cache.reorder(cache, jnp.array(arg))
            dense = dense[arg]
        index = np.asarray(cache["index"])
        got = keys(cache)
        for r in range(rows):
            np.testing.assert_array_equal(got[r, : index[r]], dense[r, : index[r]])
        tables = np.asarray(cache["pages"])
        named = set(tables[tables >= 0].tolist())
        assert int(paged_cache.pages_in_use(cache)) == len(named)  # nothing leaked
        assert not bool(cache["overflow"])


VOCAB, STOP, DELIM = 12, 2, 3
PROMPTS = [[1, 6, 7, 8], [1, 9, 10, 11, 6, 7, 8]]


def paged(model: Model, page_size: int = PS) -> Model:
    return Model(dataclasses.replace(model.config, kv_page_size=page_size))


@pytest.fixture(scope="module")
def models():
    policy = Model(model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128))
    params = policy.init_params(jax.random.key(0))
    verifier = Model(dataclasses.replace(policy.config, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    return policy, params, verifier, vparams


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampler_paged_equals_dense(models, temperature):
    policy, params, _, _ = models
    cfg = sampler.SamplerConfig(
        max_new_tokens=24, stop_ids=(STOP,), rule=SamplingRule(temperature=temperature), cache_phases=2
    )
    group = 3  # rows come in runs of 3 samples of one prompt, as GRPO's groups
    prompts = [p for p in PROMPTS + [[5, 4, 3, 2, 1, 6, 7, 8, 9]] for _ in range(group)]
    tokens, lengths = sampler.pad_prompts(prompts, 0, cfg.max_new_tokens, 128)
    run = lambda model, g: sampler.sample(
        model, params, tokens, lengths, jax.random.key(4), cfg=cfg, stream=None, cache_dtype=jnp.float32,
        batch_sharding=None, group=g,
    )  # fmt: skip
    dense = run(policy, 1)
    assert len(set(map(tuple, sampler.completions(dense)))) > 3 or temperature == 0.0
    for out in (run(paged(policy), 1), run(paged(policy), group), run(paged(policy, 16), group)):
        peak, pool, overflow = np.asarray(out.kv_pages).tolist()
        assert 0 < peak <= pool and not overflow
        np.testing.assert_array_equal(out.tokens, dense.tokens)
        np.testing.assert_allclose(out.logprobs, dense.logprobs, atol=1e-5)


def test_token_beam_search_paged_equals_dense(models):
    policy, params, _, _ = models
    cfg = beam_search.BeamSearchConfig(num_beams=3, max_new_tokens=12, stop_ids=(STOP,), pad_id=0)
    dense = beam_search.beam_search(policy, params, PROMPTS, cfg)
    out = beam_search.beam_search(paged(policy), params, PROMPTS, cfg)
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(dense)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize(
    "strategy, extra",
    [("best_of_n", {}), ("beam", {}), ("beam", {"lookahead": 1}), ("dvts", {}), ("mcts", {})],
)
def test_every_search_strategy_paged_equals_dense(models, strategy, extra):
    policy, params, verifier, vparams = models
    cfg = SearchConfig(
        strategy=strategy, n=4, m=2, depth=4, step_tokens=5, stop_ids=(STOP,), delimiter_id=DELIM,
        rule=SamplingRule(temperature=1.0), **extra,
    )  # fmt: skip
    dense = runner.run(policy, params, verifier, vparams, PROMPTS, jax.random.key(3), cfg)
    out = runner.run(paged(policy), params, paged(verifier), vparams, PROMPTS, jax.random.key(3), cfg)
    assert (np.asarray(dense.tokens) == DELIM).any()
    np.testing.assert_array_equal(out.tokens, dense.tokens)
    np.testing.assert_allclose(out.scores, dense.scores, atol=1e-5)
    np.testing.assert_array_equal(out.generated_tokens, dense.generated_tokens)


def test_pool_bound_at_sixteen_branches_of_a_long_prompt():
    """16 samples of a 1,024-token prompt writing 256 tokens each: the pool holds the prompt once."""
    dense_pages = 16 * paged_cache.pages_per_row(1024 + 256, 16)
    pool = paged_cache.pool_pages(1, 1024, 16, 256, 16)
    assert (dense_pages, pool) == (1280, 64 + 16 * 17)
    assert dense_pages / pool > 3.8


def test_bad_page_size_is_named():
    with pytest.raises(ConfigError, match="kv_page_size"):
        model_config("test-tiny", kv_page_size=-1)


def test_shared_prefix_attention_equals_attention_over_whole_rows():
    """Two runs of three rows; each run shares a 2-page prefix (one of 7 slots: its last page partial)."""
    ps, hkv, d, h, t = PS, 2, 8, 4, 2
    keys_ = jax.random.split(jax.random.key(0), 3)
    pool_k, pool_v = (jax.random.normal(k, (20, hkv, ps, d)) for k in keys_[:2])
    q = jax.random.normal(keys_[2], (6, h, t, d))
    prefix_pages = jnp.array([[0, 1], [2, 3]])  # run 0: slots 0-7 full; run 1: 7 slots, page 3 partial
    lengths = jnp.array([8, 7])
    own = jnp.array([[4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]])
    pages = jnp.concatenate([jnp.repeat(prefix_pages, 3, axis=0), own, jnp.full((6, 1), -1)], axis=1)
    # run 1's rows own a copy of the partial page 3 (copy-on-write), at column 1
    pages = pages.at[3:, 1].set(jnp.array([16, 17, 18]))
    index = jnp.repeat(lengths, 3) + jnp.array([3, 5, 6, 1, 4, 8])
    query_slots = index[:, None] + jnp.arange(t)[None, :]
    prefix = paged_attention.share_prefix(prefix_pages, lengths, 8, ps)
    assert prefix["prefix_len"].tolist() == [8, 4]  # full pages only: run 1's partial page is each row's own
    want = paged_attention.attend(q, pool_k, pool_v, pages, query_slots)
    got = paged_attention.attend(q, pool_k, pool_v, pages, query_slots, prefix)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_attention_in_the_tpu_kernel_layout_equals_the_reference():
    from jax.experimental.pallas.ops.tpu.ragged_paged_attention import kernel

    ps, hkv, d, h, t = PS, 2, 8, 4, 3
    keys_ = jax.random.split(jax.random.key(1), 3)
    pool_k, pool_v = (jax.random.normal(k, (12, hkv, ps, d)) for k in keys_[:2])
    q = jax.random.normal(keys_[2], (3, h, t, d))
    pages = jnp.array([[0, 1, 2, -1], [3, 4, 5, 6], [7, 8, -1, -1]])
    query_slots = jnp.array([5, 12, 4])[:, None] + jnp.arange(t)[None, :]
    want = paged_attention.attend(q, pool_k, pool_v, pages, query_slots)
    got = paged_attention.attend_ragged(
        q, pool_k, pool_v, pages, query_slots, kernel.ref_ragged_paged_attention
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
