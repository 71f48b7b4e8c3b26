"""PRM800K: records written in the documented format, parsed, mapped to labels, and turned into solutions."""

import hashlib
import json
from pathlib import Path

import pytest

from rtc.data import download, paths
from rtc.data.jsonl import DataFormatError
from rtc.rewards import prm800k
from rtc.rewards.rm_data import step_ends
from rtc.rewards.step_labels import HumanLabeler


def _completion(text, rating, flagged=False):
    return {"text": text, "rating": rating, "flagged": flagged}


def _step(completions, chosen=None, human=None):
    return {"completions": completions, "human_completion": human, "chosen_completion": chosen}


def _record(steps, finish_reason="solution", generation=3, answer="12"):
    return {
        "labeler": "340d89bc-f5b7-45e9-b272-909ba68ee363",
        "timestamp": "2023-01-22T04:34:27.052924",
        "generation": generation,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {
            "problem": "What is $3 \\cdot 4$?",
            "ground_truth_solution": "$3 \\cdot 4 = 12$.",
            "ground_truth_answer": "12",
            "pre_generated_steps": [],
            "pre_generated_answer": answer,
            "pre_generated_verifier_score": 0.5,
        },
        "label": {"steps": steps, "total_time": 1000, "finish_reason": finish_reason},
    }


# Phase 2: one completion a step, labelling stops at the first error (chosen_completion is null there).
PHASE2_ERROR = _record(
    [
        _step([_completion("We multiply.", 1)], chosen=0),
        _step([_completion("That is not obviously\nhelpful.", 0)], chosen=0),
        _step([_completion("3 times 4 is 13.", -1)]),
    ],
    finish_reason="found_error",
    answer="13",
)
# Phase 1: several candidates; every candidate of step 2 was wrong, so the labeler wrote one.
PHASE1_HUMAN = _record(
    [
        _step([_completion("Multiply 3 by 4.", 1), _completion("Add 3 and 4.", -1)], chosen=0),
        _step([_completion("3*4=7", -1), _completion("3*4=34", -1)], human="3*4=12"),
        _step([_completion("# Answer\n\n12", 1)], chosen=0),
    ],
    generation=None,
    answer="",
)
MISSING_MIDWAY = _record(
    [
        _step([_completion("We multiply.", 1)], chosen=0),
        _step([_completion("3*4=12", None)], chosen=0),
        _step([_completion("# Answer\n\n12", 1)], chosen=0),
    ]
)
MISSING_FIRST = _record([_step([_completion("We multiply.", None)], chosen=0)])
BAD_PROBLEM = _record([_step([_completion("We multiply.", 1)], chosen=0)], finish_reason="bad_problem")


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_phase2_record_stops_at_the_first_error_with_neutral_as_positive():
    trajectory, note = prm800k.parse_record(PHASE2_ERROR)
    assert note is None
    assert trajectory.steps == ("We multiply.", "That is not obviously helpful.", "3 times 4 is 13.")
    assert trajectory.labels == (1.0, 1.0, 0.0)  # +1, 0 (neutral -> positive), -1
    strict, _ = prm800k.parse_record(PHASE2_ERROR, neutral="negative")
    assert strict.labels == (1.0, 0.0, 0.0)


def test_phase1_human_completion_is_a_correct_step():
    trajectory, _ = prm800k.parse_record(PHASE1_HUMAN)
    assert trajectory.steps == ("Multiply 3 by 4.", "3*4=12", "# Answer 12")
    assert trajectory.labels == (1.0, 1.0, 1.0)


def test_missing_ratings_truncate_or_skip():
    trajectory, note = prm800k.parse_record(MISSING_MIDWAY)
    assert note == "truncated_missing_rating" and trajectory.labels == (1.0,)
    assert prm800k.parse_record(MISSING_FIRST) == (None, "no_rated_steps")
    assert prm800k.parse_record(BAD_PROBLEM) == (None, "bad_problem")


def test_supervision_stops_after_a_chosen_wrong_step():
    record = _record(
        [
            _step([_completion("3*4=13", -1)], chosen=0),
            _step([_completion("so 13", 1)], chosen=0),
        ]
    )
    assert prm800k.parse_record(record)[0].labels == (0.0,)


def test_load_counts_and_solutions_carry_one_label_per_delimiter(tmp_path, tokenizer):
    path = _write(
        tmp_path / "phase2.jsonl", [PHASE2_ERROR, PHASE1_HUMAN, MISSING_MIDWAY, MISSING_FIRST, BAD_PROBLEM]
    )
    solutions, counts = prm800k.load(path, tokenizer)
    assert counts == {
        "records": 5,
        "used": 3,
        "truncated_missing_rating": 1,
        "no_rated_steps": 1,
        "bad_problem": 1,
    }
    for s in solutions:
        assert len(step_ends(s.completion_ids, tokenizer.step_id)) == len(s.human_labels)
    assert tokenizer.decode(solutions[0].completion_ids) == (
        "<think>We multiply.\nThat is not obviously helpful.\n3 times 4 is 13.\n</think><answer>13</answer>"
    )
    labelled = HumanLabeler(tokenizer.step_id, (tokenizer.think_start_id,))(solutions)
    assert [x.tolist() for x in labelled.labels] == [[1, 1, 0], [1, 1, 1], [1]]


def test_empty_step_text_is_counted_by_the_labelers(tmp_path, tokenizer):
    record = _record([_step([_completion("", 1)], chosen=0), _step([_completion("3*4=12", 1)], chosen=0)])
    solutions, _ = prm800k.load(_write(tmp_path / "empty.jsonl", [record]), tokenizer)
    labelled = HumanLabeler(tokenizer.step_id, (tokenizer.think_start_id,))(solutions)
    assert labelled.labels == [None] and labelled.skipped == {"empty_step": 1}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda r: r["label"]["steps"][0]["completions"][0].update(rating=2),
            r"rating 2 is not -1, 0, 1 or null",
        ),
        (lambda r: r["label"]["steps"][0].update(chosen_completion=5), r"chosen_completion 5 out of range"),
        (lambda r: r["label"].pop("steps"), r"missing key 'steps'"),
        (lambda r: r["label"]["steps"][0]["completions"][0].update(rating=True), r"'rating' has type bool"),
    ],
)
def test_malformed_records_name_the_line(tmp_path, tokenizer, mutate, message):
    bad = json.loads(json.dumps(PHASE1_HUMAN))
    mutate(bad)
    path = _write(tmp_path / "bad.jsonl", [PHASE2_ERROR, bad])
    with pytest.raises(DataFormatError, match=rf"bad.jsonl:2: .*{message}"):
        prm800k.load(path, tokenizer)


def test_unknown_neutral_mapping_is_named():
    with pytest.raises(ValueError, match="neutral must be one of"):
        prm800k.rating_label(0, neutral="skip")


def test_a_registered_name_reads_the_data_roots_checked_copy(tmp_path, tokenizer, monkeypatch):
    root = tmp_path / "root"
    (root / "prm800k").mkdir(parents=True)
    local = _write(root / "prm800k" / "phase1_test.jsonl", [PHASE1_HUMAN, BAD_PROBLEM])
    data = local.read_bytes()
    registered = download.Source("phase1_test.jsonl", None, len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(download.DATASETS, "prm800k", (registered,))
    monkeypatch.setenv(paths.ENV_VAR, str(root))
    assert prm800k.resolve("prm800k/phase1_test.jsonl") == local
    _, counts = prm800k.load("prm800k/phase1_test.jsonl", tokenizer)
    assert counts == {"records": 2, "used": 1, "bad_problem": 1}
    local.write_bytes(data + b"\n")  # no longer the registered file
    with pytest.raises(download.ChecksumError, match=f"{local} is not the registered file"):
        prm800k.load("prm800k/phase1_test.jsonl", tokenizer)
    # A path that exists, or an unregistered name, is read as given.
    monkeypatch.chdir(tmp_path)
    assert prm800k.resolve("root/prm800k/phase1_test.jsonl") == Path("root/prm800k/phase1_test.jsonl")
    assert prm800k.resolve("prm800k/phase3.jsonl") == Path("prm800k/phase3.jsonl")
    with pytest.raises(FileNotFoundError, match="data file not found: prm800k/phase3.jsonl"):
        prm800k.load("prm800k/phase3.jsonl", tokenizer)
