"""Tests for the tasks: synthetic generators, real-data readers, answer checks, format, registry."""

import json
import shutil
import socket
from fractions import Fraction
from pathlib import Path

import pytest

from rtc.data import (
    answers,
    arithmetic,
    countdown,
    download,
    gsm8k,
    jsonl,
    math500,
    paths,
    safe_eval,
    splits,
    tasks,
)
from rtc.data.format import completion_text, prompt_text

SHIPPED = Path(__file__).parent / "data"  # 40-line prefixes of GSM8K and MATH-500 (tests/data/README.md)
RECORD_KEYS = {"question", "steps", "step_values", "answer", "difficulty", "meta"}


def _check_record(record):
    assert set(record) == RECORD_KEYS
    assert isinstance(record["question"], str) and isinstance(record["answer"], str)
    assert len(record["steps"]) == len(record["step_values"])
    assert all("\n" not in step for step in record["steps"])
    assert isinstance(record["difficulty"], int) and record["difficulty"] >= 1
    json.loads(record["meta"])


def _check_gold_steps(record):
    """Each `lhs=rhs` step evaluates to its value; the last value is the final result."""
    for step, value in zip(record["steps"], record["step_values"]):
        lhs, rhs = step.split("=")
        assert rhs == value
        assert safe_eval.evaluate(lhs) == int(value)


# Synthetic tasks.


@pytest.mark.parametrize("module", [arithmetic, countdown])
def test_synthetic_is_deterministic_and_order_independent(module):
    first = list(module.generate("train", 30, seed=3))
    assert first == list(module.generate("train", 30, seed=3))
    assert first != list(module.generate("train", 30, seed=4))
    assert module.example("train", 17, seed=3) == first[17]


@pytest.mark.parametrize("module, num_train", [(arithmetic, 3000), (countdown, 1000)])
def test_synthetic_train_and_test_are_disjoint(module, num_train):
    train = {record["question"] for record in module.generate("train", num_train, seed=0)}
    test = {record["question"] for record in module.generate("test", 200, seed=0)}
    assert not train & test


def test_split_assignment():
    assert splits.split_of("Compute 1+1.") in ("train", "test")
    with pytest.raises(ValueError, match="unknown split"):
        list(arithmetic.generate("validation", 1, seed=0))


def test_arithmetic_records():
    records = list(arithmetic.generate("train", 500, seed=0))
    assert [record["difficulty"] for record in records[:10]] == [1, 2, 3, 4, 5] * 2
    for record in records:
        _check_record(record)
        _check_gold_steps(record)
        num_operations, largest = arithmetic.LEVEL_SPECS[record["difficulty"]]
        assert len(record["steps"]) == num_operations
        assert max(json.loads(record["meta"])["operands"]) <= largest
        assert record["step_values"][-1] == record["answer"]
        expression = record["question"].removeprefix("Compute ").removesuffix(".")
        assert safe_eval.evaluate(expression) == int(record["answer"])


def test_arithmetic_gold_steps_by_hand():
    record = arithmetic.make_record([37, 8, 4, 12], ["+", "*", "-"])
    assert record["question"] == "Compute 37+8*4-12."
    assert record["steps"] == ["8*4=32", "37+32=69", "69-12=57"]
    assert record["step_values"] == ["32", "69", "57"]
    assert record["answer"] == "57"


def test_arithmetic_operand_ranges():
    for record in arithmetic.generate("train", 200, seed=1, levels=(3,), max_operand=9, max_multiplier=2):
        meta = json.loads(record["meta"])
        assert record["difficulty"] == 3 and len(meta["operators"]) == arithmetic.LEVEL_SPECS[3][0]
        assert all(0 <= operand <= 9 for operand in meta["operands"])
        for operator, right in zip(meta["operators"], meta["operands"][1:]):
            assert operator != "*" or right <= 2


def test_arithmetic_is_correct():
    record = arithmetic.make_record([2, 3], ["-"])
    assert arithmetic.is_correct("-1", record) and arithmetic.is_correct(" -1 ", record)
    assert not arithmetic.is_correct("1", record)
    assert not arithmetic.is_correct("-1.0", record)
    assert not arithmetic.is_correct(None, record)


def test_countdown_records_are_solvable():
    for record in countdown.generate("train", 300, seed=0):
        _check_record(record)
        _check_gold_steps(record)
        meta = json.loads(record["meta"])
        assert len(meta["numbers"]) == record["difficulty"] + 2
        assert all(1 <= number <= 99 for number in meta["numbers"])
        assert int(record["step_values"][-1]) == meta["target"]
        assert countdown.is_correct(record["answer"], record)
        # The gold answer uses every number exactly once (the checker itself asks only "at most once").
        assert sorted(safe_eval.numbers_used(record["answer"])) == sorted(meta["numbers"])


def _countdown_record(numbers, target):
    return {"meta": json.dumps({"numbers": numbers, "target": target})}


@pytest.mark.parametrize(
    "predicted, correct",
    [
        ("(25+75)/4", True),
        ("4*(75-25)/8", False),  # 8 is not given
        ("(25+75)/4+25-25", False),  # 25 used three times
        ("75/(4-1)", True),  # each number at most once: 1 and 4 once, 25 unused
        ("(25+75)/4+1", False),  # wrong value
        ("25", True),
        ("twenty-five", False),
        ("__import__('os')", False),
        ("(25+75)/(4-4)", False),
        ("25.0", False),
        ("", False),
        (None, False),
    ],
)
def test_countdown_checker(predicted, correct):
    assert countdown.is_correct(predicted, _countdown_record([25, 75, 4, 1], 25)) == correct


def test_countdown_answer_parentheses():
    node = countdown._combine(countdown._Node(7, "7", 3), "-", countdown._Node(2, "3-1", 1))
    assert (node.text, node.value) == ("7-(3-1)", 5)
    node = countdown._combine(countdown._Node(5, "2+3", 1), "*", countdown._Node(4, "4", 3))
    assert (node.text, node.value) == ("(2+3)*4", 20)


# Real data.


def test_data_root_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    monkeypatch.delenv(paths.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.data_root() == tmp_path / "home" / ".cache" / "rtc" / "data"
    monkeypatch.setenv(paths.CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert paths.data_root() == tmp_path / "cache" / "rtc" / "data"
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "mine"))
    assert paths.data_root() == tmp_path / "mine"
    assert not (tmp_path / "cache").exists()  # naming the root creates nothing


def _unused_local_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_missing_real_data_without_network_is_one_clear_line(monkeypatch, tmp_path):
    offline = _unused_local_url()  # nothing listens there: the download fails as it would offline
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    monkeypatch.setenv(download.MIRROR_ENV_VAR, offline)
    with pytest.raises(FileNotFoundError) as error:
        gsm8k.generate("test")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"gsm8k/test.jsonl is not in {tmp_path / 'gsm8k'} and its download from ")
    assert f"{offline}/gsm8k/test.jsonl" in message and "$RTC_DATA_DIR" in message
    with pytest.raises(FileNotFoundError, match=f"math500/test.jsonl is not in {tmp_path / 'math500'}"):
        math500.generate("test")


def test_data_root_copy_is_checked_before_reading(monkeypatch, tmp_path):
    # The shipped prefix is not the published file: read through the data root it is refused, by hash.
    (tmp_path / "gsm8k").mkdir()
    shutil.copyfile(SHIPPED / "gsm8k" / "train.jsonl", tmp_path / "gsm8k" / "train.jsonl")
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    with pytest.raises(download.ChecksumError, match="expected 4166206 bytes, got 23422"):
        gsm8k.generate("train")
    assert len(list(gsm8k.generate("train", data_dir=tmp_path))) == 40  # a folder given is read as it is


def test_gsm8k_first_test_record():
    records = list(gsm8k.generate("test", data_dir=SHIPPED))
    assert len(records) == 40 and len(list(gsm8k.generate("train", data_dir=SHIPPED))) == 40
    record = records[0]
    _check_record(record)
    assert record["question"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert record["steps"] == [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
        "She makes 9 * 2 = $18 every day at the farmer\u2019s market.",
    ]
    assert record["step_values"] == ["9", "18"]
    assert record["answer"] == "18"
    assert record["difficulty"] == 2


def test_gsm8k_all_records(full_data):
    folder = full_data("gsm8k", "train.jsonl", "test.jsonl")
    for split, size, with_commas in (("train", 7473, 79), ("test", 1319, 14)):
        records = list(gsm8k.generate(split))
        assert len(records) == size
        raw_answers = [json.loads(line)["answer"] for line in (folder / f"{split}.jsonl").open()]
        assert sum("," in raw.split("#### ")[-1] for raw in raw_answers) == with_commas
        for record in records:
            assert "<<" not in "".join(record["steps"]) and "," not in record["answer"]
            assert int(record["answer"]) == Fraction(record["answer"])
            assert 1 <= record["difficulty"] <= gsm8k.MAX_DIFFICULTY


def test_gsm8k_parse_record_commas_and_annotations():
    record = gsm8k.parse_record(
        {"question": "q", "answer": "He pays 2*500 = <<2*500=1000>>1,000 dollars.\n\n#### 1,000"}
    )
    assert record["steps"] == ["He pays 2*500 = 1,000 dollars."]
    assert record["step_values"] == ["1000"]
    assert record["answer"] == "1000"


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ('{"question": "q", "answer": "a\\n#### 1"', "invalid JSON"),
        ('{"question": "q"}', "missing key 'answer'"),
        ('{"question": "q", "answer": 3}', "should be str"),
        ('{"question": "q", "answer": "no final mark"}', "no '####'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_gsm8k_malformed_line_names_file_and_line(tmp_path, bad_line, reason):
    path = tmp_path / "gsm8k" / "test.jsonl"
    path.parent.mkdir()
    good = json.dumps({"question": "q", "answer": "1+1=2\n#### 2"})
    path.write_text(f"{good}\n{good}\n{bad_line}\n")
    with pytest.raises(jsonl.DataFormatError, match=f"{path}:3: .*{reason}"):
        list(gsm8k.generate("test", data_dir=tmp_path))


def test_gsm8k_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="RTC_DATA_DIR"):
        list(gsm8k.generate("train", data_dir=tmp_path))


def test_math500_first_records():
    records = list(math500.generate("test", data_dir=SHIPPED))
    assert len(records) == 40
    for record in records:
        _check_record(record)
    assert records[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert records[0]["difficulty"] == 2
    assert json.loads(records[0]["meta"]) == {
        "subject": "Precalculus",
        "unique_id": "test/precalculus/807.json",
    }


def test_math500_records(full_data):
    full_data("math500", "test.jsonl")
    records = list(math500.generate("test"))
    assert len(records) == 500
    levels = [record["difficulty"] for record in records]
    assert [levels.count(level) for level in range(1, 6)] == [43, 90, 105, 128, 134]
    for record in records:
        _check_record(record)
    assert records[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert json.loads(records[0]["meta"])["unique_id"] == "test/precalculus/807.json"


def test_math500_boxed_answers_match_answer_field(full_data):
    for line in (full_data("math500", "test.jsonl") / "test.jsonl").open():
        raw = json.loads(line)
        assert answers.math_equal(math500.extract_boxed(raw["solution"]), raw["answer"])


def test_math500_has_no_train_split():
    with pytest.raises(ValueError, match="only a 'test' split"):
        math500.generate("train")


def test_math500_malformed_line(tmp_path):
    path = tmp_path / "math500" / "test.jsonl"
    path.parent.mkdir()
    good = {
        "problem": "p",
        "solution": "s",
        "answer": "1",
        "subject": "Algebra",
        "level": 1,
        "unique_id": "u",
    }
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "level": "1"}) + "\n")
    with pytest.raises(jsonl.DataFormatError, match=f"{path}:2: key 'level' should be int"):
        list(math500.generate("test", data_dir=tmp_path))


def test_math500_solution_steps():
    assert math500.solution_steps("a\nb\n\n  \nc = 3.\n") == ["a b", "c = 3."]


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        (
            "\\boxed{1} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        ("\\boxed{{a}{b{c}}}", "{a}{b{c}}"),
        ("no box", None),
        ("\\boxed{\\frac{1}{2}", None),
    ],
)
def test_extract_boxed(text, boxed):
    assert math500.extract_boxed(text) == boxed


# Answers, format and registry.


def test_extract_answer():
    assert answers.extract_answer("<think>x\n</think><answer> 42 </answer>") == "42"
    assert answers.extract_answer("<answer>1</answer> then <answer>2</answer>") == "2"
    assert answers.extract_answer("<answer>1</answer><answer>2") == "1"
    assert answers.extract_answer("<answer>a\nb</answer>") == "a\nb"
    assert answers.extract_answer("no answer") is None


def test_extract_gsm8k_final():
    assert answers.extract_gsm8k_final("So 3.\n#### 1,000") == "1000"
    assert answers.extract_gsm8k_final("#### 1\n#### -7") == "-7"
    assert answers.extract_gsm8k_final("no mark") is None


@pytest.mark.parametrize(
    "predicted, gold, equal",
    [
        ("1,000", "1000", True),
        ("$18.", "18", True),
        ("18.00", "18", True),
        ("0.5", "1/2", True),
        ("-3", "-3", True),
        ("17", "18", False),
        ("eighteen", "18", False),
        (None, "18", False),
    ],
)
def test_numbers_equal(predicted, gold, equal):
    assert answers.numbers_equal(predicted, gold) == equal


@pytest.mark.parametrize(
    "predicted, gold, equal",
    [
        ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
        ("90", "90^\\circ", True),
        ("864", "864 \\mbox{ inches}^2", True),
        (
            "-\\frac{1}{2}",
            "\\frac{1}{2}",
            False,
        ),  # more pairs, with and without math-verify: test_math_verify.py
        ("2", "3", False),
    ],
)
def test_math_equal(predicted, gold, equal):
    assert answers.math_equal(predicted, gold) == equal


def test_format():
    record = arithmetic.make_record([2, 3, 4], ["+", "*"])
    assert prompt_text(record) == "Compute 2+3*4.\n"
    assert completion_text(record) == "<think>3*4=12\n2+12=14\n</think><answer>14</answer>"
    assert answers.extract_answer(completion_text(record)) == "14"


def test_registry():
    assert tasks.TASK_NAMES == ("arithmetic", "countdown", "gsm8k", "math500")
    with pytest.raises(KeyError, match="arithmetic, countdown, gsm8k, math500"):
        tasks.get_task("mmlu")
    assert tasks.get_task("math500").splits == ("test",)
    for name, kwargs in (
        ("arithmetic", {"num_examples": 5, "seed": 0}),
        ("countdown", {"num_examples": 5, "seed": 0}),
    ):
        task = tasks.get_task(name)
        for record in task.generate("test", **kwargs):
            assert task.is_correct(record["answer"], record)
            assert not task.is_correct(None, record)
    gsm = tasks.get_task("gsm8k")
    record = next(gsm.generate("test", data_dir=SHIPPED))
    assert gsm.is_correct("18.0", record) and not gsm.is_correct("19", record)
    math = tasks.get_task("math500")
    record = next(math.generate("test", data_dir=SHIPPED))
    assert math.is_correct("\\left(3,\\dfrac{\\pi}{2}\\right)", record) and not math.is_correct("3", record)
