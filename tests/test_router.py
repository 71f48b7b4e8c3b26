"""The difficulty predictor read from the prompt, and samples allocated by it under a counted budget."""

import json

import jax
import numpy as np
import pytest

from rtc.analysis import allocation
from rtc.analysis import difficulty
from rtc.model.config import PRESETS, model_config
from rtc.model.transformer import Model


def test_ridge_head_by_hand():
    # one feature 0..3, targets 0, .2, .4, .6: standardised z = (x - 1.5) / sqrt(1.25), sum z^2 = 4,
    # sum z (y - ybar) = 1 / sqrt(1.25); ridge 4 halves w: w = (1 / sqrt(1.25)) / 8
    x = np.arange(4.0)[:, None]
    y = np.array([0.0, 0.2, 0.4, 0.6])
    exact = difficulty.fit_ridge(x, y, 0.0)
    np.testing.assert_allclose(exact.predict(x), y, atol=1e-12)
    shrunk = difficulty.fit_ridge(x, y, 4.0)
    np.testing.assert_allclose(shrunk.weights, [1 / np.sqrt(1.25) / 8])
    np.testing.assert_allclose(shrunk.predict(np.array([[3.0]])), [0.45])  # 0.3 + 0.15
    np.testing.assert_allclose(exact.predict(np.array([[-10.0], [10.0]])), [0.0, 1.0])  # clipped
    assert exact.flops == 4.0


def test_head_json_round_trip():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.random(30)
    head = difficulty.fit_ridge(x, y, 2.0)
    back = difficulty.DifficultyHead.from_json(head.to_json())
    np.testing.assert_array_equal(back.predict(x), head.predict(x))
    assert back.ridge == 2.0


def test_choose_ridge_follows_the_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 20))
    linear = np.clip(0.5 + 0.1 * x[:, 0], 0, 1)  # a clean signal: the smallest ridge wins
    assert difficulty.choose_ridge(x, linear, (0.01, 1e4), 5, rng)[0] == 0.01
    noise = rng.random(200)  # nothing to learn: the strongest shrinkage wins
    ridge, errors = difficulty.choose_ridge(x, noise, (0.01, 1e4), 5, rng)
    assert ridge == 1e4 and errors[1e4] < errors[0.01]


@pytest.fixture(scope="module")
def tiny_policy():
    config = model_config("test-tiny", vocab_size=64)
    model = Model(config)
    return model, model.init_params(jax.random.key(0))


def test_prompt_features_are_what_the_output_layer_reads(tiny_policy):
    model, params = tiny_policy
    short, long = [1, 5, 9], [1, 7, 7, 3, 2, 8]
    features = difficulty.prompt_features(model, params, [short, long], batch_size=4)  # f32[2, 2E]
    e = model.config.embed_dim
    assert features.shape == (2, 2 * e)
    # the last prompt token's state times the tied embedding is the model's next-token logits there
    logits, _, _ = model.apply(params, np.array([short]), np.arange(3)[None])
    np.testing.assert_allclose(features[0, e:] @ params["embedding"].T, logits[0, -1], rtol=1e-4, atol=1e-4)
    # padding after a prompt changes nothing: alone, or batched beside a longer one
    alone = difficulty.prompt_features(model, params, [short], batch_size=1)
    np.testing.assert_allclose(alone[0], features[0], rtol=1e-5, atol=1e-6)


def test_predictor_flops_count_the_prefill_and_the_head(tiny_policy):
    model, _ = tiny_policy
    head = difficulty.fit_ridge(np.arange(6.0).reshape(3, 2), np.array([0.1, 0.5, 0.9]), 1.0)
    # a prompt of 3 tokens: its tokens attend to 1, 2 and 3 keys, so 3 x flops_per_token(2); the head 4F
    expected = 3 * model.config.flops_per_token(2) + 4 * 2
    np.testing.assert_allclose(difficulty.predictor_flops(model.config, [3], head), [expected])


# Two bins of two questions each. Bin 0 is hopeless under either option; bin 1 gains from the
# expensive one. Options cost 1 and 4 FLOPs per question.
ACC = np.array([[0.0, 0.0], [0.0, 0.0], [0.5, 1.0], [0.5, 1.0]])
COST = np.array([[1.0, 4.0]] * 4)
BINS = np.array([0, 0, 1, 1])


def test_allocate_spends_where_it_pays():
    # (0, 1): mean cost (1 + 1 + 4 + 4) / 4 = 2.5, accuracy 0.5; (1, 0) costs as much for 0.25
    np.testing.assert_array_equal(allocation.allocate(ACC, COST, BINS, 2, 2.5), [0, 1])
    # at budget 4, (1, 1) also scores 0.5: the tie goes to the cheaper (0, 1)
    np.testing.assert_array_equal(allocation.allocate(ACC, COST, BINS, 2, 4.0), [0, 1])
    np.testing.assert_array_equal(allocation.allocate(ACC, COST, BINS, 2, 2.0), [0, 0])
    np.testing.assert_array_equal(allocation.allocate(ACC, COST, BINS, 2, 0.5), [0, 0])  # nothing fits


def test_the_predictor_is_paid_inside_the_budget():
    rng = np.random.default_rng(0)
    free = allocation.cross_validated(ACC, COST, BINS, 2, 2.5, rng)
    assert free[0].mean() == 0.5 and free[1].mean() == 2.5
    # reading difficulty costs 0.5 per question: (0, 1) now costs 3.0 > 2.5, so only (0, 0) fits
    acc, cost = allocation.cross_validated(ACC, COST, BINS, 2, 2.5, rng, predictor_cost=np.full(4, 0.5))
    assert acc.mean() == 0.25
    np.testing.assert_allclose(cost, 1.5)  # the option's 1 plus the predictor's 0.5


def test_cross_validation_scores_each_half_with_the_other_halfs_fit():
    # bin 0's best option is 1 in questions 0-1 and 0 in questions 2-3: with halves {0, 2} and {1, 3}
    # each question is scored by a fit that saw one question of each kind, so the fit is a tie -> cheaper
    acc = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    bins = np.zeros(4, int)
    rng = np.random.default_rng(3)
    order = np.random.default_rng(3).permutation(4)
    got, _ = allocation.cross_validated(acc, COST, bins, 1, 4.0, rng)
    for fit, score in ((np.sort(order[:2]), np.sort(order[2:])), (np.sort(order[2:]), np.sort(order[:2]))):
        choice = allocation.allocate(acc[fit], COST[fit], bins[fit], 1, 4.0)
        np.testing.assert_array_equal(got[score], acc[score, choice[0]])


def test_random_routing_is_the_upper_hull_of_uniform_options():
    acc = np.array([[0.2, 0.25, 0.8], [0.2, 0.25, 0.8]])
    cost = np.array([[1.0, 2.0, 4.0]] * 2)
    # at budget 2 mixing N=1 and N=4 with t = 1/3 scores 0.2 + 0.6 / 3 = 0.4 > the middle option's 0.25
    per_question, mean_cost = allocation.random_routing(acc, cost, 2.0)
    np.testing.assert_allclose(per_question, [0.4, 0.4])
    assert mean_cost == pytest.approx(2.0)
    np.testing.assert_allclose(allocation.random_routing(acc, cost, 8.0)[0], [0.8, 0.8])
    np.testing.assert_allclose(allocation.random_routing(acc, cost, 0.5)[0], [0.2, 0.2])  # below every option
    # on the hand example: half of the questions at each option, per question 0.5 acc0 + 0.5 acc1
    per_question, mean_cost = allocation.random_routing(ACC, COST, 2.5)
    np.testing.assert_allclose(per_question, [0.0, 0.0, 0.75, 0.75])
    assert mean_cost == pytest.approx(2.5)


def test_random_routing_is_fitted_on_one_half_and_scored_on_the_other():
    # option 1 pays in questions 0-1 only; each half's mixture is fitted on the other half
    acc = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.0], [0.5, 0.0]])
    cost = np.array([[1.0, 2.0]] * 4)
    order = np.random.default_rng(5).permutation(4)
    got, got_cost = allocation.random_routing_cross_validated(acc, cost, 1.5, np.random.default_rng(5))
    for fit, score in ((np.sort(order[:2]), np.sort(order[2:])), (np.sort(order[2:]), np.sort(order[:2]))):
        mix = allocation.mixture(acc[fit].mean(axis=0), cost[fit].mean(axis=0), 1.5)
        assert abs(sum(mix.values()) - 1) < 1e-12
        np.testing.assert_allclose(got[score], sum(w * acc[score, k] for k, w in mix.items()))
        np.testing.assert_allclose(got_cost[score], sum(w * cost[score, k] for k, w in mix.items()))
    assert allocation.mixture(np.array([0.2, 0.8]), np.array([1.0, 2.0]), 1.5) == {0: 0.5, 1: 0.5}


def test_cost_to_reach():
    points = [(1.0, 0.3), (2.0, 0.35), (4.0, 0.36), (3.0, 0.36)]
    assert allocation.cost_to_reach(points, 0.36) == 3.0
    assert allocation.cost_to_reach(points, 0.5) is None


def test_checker_scores_of_reads_each_answer_after_its_prompt(tiny_policy):
    """The checker's score of a pooled answer is its probability of exactly that answer's tokens, read
    after the answer's own prompt: padding and the slot's unused tail are not read."""
    import jax.numpy as jnp

    from experiments import router
    from rtc.rewards.self_check import token_logprobs

    model, params = tiny_policy
    prompts = [[1, 5, 6], [1, 7]]
    pool = {
        "tokens": np.array([[[8, 9, 3, 4], [10, 2, 2, 2]], [[11, 12, 5, 5], [13, 14, 15, 6]]], np.int32),
        "lengths": np.array([[3, 1], [2, 3]], np.int32),
    }
    got = router.checker_scores_of((model, params), prompts, pool, pad_id=0, batch_size=3)  # f32[2, 2]
    for i, prompt in enumerate(prompts):
        for j in range(2):
            ids = prompt + pool["tokens"][i, j, : pool["lengths"][i, j]].tolist()
            logp = np.asarray(token_logprobs(model, params, jnp.asarray([ids])))[0]
            np.testing.assert_allclose(got[i, j], np.exp(logp[len(prompt) :].sum()), rtol=1e-4)


def test_router_experiment_end_to_end(tmp_path, monkeypatch, data_dir):
    """One command trains the tiny policy, fits the head on sampled pass rates, and writes router.*, its
    routers' costs including the predictor's."""
    from experiments import router
    from helpers import quickstart_config

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    monkeypatch.setattr(router, "load_config", lambda workdir, variant="": config)
    argv = ["--workdir", str(tmp_path), "--out", str(tmp_path / "out"), "--tiny", "--problems=8"]
    argv += [
        "--samples=4",
        "--train_problems=12",
        "--train_samples=2",
        "--bins=2",
        "--draws=4",
        "--bootstrap=20",
    ]
    results = router.main(argv)
    assert (tmp_path / "sft" / "checkpoints").is_dir()
    assert len(list(tmp_path.glob("pool_*.npz"))) == 1 and len(list(tmp_path.glob("train_pool_*.json"))) == 1
    head = difficulty.DifficultyHead.from_json((tmp_path / "difficulty_head.json").read_text())
    assert head.ridge in router.RIDGE_GRID and len(head.weights) == 2 * PRESETS["test-tiny"]["embed_dim"]
    curves = results["curves"]
    assert [p["budget"] for p in curves["random routing"]] == [1, 1.5, 2, 3, 4]
    # uniform majority at N costs N samples; the learned router pays for its prefill within each budget
    assert [round(p["cost"], 6) for p in curves["uniform majority"]] == [1, 2, 4]
    assert results["predictor_cost_in_samples"] > 0
    for p in curves["learned router"]:  # at budget 1 nothing fits: one sample plus the predictor
        assert p["cost"] >= 1 + results["predictor_cost_in_samples"] - 1e-9
        assert p["cost"] <= p["budget"] + 1e-9 or p["budget"] == 1
    text = (tmp_path / "out" / "router.md").read_text()
    assert text.startswith("arithmetic, 8 held-out problems x 4 samples") and "| 4 | " in text
    assert (tmp_path / "out" / "router.png").read_bytes()[:4] == b"\x89PNG"
    # a second run reads the kept samples back and reaches the same numbers
    monkeypatch.setattr(router, "run_chunks", None)  # sampling again would fail
    again = router.main([*argv, "--policy", str(tmp_path / "sft")])
    assert again["curves"] == results["curves"]
    assert json.dumps(again["quality"]) == json.dumps(results["quality"])  # NaN (all wrong) prints alike
    # a checker adds best-of-N by its score; the policy checking itself pays one more pass per answer
    checked = router.main([*argv, "--policy", str(tmp_path / "sft"), "--checker", str(tmp_path / "sft")])
    uniform = checked["curves"]["uniform best-of-N (checker)"]
    assert [round(p["cost"], 6) for p in uniform] == [2, 4, 8]
    for name in ("uniform majority", "uniform best-of-N (confidence)"):  # drawn before the checker's
        assert [p["accuracy"][0] for p in checked["curves"][name]] == [
            p["accuracy"][0] for p in results["curves"][name]
        ]
    assert "best-of-N (checker)" in (tmp_path / "out" / "router.md").read_text()


def test_the_serving_router_reads_the_learned_head(tiny_policy, tmp_path):
    import types

    import ml_collections

    from rtc.errors import ConfigError
    from rtc.serve.router import Router

    model, params = tiny_policy
    prompts = [[1, 5, 9], [1, 7, 7, 3, 2, 8], [1, 2], [1, 4, 4, 4]]
    features = difficulty.prompt_features(model, params, prompts)
    head = difficulty.fit_ridge(features, np.array([0.9, 0.1, 0.8, 0.3]), 1.0)
    (tmp_path / "difficulty_head.json").write_text(head.to_json())
    block = ml_collections.ConfigDict(
        dict(predictor="learned", threshold=0.5, fast_path="low", length_scale=32, head=None)
    )
    with pytest.raises(ConfigError, match="router.head"):
        Router.from_config(block, types.SimpleNamespace(model=model, params=params))
    block.head = str(tmp_path / "difficulty_head.json")
    router = Router.from_config(block, types.SimpleNamespace(model=model, params=params))
    for ids, rate in zip(prompts, head.predict(features)):
        route = router.route("", ids)
        assert route.difficulty == pytest.approx(1 - rate, abs=1e-4)
        assert route.path == ("fast" if 1 - rate < 0.5 else "full")
