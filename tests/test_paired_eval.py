"""experiments/paired_eval.py: runs on the same held-out problems, differences as paired intervals."""

import json

import numpy as np

from experiments import paired_eval


def test_the_table_sets_each_run_against_the_first_problem_by_problem():
    base = np.array([1, 0, 1, 0, 1, 1], bool)
    other = np.array([1, 1, 1, 0, 0, 1], bool)  # +1 on problem 1 (level 2), -1 on problem 4 (level 3)
    levels = np.array([1, 2, 2, 3, 3, 3])
    text = paired_eval.table({"a": {"greedy": base}, "b": {"greedy": other}}, levels, 200)
    rows = [line.split(" | ") for line in text.splitlines()[2:]]
    assert rows[0][:2] == ["| a", "greedy"] and rows[0][3] == "+0.0 [+0.0, +0.0]"
    assert rows[1][2].startswith("66.7% [")
    assert rows[1][3].startswith("+0.0 [")  # one gained, one lost
    assert rows[1][4:] == ["+0.0", "+50.0", "-33.3 |"]  # by level: L1, L2, L3


def test_a_run_against_itself_differs_by_nothing(sft_run, tmp_path):
    out = tmp_path / "paired.md"
    argv = [
        "--out",
        str(out),
        "--problems=6",
        "--batch_size=4",
        "--resamples=50",
        f"a={sft_run}",
        f"b={sft_run}",
    ]
    results = paired_eval.main(argv)
    for mode in ("greedy", "sampled"):
        np.testing.assert_array_equal(results["a"][mode], results["b"][mode])
        assert len(results["a"][mode]) == 6
    text = out.read_text()
    assert "| b | greedy |" in text and "| b | sampled |" in text and text.count("+0.0 [+0.0, +0.0]") == 4
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["correct"]["a"]["greedy"] == results["a"]["greedy"].astype(int).tolist()
    assert len(saved["levels"]) == 6
