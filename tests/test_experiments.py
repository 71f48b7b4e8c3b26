"""The reproduction scripts of experiments/ on small hand-made runs."""

import json

import pytest

from experiments import aha
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
