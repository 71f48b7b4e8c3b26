"""Hard negatives: gold chains with one slip carried through, labelled by hand."""

import json

import numpy as np
import pytest

from rtc.data import arithmetic
from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.rewards import hard_negatives, rm_data
from rtc.rewards.step_labels import ExactLabeler


def test_chain_steps_with_each_kind_of_slip_by_hand():
    operands, operators = [37, 8, 4, 12], ["+", "*", "-"]
    assert arithmetic.chain_steps(operands, operators) == [("8*4=32", 32), ("37+32=69", 69), ("69-12=57", 57)]
    # the product slips by +10 (42 for 32); both later steps are right given 42
    slipped = arithmetic.chain_steps(operands, operators, arithmetic.Mistake(0, "value", 10))
    assert [t for t, _ in slipped] == ["8*4=42", "37+42=79", "79-12=67"]
    # the second step misreads 32 as 30 (delta -2 on its right operand) and adds correctly
    misread = arithmetic.chain_steps(operands, operators, arithmetic.Mistake(1, "operand", -2))
    assert [t for t, _ in misread] == ["8*4=32", "37+30=67", "67-12=55"]
    # the sample's own slip: 90*1 read as 90*5
    assert arithmetic.chain_steps([18, 5, 1], ["*", "*"], arithmetic.Mistake(1, "operand", 4)) == [
        ("18*5=90", 90),
        ("90*5=450", 450),
    ]


def test_sampled_mistakes_are_real_slips():
    rng = np.random.default_rng(0)
    operands, operators = [7, 3, 0, 2], ["-", "*", "+"]  # steps: 3*0=0, 7-0=7, 7+2=9
    gold = arithmetic.gold_steps(operands, operators)
    kinds = set()
    for _ in range(200):
        mistake = hard_negatives.sample_mistake(rng, operands, operators)
        kinds.add(mistake.kind)
        assert 0 <= mistake.step < 3 and mistake.delta != 0
        steps = arithmetic.chain_steps(operands, operators, mistake)
        assert steps[: mistake.step] == gold[: mistake.step]  # the chain is gold up to the slip
        assert steps[mistake.step][1] != gold[mistake.step][1] or mistake.kind == "operand"
        if mistake.kind == "operand":
            assert hard_negatives.right_operand(steps[mistake.step][0]) >= 0
    assert kinds == {"value", "operand"}


def test_slipped_solutions_get_exact_and_outcome_labels(tokenizer):
    # 3*2=6, 6*0=0: a slip in the first product is wiped out by *0, so the answer stays right
    record = arithmetic.make_record([3, 2, 0], ["*", "*"], level=2)
    slip_first = hard_negatives.slipped_record(record, arithmetic.Mistake(0, "value", 1))
    slip_last = hard_negatives.slipped_record(record, arithmetic.Mistake(1, "value", -1))
    assert slip_first["steps"] == ["3*2=7", "7*0=0"] and slip_first["answer"] == "0"
    assert slip_last["steps"] == ["3*2=6", "6*0=-1"] and slip_last["answer"] == "-1"
    solutions = [hard_negatives.chain_solution(tokenizer, record, w) for w in (record, slip_first, slip_last)]
    assert all(s.completion_ids[-1] == tokenizer.eos_id for s in solutions)
    labelled = ExactLabeler(tokenizer, tokenizer.step_id, (tokenizer.think_start_id,))(solutions)
    assert [list(labels) for labels in labelled.labels] == [[1, 1], [0, 0], [1, 0]]
    outcomes = rm_data.outcome_labels(get_task("arithmetic"), tokenizer, solutions)
    assert outcomes.tolist() == [1, 1, 0]  # right answer, wrong steps: only the step labels can tell


def test_gold_then_slipped_copies_per_problem(tokenizer):
    records = [arithmetic.make_record([4, 5, 6], ["+", "*"]), arithmetic.make_record([9, 9], ["-"])]
    solutions = hard_negatives.hard_negative_solutions(tokenizer, records, 2, np.random.default_rng(1))
    assert [s.record["question"] for s in solutions] == [records[0]["question"]] * 3 + [
        records[1]["question"]
    ] * 3
    texts = [tokenizer.decode(s.completion_ids) for s in solutions]
    assert "5*6=30" in texts[0] and "4+30=34" in texts[0]
    assert all(t != texts[0] for t in texts[1:3]) and all(t != texts[3] for t in texts[4:6])
    arrays = rm_data.encode_solutions(solutions, 64, tokenizer.pad_id)
    assert arrays["tokens"].shape == (6, 64)


def test_a_record_without_operands_is_named(tokenizer):
    record = {"question": "What is 2+2?", "steps": ["2+2=4"], "answer": "4", "meta": json.dumps({})}
    with pytest.raises(ConfigError, match="What is 2"):
        hard_negatives.hard_negative_solutions(tokenizer, [record], 1, np.random.default_rng(0))
