"""Two processes of two CPU devices (jax.distributed, gloo collectives on 127.0.0.1) end where one
process of four devices does: FSDP-sharded SFT steps, a GRPO step and a test-time search call."""

import json
import subprocess
import sys
import textwrap

import numpy as np

from helpers import REPO, free_port, start_processes, wait_all

# One process of the run: `PROCESS_ID` of 2, or `single` (one process, four devices).
PROCESS = textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    out, process, port = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    if process != "single":
        from rtc.parallel import distributed
        distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process))
    from experiments.configs import grpo, quickstart
    from rtc.model import Model, model_config
    from rtc.parallel import mesh as mesh_lib
    from rtc import recipes
    from rtc.pretrained.run_model import build_model
    from rtc.rl import training
    from rtc.sampling.rules import SamplingRule
    from rtc.search import runner
    from rtc.search.config import SearchConfig
    from rtc.tokenizer.tokenizer import Tokenizer
    from rtc.train import sft

    def gathered(tree):  # every process gets the whole of each (possibly sharded) array
        return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)

    def flat(tree):
        return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}

    name = "single" if process == "single" else "two"
    tokenizer = Tokenizer.load()
    report = {"processes": jax.process_count(), "devices": jax.device_count()}

    # 1. SFT with the parameters and optimizer state split over fsdp (2) x data (2)
    config = quickstart.get_config("tiny")
    config.data_dir = str(out / "data")  # shared: process 0 prepares it, process 1 waits
    config.mesh, config.sharding_rules = "data=2,fsdp=2", "auto"
    config.sft.update(num_steps=2, log_every=1, batch_size=8)
    model = build_model(config, tokenizer.vocab_size)
    state = sft.train(config, config.sft, out / f"sft_{name}", tokenizer, model)
    embedding = state["params"]["embedding"]
    report["sft_embedding"] = [list(embedding.shape), list(embedding.sharding.shard_shape(embedding.shape))]
    np.savez(out / f"sft_{process}.npz", **flat(gathered(state["params"])))

    # 2. one GRPO step (sample -> reward -> advantages -> update), data parallel over all devices
    config = grpo.get_config("tiny")
    config.data_dir = str(out / "data")
    config.policy_workdir = str(out / f"sft_{name}")
    config.rl.update(num_steps=1, checkpoint_every=1)
    config.eval.num_examples = 0
    policy = recipes.cold_start(config, out / f"grpo_{name}", tokenizer, model, None)
    state = training.train(config, config.rl, out / f"grpo_{name}", tokenizer, model, policy)
    np.savez(out / f"grpo_{process}.npz", **flat(gathered(state["params"]["policy"])))

    # 3. a beam search whose branches are split over every process's devices
    policy = Model(model_config("test-tiny", vocab_size=12, max_seq_len=128))
    params = policy.init_params(jax.random.key(0))
    verifier = Model(dataclasses.replace(policy.config, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    mesh = mesh_lib.make_mesh()
    cfg = SearchConfig(strategy="beam", n=4, m=2, depth=3, step_tokens=5, stop_ids=(2,), delimiter_id=3,
                       rule=SamplingRule(temperature=1.0))
    result = runner.run(policy, mesh_lib.replicate(params, mesh), verifier, mesh_lib.replicate(vparams, mesh),
                        [[1, 6, 7, 8], [1, 9, 10]], jax.random.key(4), cfg, mesh)
    np.savez(out / f"search_{process}.npz", tokens=result.tokens, scores=result.scores, best=result.best)
    (out / f"report_{process}.json").write_text(json.dumps(report))
""")


def _launch(tmp_path, names, devices: int, port: str) -> list[subprocess.Popen]:
    return start_processes(
        [[sys.executable, "-c", PROCESS, str(tmp_path), name, port] for name in names], devices
    )


def test_two_processes_equal_one_for_fsdp_sft_grpo_and_search(tmp_path):
    port = str(free_port())
    wait_all(_launch(tmp_path, ["0", "1"], devices=2, port=port), timeout=600)
    wait_all(_launch(tmp_path, ["single"], devices=4, port=port), timeout=600)
    reports = {n: json.loads((tmp_path / f"report_{n}.json").read_text()) for n in ("0", "1", "single")}
    assert reports["0"]["processes"] == 2 and reports["single"]["processes"] == 1
    assert all(r["devices"] == 4 for r in reports.values())
    (vocab, width), shard = reports["0"]["sft_embedding"]
    assert shard in ([vocab // 2, width], [vocab, width // 2])  # split over fsdp, not replicated
    for stage in ("sft", "grpo", "search"):
        arrays = {n: np.load(tmp_path / f"{stage}_{n}.npz") for n in ("0", "1", "single")}
        assert sorted(arrays["0"]) == sorted(arrays["single"]) and len(arrays["single"]) > 0, stage
        for key in arrays["single"]:
            np.testing.assert_array_equal(arrays["0"][key], arrays["1"][key], err_msg=f"{stage} {key}")
            np.testing.assert_allclose(
                arrays["0"][key], arrays["single"][key], rtol=0, atol=1e-5, err_msg=f"{stage} {key}"
            )


def test_cli_joins_two_processes_from_flags(tmp_path):
    """`python -m rtc.main --coordinator=... --num_processes=2 --process_id=I` on each process: one run."""
    port = str(free_port())
    command = [
        sys.executable,
        "-m",
        "rtc.main",
        "--config=experiments/configs/quickstart.py:tiny",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data_dir={tmp_path / 'data'}",
        f"--coordinator=127.0.0.1:{port}",
        "--num_processes=2",
    ]
    processes = start_processes([command + [f"--process_id={i}"] for i in range(2)], devices=2)
    logs = [out for out, _ in wait_all(processes, timeout=600)]
    assert "process 0 of 2" in logs[0] and "process 1 of 2" in logs[1]
    assert logs[0].count("Held-out accuracy") == 1 and "Held-out accuracy" not in logs[1]
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_cli_flags_go_together():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtc.main",
            "--config=experiments/configs/quickstart.py:tiny",
            "--workdir=/tmp/x",
            "--coordinator=127.0.0.1:1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "--coordinator, --num_processes and --process_id go together" in out.stderr
