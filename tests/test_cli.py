"""`python -m rtc.main` as a user runs it: config errors, overrides, the quickstart end to end, a NaN stop."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from rtc.checkpoint import CheckpointError, Checkpointer
from rtc.metrics import read_metrics
from rtc.model import Model, model_config
from rtc.tokenizer.tokenizer import Tokenizer
from rtc.train import optimizer as optimizer_lib
from rtc.train.state import init_train_state

REPO = Path(__file__).resolve().parents[1]
TINY = "--config=experiments/configs/quickstart.py:tiny"


def rtc_main(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "rtc.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def train_state_template(num_layers: int) -> dict:
    """A fresh train state of the `:tiny` run with `num_layers` layers (shapes and tree only matter)."""
    config = model_config("test-tiny", num_layers=num_layers, vocab_size=Tokenizer.load().vocab_size)
    params = Model(config).init_params(jax.random.key(0))
    optimizer = optimizer_lib.adamw(optimizer_lib.learning_rate_schedule(1e-3, 1, 4), 0.1, 1.0)
    return init_train_state(params, optimizer, jax.random.key(0))


def test_unknown_config_key_is_named(tmp_path):
    out = rtc_main(TINY, f"--workdir={tmp_path / 'run'}", "--config.sft.no_such_key=1")
    assert out.returncode != 0
    assert "no_such_key" in out.stderr
    assert not (tmp_path / "run").exists()


def test_missing_config_file_is_named(tmp_path):
    out = rtc_main("--config=experiments/configs/no_such_config.py", f"--workdir={tmp_path / 'run'}")
    assert out.returncode != 0
    assert "no_such_config.py" in out.stderr
    assert not (tmp_path / "run").exists()


ONE_LAYER = "--config.model.num_layers=1"


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The tiny quickstart through the CLI, with a model override (one layer instead of two)."""
    workdir = tmp_path_factory.mktemp("quickstart")
    return workdir, rtc_main(TINY, f"--workdir={workdir}", ONE_LAYER)


def test_quickstart_tiny_end_to_end(quickstart_run):
    tmp_path, out = quickstart_run
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Held-out accuracy on 8 arithmetic problems (step 4):" in out.stdout
    table = out.stdout.split("Held-out accuracy", 1)[1]
    assert "greedy" in table and "sampled" in table
    for label in ("1", "2", "3", "4", "5", "all"):
        assert any(line.split()[:1] == [label] for line in table.splitlines()), label
    traces = out.stdout.split("Thinking traces (greedy):", 1)[1]
    assert "Q: Compute" in traces and "A: " in traces

    records = read_metrics(tmp_path)
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == [2, 4]
    assert all(np.isfinite(r["train/loss"]) for r in records if "train/loss" in r)
    assert any(r["step"] == 4 and "eval/greedy/accuracy" in r for r in records)
    assert any(r["step"] == 4 and "eval/sampled/accuracy" in r for r in records)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))
    assert (tmp_path / "samples.txt").read_text().startswith("=== step 4 eval/trace ===")
    resolved = json.loads((tmp_path / "config.json").read_text())  # the workdir loads from its path alone
    assert resolved["mode"] == "sft" and resolved["sft"]["num_steps"] == 4
    assert resolved["model"]["num_layers"] == 1


def test_model_override_trains_a_one_layer_model(quickstart_run):
    tmp_path, out = quickstart_run
    assert out.returncode == 0, out.stderr[-3000:]
    # Restore checks every saved key path against the template: only a one-layer state fits.
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [2, 4]
        state, _ = ckpt.restore(train_state_template(num_layers=1))
        assert set(state["params"]) == {"embedding", "final_norm", "layer_0"}
        with pytest.raises(CheckpointError):
            ckpt.restore(train_state_template(num_layers=2))


def test_non_finite_loss_exits_cleanly(tmp_path):
    # With lr 1e30 the first real update (step 2; warmup starts at 0) blows the params up, so a later
    # step's grad norm or loss is nan (step 3's grad norm on this CPU, reported at the step-4 check);
    # the step-2 checkpoint is still finite and is kept.
    out = rtc_main(TINY, f"--workdir={tmp_path}", "--config.sft.learning_rate=1e30")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last_line = out.stderr.strip().splitlines()[-1]
    stop = re.fullmatch(
        r"stopped: non-finite (?:loss|grad_norm).* at step (\d+): .*; the last good checkpoint in "
        + re.escape(f"{tmp_path}/checkpoints")
        + " is kept",
        last_line,
    )
    assert stop, last_line
    assert "Held-out accuracy" not in out.stdout
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        saved = ckpt.all_steps()
    assert saved and max(saved) < int(stop.group(1))


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    """The run's error line; it must be the only `rtc:` line and come without a traceback."""
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("rtc: ")]
    assert len(errors) == 1 and errors[0] == out.stderr.strip().splitlines()[-1], out.stderr[-3000:]
    return errors[0]


def test_damaged_checkpoint_is_one_line_naming_step_and_path(quickstart_run, tmp_path):
    shutil.copytree(quickstart_run[0], tmp_path, dirs_exist_ok=True)  # a finished run: steps 2 and 4
    step_dir = tmp_path / "checkpoints" / "4"
    largest = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    largest.write_bytes(bytes(data))
    error = _one_line_error(rtc_main(TINY, f"--workdir={tmp_path}", ONE_LAYER))
    assert error.startswith(f"rtc: checkpoint step 4 at {step_dir} is damaged"), error
    assert "--config.sft.resume_step=2" in error, error


def test_prompt_longer_than_the_context_is_one_line(tmp_path):
    # Training fits (level-1 examples in 32-token rows); evaluation needs prompt + max_new_tokens (48) <= 40.
    out = rtc_main(
        TINY,
        f"--workdir={tmp_path}",
        "--config.model.max_seq_len=40",
        "--config.sft.seq_len=32",
        "--config.task.levels=(1,)",
        "--config.sft.num_steps=1",
    )
    error = _one_line_error(out)
    assert re.fullmatch(
        r"rtc: prompt of \d+ tokens plus max_new_tokens=48 exceeds the model's context of 40 tokens", error
    ), error


def test_train_rows_longer_than_the_context_is_one_line(tmp_path):
    out = rtc_main(TINY, f"--workdir={tmp_path}", "--config.model.max_seq_len=40")
    assert _one_line_error(out) == "rtc: sft.seq_len=128 exceeds the model's context of 40 tokens"


def test_distributed_outside_a_cluster_is_one_line(tmp_path):
    out = rtc_main(TINY, f"--workdir={tmp_path}", "--distributed")
    assert _one_line_error(out).startswith("rtc: --distributed found no multi-process environment to join")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_mode_and_config(flag):
    from rtc.main import MODES

    out = rtc_main(flag)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("usage: python -m rtc.main --config=experiments/configs/NAME.py[:ARG]")
    for mode, (_, description) in MODES.items():
        assert f"  {mode:<10} {description}\n" in out.stdout
    assert "  export.py           Export a finished run as a Hugging Face folder" in out.stdout
    assert "  quickstart.py       Quickstart: SFT cold start of a small reasoning model" in out.stdout
    assert "common.py" not in out.stdout  # the shared fields are not a config
    configs = {p.name for p in (REPO / "experiments/configs").glob("*.py")} - {"__init__.py", "common.py"}
    assert all(f"  {name} " in out.stdout for name in configs)


def test_no_arguments_prints_the_usage_and_exits_2():
    out = rtc_main()
    assert out.returncode == 2
    assert (
        out.stderr.startswith("usage: python -m rtc.main")
        and "modes (a config's `mode` field):" in out.stderr
    )


def test_a_misspelt_config_key_is_plain_text_with_the_suggestion(tmp_path):
    out = rtc_main(TINY, f"--workdir={tmp_path / 'run'}", "--config.sft.num_step=1")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "rtc: unknown config key sft.num_step; did you mean num_steps? (see the config file for the known keys)"
    )


def test_export_writes_a_folder_transformers_loads_with_the_same_logits_and_ids(sft_run, tmp_path):
    import torch
    import transformers

    from rtc import recipes

    out = rtc_main(
        "--config=experiments/configs/export.py", f"--workdir={sft_run}", f"--config.out_dir={tmp_path}"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"to {tmp_path}" in out.stdout
    _, tokenizer, model, params = recipes.load_run(sft_run)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["Compute 7+2.\n", "<think>29*2=58\n</think><answer>58</answer>", "  two  spaces\tand ünïcode"]
    for text in texts:
        assert hf_tokenizer(text)["input_ids"] == [tokenizer.bos_id] + tokenizer.encode(text)
        assert hf_tokenizer.decode(tokenizer.encode(text)) == text
    ids = [tokenizer.bos_id] + tokenizer.encode(texts[1])
    logits, _, _ = model.apply(params, np.array([ids]), np.arange(len(ids))[None], None)
    with torch.no_grad():
        expected = hf_model(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-4)
