"""The DeepConf experiment's bookkeeping: FLOPs of traces, Countdown vote keys, the equal-FLOPs reading,
and one tiny run of the Countdown task against a second preset (`experiments/deepconf.py`)."""

import json

import numpy as np
import pytest

from experiments import deepconf
from rtc.analysis import confidence_curves
from rtc.data import countdown
from rtc.errors import ConfigError
from rtc.eval import voting
from rtc.model.config import ModelConfig


def test_trace_flops_sums_each_token_over_its_causal_context():
    # 1 layer, e=4, h=k=1, d=2, f=8, vocab 10, tied: per layer 4*3*2 + 2*4 + 3*4*8 + 2*4 = 136,
    # + 10*4 embeddings + 4 final norm = 180 parameters; flops_per_token(c) = 2*180 + 2*2*1*1*2*c = 360 + 8c
    config = ModelConfig(
        vocab_size=10, num_layers=1, embed_dim=4, num_heads=1, num_kv_heads=1, head_dim=2, mlp_dim=8
    )
    assert config.num_params == 180 and config.flops_per_token(1) == 368
    # prompt 3 + generated 2: tokens at positions 1..5 attend to 1..5 keys: 5*360 + 8*(1+2+3+4+5) = 1920
    flops = confidence_curves.trace_flops(config, np.array([[3], [1]]), np.array([[2, 0], [0, 1]]))
    np.testing.assert_allclose(flops, [[1920.0, 3 * 360 + 8 * 6], [368.0, 2 * 360 + 8 * 3]])


def test_countdown_votes_are_keyed_by_value_and_numbers_spent():
    assert countdown.vote_key("25+75") == countdown.vote_key(" 75 + 25") == "100 from 25,75"
    assert countdown.vote_key("(25+75)/4") == "25 from 4,25,75"
    assert countdown.vote_key("7/2") == "7/2 from 2,7"
    assert countdown.vote_key("1/0") == "unparsed: 1/0"
    assert countdown.vote_key("25 from 4") == "unparsed: 25 from 4"
    assert countdown.vote_key(None) is None
    keys = deepconf.VoteKeys("countdown")
    answers = ["75+25", "25+75", "4*25", "50+50", None]
    ids = voting.answer_ids([[keys(a) for a in answers]])
    # the two orders of 25 and 75 are one vote; 4*25 (other numbers) and 50+50 are votes of their own
    np.testing.assert_array_equal(ids, [[0, 0, 1, 2, voting.NO_ANSWER]])
    assert keys.answer["100 from 25,75"] == "75+25"
    # every answer of a key grades alike: numbers [25, 75, 4] and target 100
    record = {"meta": json.dumps({"numbers": [25, 75, 4], "target": 100})}
    graded = [countdown.is_correct(keys.answer[keys.key_of(a)], record) for a in answers[:4]]
    assert graded == [True, True, True, False]  # 50+50 spends a 50 twice
    arithmetic = deepconf.VoteKeys("arithmetic")
    assert arithmetic("42") == "42" and arithmetic.answer == {"42": "42"}


def test_the_equal_flops_table_sets_each_larger_point_against_the_best_cheaper_small_one():
    def p(accuracy, flops):
        return {
            "accuracy": (accuracy, accuracy - 0.1, accuracy + 0.1),
            "tokens": 1.0,
            "seconds": 0.0,
            "flops": flops,
        }

    points = {
        "cpu-small majority": {1: p(0.30, 1e9), 4: p(0.40, 4e9), 8: p(0.42, 8e9)},
        "cpu-small consensus": {4: p(0.40, 3e9)},
        "cpu-medium greedy": {1: p(0.45, 3.5e9)},
        "cpu-medium majority": {1: p(0.41, 2e8)},
    }
    small = {m: v for m, v in points.items() if m.startswith("cpu-small")}
    # within 4.5 GFLOPs: majority@4 and consensus@4 tie at 0.40, consensus is cheaper
    assert confidence_curves.best_within(small, 4.5e9)[:2] == ("cpu-small consensus", 4)
    assert confidence_curves.best_within(small, 0.5e9) is None
    table = confidence_curves.equal_flops_table(points)
    assert "| cpu-medium greedy N=1 | 3.500 | 0.450 | cpu-small consensus N=4 | 3.000 | 0.400 |" in table
    assert "| cpu-medium majority N=1 | 0.200 | 0.410 | none | - | - |" in table
    assert "cpu-small majority N=" not in table


def test_the_token_table_sets_a_refilled_rule_against_refilled_majority():
    def p(tokens):
        return {"accuracy": (0.5, 0.4, 0.6), "tokens": tokens, "seconds": 1.0}

    points = {
        "majority": {8: p(200.0)},
        "majority, refill 4": {8: p(100.0)},
        "deepconf_low": {8: p(150.0)},
        "deepconf_low, refill 4": {8: p(80.0)},
        "consensus, refill 2": {8: p(50.0)},  # no majority of its variant: set against plain majority
    }
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")[4]
        for line in confidence_curves.table(points).splitlines()[2:]
    }
    assert rows == {
        "majority": "1.00",
        "majority, refill 4": "1.00",
        "deepconf_low": "0.75",
        "deepconf_low, refill 4": "0.80",
        "consensus, refill 2": "0.25",
    }


def test_countdown_run_against_a_second_preset_at_equal_flops(tmp_path, monkeypatch, data_dir):
    """One command trains both tiny Countdown policies (the second as cpu-small), runs the small one's
    offline rules and DeepConf-low (with and without slot refill), the larger one's greedy and majority, and writes deepconf_flops.*."""
    from helpers import quickstart_config

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    monkeypatch.setattr(deepconf, "load_config", lambda workdir, variant="": config)
    argv = ["--workdir", str(tmp_path), "--out", str(tmp_path / "out"), "--tiny", "--task=countdown"]
    argv += ["--problems=3", "--budgets=1,4", "--methods=offline,deepconf_low", "--draws=4", "--bootstrap=20"]
    argv += ["--slots=0,1"]  # DeepConf-low also through one row per problem, by slot refill
    with pytest.raises(ConfigError, match="own preset"):
        deepconf.main([*argv, "--larger_preset=test-tiny", "--policy", str(tmp_path)])
    points = deepconf.main([*argv, "--larger-preset=cpu-small"])
    assert config.task.name == "countdown" and (tmp_path / "sft_cpu-small" / "checkpoints").is_dir()
    small = points["test-tiny majority"]
    # offline rules: N traces of the same pool cost N times one trace
    assert small[4]["flops"] == pytest.approx(4 * small[1]["flops"]) and small[1]["flops"] > 0
    assert set(points["test-tiny deepconf_low"]) == {4}  # online rules need N >= 4
    refill = points["test-tiny deepconf_low, refill 1"][4]
    assert refill["traces"] == 4 and refill["seconds"] > 0 and 0 <= refill["stopped"] <= 1
    assert "test-tiny majority(text)" in points
    assert set(points["cpu-small greedy"]) == {1} and set(points["cpu-small majority"]) == {1, 4}
    text = (tmp_path / "out" / "deepconf_flops.md").read_text()
    assert text.startswith("countdown, 3 held-out problems") and "| cpu-small greedy N=1 |" in text
    assert (tmp_path / "out" / "deepconf_flops.png").read_bytes()[:4] == b"\x89PNG"
