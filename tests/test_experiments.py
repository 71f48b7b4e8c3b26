"""The reproduction scripts of experiments/ on small hand-made runs."""

import json

import pytest

from experiments import aha, overthinking, real_data
from rtc.eval import traces


def _fake_rl_run(run_dir, steps=6):
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "train/loss": 0.1,
                        "train/self_correction_rate": step / 10,
                        "train/repetition_rate": 0.0,
                        "train/accuracy": 0.5,
                        "train/completion_length": 20.0 + step,
                    }
                )
                + "\n"
            )
        f.write(json.dumps({"step": steps, "eval/greedy/accuracy": 0.4}) + "\n")  # not a training line
    path = run_dir / traces.TRACES_FILE
    traces.append_samples(path, 1, ["<think>1+2=3\n</think><answer>3</answer>"], ["1+2?"], [True])
    traces.append_samples(
        path,
        steps,
        ["<think>2*3=5\n2*3=6\n</think><answer>6</answer>", "<think>x\n</think>"],
        ["a", "b"],
        [True, False],
    )


def test_aha_summary_of_a_run(tmp_path):
    _fake_rl_run(tmp_path / "grpo")
    text = aha.summarize(tmp_path / "grpo", tmp_path)
    # thirds of 6 steps: (0.1 + 0.2) / 2, (0.3 + 0.4) / 2, (0.5 + 0.6) / 2
    assert "| self-correction rate | 0.150 | 0.350 | 0.550 |" in text
    assert "| steps 1-2 | steps 3-4 | steps 5-6 |" in text
    assert "| self-correcting | 1 | 1.000 |" in text
    assert "| not self-correcting | 2 | 0.500 |" in text
    assert "Before (step 1)" in text and "After (step 6)" in text
    after = text.split("After (step 6)")[1]
    assert after.index("2*3=5") < after.index("<think>x")  # the self-correcting trace is shown first
    assert (tmp_path / "aha.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "aha.md").read_text().startswith("# Self-correction")


def test_aha_refuses_a_directory_without_training_metrics(tmp_path):
    (tmp_path / "grpo").mkdir()
    (tmp_path / "grpo" / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit, match="no training metrics"):
        aha.summarize(tmp_path / "grpo", tmp_path)


def test_every_gold_solution_is_scored_correct_and_another_answer_is_not(full_data):
    full_data("gsm8k", "train.jsonl", "test.jsonl")
    full_data("math500", "test.jsonl")
    gold = real_data.gold_checks()
    assert set(gold) == {"gsm8k/train", "gsm8k/test", "math500/test"}
    assert gold["gsm8k/test"]["records"] == 1319 and gold["math500/test"]["records"] == 500
    for name, g in gold.items():
        assert g["dataset_route"] == 1.0 and g["rtc_route"] == 1.0, (name, g["failures"])
        assert g["wrong_answer_accepted"] == 0.0, name


def test_real_data_pipeline_with_the_pretrained_model(tmp_path, full_data):
    full_data("gsm8k", "train.jsonl", "test.jsonl")
    full_data("math500", "test.jsonl")
    out = real_data.main(
        ["--workdir", str(tmp_path), "--sft_steps", "0", "--problems", "2", "--samples", "2"]
    )
    by_data = out["models"]["stories260K"]
    for data in ("gsm8k", "math500"):
        r = by_data[data]
        assert r["problems"] == 2 and set(r["pass_at_k"]) == {1, 2}
        assert 0.0 <= r["pass_at_k"][1] <= r["pass_at_k"][2] <= 1.0
        assert 0.0 <= r["answered"] <= 1.0
    assert by_data["math500"]["skipped"] >= 0
    assert "| stories260K | gsm8k | 2 (" in (tmp_path / "real_data.md").read_text()
    assert (tmp_path / "real_data.png").read_bytes()[:4] == b"\x89PNG"


def test_overthinking_budgets_cap_thinking(tmp_path, monkeypatch, data_dir, sft_run):
    from helpers import quickstart_config

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    monkeypatch.setattr(
        overthinking,
        "SETTINGS",
        (
            ("budget_tokens=0", dict(budget_tokens=0)),
            ("budget_tokens=4", dict(budget_tokens=4)),
            ("no cap", {}),
        ),
    )
    monkeypatch.setattr(overthinking, "load_config", lambda workdir, variant="": config)
    results = overthinking.main(
        [
            "--workdir",
            str(tmp_path),
            "--policy",
            str(sft_run),
            "--problems",
            "2",
            "--samples",
            "2",
            "--tiny",
        ]
    )
    for group in overthinking.GROUPS:
        assert results["budget_tokens=0"][group]["thinking_tokens"] == 0.0
        assert results["budget_tokens=4"][group]["thinking_tokens"] <= 4.0
        for by_group in results.values():
            r = by_group[group]
            assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["repetition_rate"] <= 1.0
    text = (tmp_path / "overthinking.md").read_text()
    assert "| budget_tokens=4 | easy (levels 1-2) |" in text
    assert (tmp_path / "overthinking.png").read_bytes()[:4] == b"\x89PNG"


def test_rl_runs_commands_share_the_cold_start_and_budget(tmp_path):
    from experiments import rl_runs

    cmds = rl_runs.commands(tmp_path, 60, 20)
    assert list(cmds) == ["sft", "grpo", "grpo_static", "ppo", "scratch"]
    assert "--config.rl.dynamic_sampling=False" in cmds["grpo_static"]
    for name in ("grpo", "grpo_static", "ppo"):
        assert f"--config.policy_workdir={tmp_path / 'sft'}" in cmds[name]
        assert "--config.rl.num_steps=60" in cmds[name]
    assert cmds["ppo"][3].endswith("grpo.py:ppo") and cmds["scratch"][3].endswith("grpo.py:scratch")
    assert not any("policy_workdir" in arg for arg in cmds["scratch"])
    with pytest.raises(SystemExit, match="unknown runs"):
        rl_runs.main(["--workdir", str(tmp_path), "--only", "grpo,a2c"])


def test_rl_summary_reports_intervals_draws_and_tokens(tmp_path):
    from experiments import summarize_rl

    low, high = summarize_rl.wilson(0.5, 100)  # by hand: centre 0.5, half 1.96*sqrt(.0025+.000096)/1.0384
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    metrics = [
        {
            "step": 5,
            "train/loss": 1.0,
            "train/reward_mean": 0.4,
            "train/informative_fraction": 1.0,
            "train/draw_groups_per_trained": 2.0,
            "train/sampled_tokens": 1000.0,
            "train/kl": 0.01,
        },
        {
            "step": 10,
            "train/loss": 1.0,
            "train/reward_mean": 0.6,
            "train/informative_fraction": 0.5,
            "train/draw_groups_per_trained": 2.0,
            "train/sampled_tokens": 3000.0,
            "train/kl": 0.03,
        },
        {"step": 10, "eval/greedy/accuracy": 0.5, "eval/greedy/accuracy/level_3": 0.25},
    ]
    row = summarize_rl.summary(metrics)
    assert row["informative_fraction"] == 0.75 and row["tokens_m"] == pytest.approx(0.02)
    assert row["greedy_L3"] == 0.25 and row["max_kl"] == 0.03
    text = summarize_rl.table({"grpo": row}, eval_examples=100)
    assert "| grpo | 50.0% [40.4%, 59.6%] |" in text
