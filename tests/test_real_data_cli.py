"""GSM8K and MATH-500 from the command line: the `:tiny` variants of `gsm8k.py` and `math500.py` end to end on
the 40-line copies in tests/data, and a mistaken task name or option as one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtc.data import gsm8k, tfds_builders

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
GSM8K = "--config=experiments/configs/gsm8k.py"
KNOWN = "known tasks: arithmetic, countdown, gsm8k, math500"


def rtc_main(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "RTC_DATA_DIR": str(DATA)}
    return subprocess.run(
        [sys.executable, "-m", "rtc.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def run_ok(config: str, workdir: Path, data_dir: Path, *overrides: str) -> str:
    """Runs `config` on the shipped copies (read as they are, prepared once into `data_dir`); its stdout."""
    out = rtc_main(
        config,
        f"--workdir={workdir}",
        f"--config.task.source_dir={DATA}",
        f"--config.data_dir={data_dir}",
        *overrides,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 1, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[-1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """One prepared data folder for every run, and the gsm8k `:tiny` SFT run the others start from."""
    root = tmp_path_factory.mktemp("real_data_cli")
    stdout = run_ok(f"{GSM8K}:tiny", root / "sft", root / "data")
    return {"root": root, "data": root / "data", "sft": root / "sft", "sft_stdout": stdout}


def test_unknown_task_name_is_one_line(tmp_path):
    out = rtc_main(f"{GSM8K}:tiny", f"--workdir={tmp_path}", "--config.task.name=gsm8kk")
    assert one_line_error(out) == f"rtc: unknown task 'gsm8kk'; {KNOWN}"


def test_option_of_another_task_is_one_line(tmp_path):
    out = rtc_main(f"{GSM8K}:tiny", f"--workdir={tmp_path}", "--config.task.levels=1,2")
    assert (
        one_line_error(out) == "rtc: unknown config key task.levels (see the config file for the known keys)"
    )
    # A task block written for arithmetic (the quickstart's), switched to gsm8k by name alone.
    out = rtc_main(
        "--config=experiments/configs/quickstart.py:tiny", f"--workdir={tmp_path}", "--config.task.name=gsm8k"
    )
    assert one_line_error(out) == (
        "rtc: task 'gsm8k' takes source_dir, num_train, num_test, not levels, seed "
        "(a task block written for another task; start from a gsm8k config)"
    )


def test_gsm8k_sft_tiny(shared):
    config = json.loads((shared["sft"] / "config.json").read_text())
    assert config["task"] == {"name": "gsm8k", "num_train": 64, "num_test": 16, "source_dir": str(DATA)}
    assert "Held-out accuracy on 8 gsm8k problems (step 4):" in shared["sft_stdout"]
    first = next(gsm8k.generate("test", DATA))["question"]  # the first trace is the first test problem
    assert f"Q: {first}" in shared["sft_stdout"]
    prepared = [path.name for path in (shared["data"] / "gsm8k").iterdir()]
    assert prepared == ["sha256-953bbc2188d1f46a"]  # keyed by the content of the shipped copies


def test_gsm8k_grpo_tiny_from_the_sft_run(shared):
    workdir = shared["root"] / "grpo"
    stdout = run_ok(f"{GSM8K}:grpo_tiny", workdir, shared["data"], f"--config.policy_workdir={shared['sft']}")
    assert "step 3/3  reward" in stdout
    assert "Held-out accuracy on 8 gsm8k problems (step 3):" in stdout
    assert not (workdir / "sft").exists()  # the SFT run was the policy: no cold start


def test_gsm8k_search_tiny_with_an_orm(shared):
    workdir = shared["root"] / "search"
    run_ok(f"{GSM8K}:search_tiny", workdir, shared["data"], f"--config.policy_workdir={shared['sft']}")
    results = json.loads((workdir / "search_results.json").read_text())
    assert results["problems"] == 4 and results["large_n"] == 4
    assert sorted(results["searches"]) == ["beam", "best_first", "dvts", "mcts"]
    assert json.loads((workdir / "prm" / "reward_model.json").read_text())["kind"] == "orm"


def test_math500_tiny_trains_on_problems_it_does_not_test(shared):
    workdir = shared["root"] / "math500"
    stdout = run_ok("--config=experiments/configs/math500.py:tiny", workdir, shared["data"])
    assert "Held-out accuracy on 8 math500 problems (step 4):" in stdout
    options = {"source_dir": DATA, "num_train": 64, "num_test": 16}
    train = tfds_builders.load("math500", "train", shared["data"], **options)
    test = tfds_builders.load("math500", "test", shared["data"], **options)
    assert (len(train), len(test)) == (24, 16)  # 40 shipped problems: 16 held out, 24 to train on
    assert not {r["question"] for r in train} & {r["question"] for r in test}
