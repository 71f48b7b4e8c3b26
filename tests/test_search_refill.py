"""Best-of-N through slot refill (rtc/search/refill_search.py): each path scores as the plain-Python
reference re-scores it, the verifier's step readings equal the step-level search's, and the paths do not
depend on how many rows a problem has."""

import dataclasses
import types

import jax
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.search import reference, runner
from rtc.search import scores as scores_lib
from rtc.search.refill_search import check_one_device, score_paths, search_refill
from rtc.search.tree_search import search
from test_search_reference import LENGTHS, PROMPTS, STOPS, VOCAB, assert_same, config, models  # noqa: F401

REFILL = dict(strategy="best_of_n", m=1, n=4, depth=4, step_tokens=5, slots=2)


def checker_models(models):  # noqa: F811
    policy, params, _, _ = models
    checker = Model(model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128, tie_embeddings=False))
    cparams = checker.init_params(jax.random.key(5))
    return policy, params, checker, {**cparams, "lm_head": cparams["lm_head"] * 6.0}


def verifier_models(models, kind):  # noqa: F811
    """(policy, params, verifier, verifier params) for `verifier_kind=kind`."""
    if kind == "checker":
        return checker_models(models)
    return models if kind in ("prm", "orm") else (models[0], models[1], None, None)


def refilled(models, cfg, seed=3):  # noqa: F811
    policy, params, verifier, vparams = models
    out = search_refill(policy, params, verifier, vparams, PROMPTS, LENGTHS, jax.random.key(seed), cfg)
    return jax.tree.map(np.asarray, out)


def reference_scores(models, out, cfg):  # noqa: F811
    """f32[B, N]: every path re-scored from scratch by `reference.rescore`, its steps `step_tokens` long."""
    width = PROMPTS.shape[1] + cfg.max_path_tokens
    ref_models = reference.Models(*models, rows=PROMPTS.shape[0] * cfg.n, width=width)
    scores = np.zeros(out.lengths.shape, np.float32)
    for b in range(PROMPTS.shape[0]):
        prompt = PROMPTS[b, : LENGTHS[b]].tolist()
        for i in range(cfg.n):
            n = int(out.lengths[b, i])
            ends = tuple(min(c + cfg.step_tokens, n) - 1 for c in range(0, n, cfg.step_tokens))
            beam = reference.Beam(path=tuple(out.tokens[b, i, :n].tolist()), step_ends=ends)
            scores[b, i] = reference.rescore(ref_models, prompt, [beam], [n], cfg)[0].score
    return scores


CASES = {
    "prm-last": dict(verifier_kind="prm"),
    "prm-min": dict(verifier_kind="prm", aggregation="min"),
    "orm-product": dict(verifier_kind="orm", aggregation="product"),
    "self-mean": dict(verifier_kind="self", aggregation="mean"),
    "checker-last": dict(verifier_kind="checker"),
    "prm-mean-5-paths": dict(verifier_kind="prm", aggregation="mean", n=5),  # blocks of 2, 2 and 1 + a pad
}


@pytest.mark.parametrize("case", list(CASES))
def test_refilled_paths_score_as_the_reference_rescores_them(models, case):  # noqa: F811
    cfg = config(**{**REFILL, **CASES[case]})
    chosen = verifier_models(models, cfg.verifier_kind)
    out = refilled(chosen, cfg)
    last = np.take_along_axis(out.tokens, np.maximum(out.lengths - 1, 0)[..., None], axis=2)[..., 0]
    np.testing.assert_array_equal(out.finished, (out.lengths > 0) & np.isin(last, STOPS))
    assert (out.finished & (out.lengths < cfg.max_path_tokens)).any(), "no path finished early"
    assert (out.lengths > cfg.step_tokens).any(), "no path ran past its first step"
    np.testing.assert_allclose(out.scores, reference_scores(chosen, out, cfg), atol=1e-5)
    assert (out.scores > 0).any() and not out.duplicate.any()
    np.testing.assert_array_equal(out.generated_tokens, out.lengths.sum(axis=1))
    read = LENGTHS + out.lengths.sum(axis=1) if chosen[2] is not None else np.zeros(2)
    np.testing.assert_array_equal(out.verifier_tokens, read)
    rank = np.where(out.finished, 2.0, 0.0) + out.scores
    np.testing.assert_array_equal(out.best, rank.argmax(axis=1))
    assert int(out.steps) == -(-out.lengths.max() // cfg.step_tokens)


def test_refilled_paths_do_not_depend_on_the_slot_count(models):  # noqa: F811
    """Two rows per problem taking its four paths in turn, or a row per path: the same search."""
    cfg = config(**REFILL)
    assert_same(refilled(models, cfg), refilled(models, config(**{**REFILL, "slots": 4})))


READINGS = {
    "prm-last": ("prm", None, "last", 0),
    "prm-min-blocks": ("prm", 3, "min", 0),  # 3 rows of 4 per block: made even, 2 and 2
    "orm-product-blocks": ("orm", 1, "product", 0),
    "checker-mean": ("checker", None, "mean", 0),
    "prm-mean-paged": ("prm", 2, "mean", 2),  # pages of 2 tokens: the 8-token prompts are shared
}


@pytest.mark.parametrize("case", list(READINGS))
def test_step_readings_equal_the_step_level_search(models, case):  # noqa: F811
    """The step-level best-of-N's own paths, read whole by `score_paths`, score as that search scored them,
    whether the verifier reads all N paths of a problem at once or a block of them at a time, through a
    dense or a paged cache."""
    kind, rows, aggregation, page_size = READINGS[case]
    policy, params, verifier, vparams = verifier_models(models, kind)
    if page_size:
        verifier = Model(dataclasses.replace(verifier.config, kv_page_size=page_size))
    cfg = config(**{**REFILL, "slots": 0}, verifier_kind=kind, aggregation=aggregation)
    out = search(policy, params, verifier, vparams, PROMPTS, LENGTHS, jax.random.key(4), cfg)
    assert len(np.unique(out.lengths)) > 2, "paths of one length would not test the blocks"
    r = out.lengths.size
    no_logprobs = np.zeros((r, cfg.max_path_tokens), np.float32)
    scores, steps = score_paths(
        verifier, vparams, PROMPTS, LENGTHS, out.tokens.reshape(r, -1), out.lengths.reshape(r),
        no_logprobs, no_logprobs.astype(bool), cfg, rows_per_problem=rows,
    )  # fmt: skip
    score = scores_lib.aggregate(scores, cfg.aggregation).reshape(out.scores.shape)
    np.testing.assert_allclose(score, out.scores, atol=1e-6)
    assert int(steps) == int(out.steps)


def test_the_runner_searches_through_slots(models):  # noqa: F811
    policy, params, verifier, vparams = models
    cfg = config(**REFILL)
    prompts = [PROMPTS[b, : LENGTHS[b]].tolist() for b in range(2)]
    result = runner.run(policy, params, verifier, vparams, prompts, jax.random.key(3), cfg)
    out = refilled(models, cfg)
    np.testing.assert_array_equal(result.tokens, out.tokens)
    np.testing.assert_allclose(result.scores, out.scores, rtol=1e-5)  # prompts padded to another width
    assert (result.flops > 0).all()


def test_slot_refill_settings_are_checked():
    with pytest.raises(ConfigError, match="slot refill is a setting"):
        config(slots=2)  # beam search prunes: its rows move together
    with pytest.raises(ConfigError, match="lookahead=0"):
        config(**REFILL, lookahead=1)
    with pytest.raises(ConfigError, match="one device"):
        check_one_device(types.SimpleNamespace(devices=np.empty(2)))
    check_one_device(types.SimpleNamespace(devices=np.empty(1)))
    check_one_device(None)
