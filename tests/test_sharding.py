"""Data-parallel SFT on 8 fake CPU devices, and on 2 processes of 2, ends where the 1-process run does."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import free_port, run_on_fake_devices, start_processes, wait_all
import jax
import numpy as np
import pytest

from rtc.metrics import read_metrics
from rtc.parallel import mesh as mesh_lib

REPO = Path(__file__).resolve().parents[1]

# XLA_FLAGS must be set before jax is imported, hence a fresh process.
SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import jax
    import numpy as np

    from experiments.configs.quickstart import get_config
    from rtc.parallel import config_mesh
    from rtc.parallel import mesh as mesh_lib
    from rtc.pretrained.run_model import build_model
    from rtc.tokenizer.tokenizer import Tokenizer
    from rtc.train import sft

    out = Path(sys.argv[1])
    placed = []
    shard_batch = config_mesh.shard_batch

    def spy(batch, mesh):  # records where the loop's batches really live
        sharded = shard_batch(batch, mesh)
        placed.append({k: {"devices": len(v.sharding.device_set),
                           "shards": [list(s.data.shape) for s in v.addressable_shards]}
                       for k, v in sharded.items()})
        return sharded

    config_mesh.shard_batch = spy
    tokenizer = Tokenizer.load()
    report = {"device_count": jax.device_count(), "mesh_sizes": [mesh_lib.make_mesh(n).size for n in (None, 8, 1)]}
    for n in (8, 1):
        config = get_config("tiny")
        config.data_dir = str(out / "data")
        config.num_devices = n
        config.sft.update(num_steps=3, batch_size=8, log_every=1)
        model = build_model(config, tokenizer.vocab_size)
        state = sft.train(config, config.sft, out / f"devices{n}", tokenizer, model)
        leaves = jax.tree_util.tree_leaves_with_path(state["params"])
        np.savez(out / f"params{n}.npz", **{jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves})
        report[n] = {"batch": placed[-1], "batches": len(placed), "step": int(state["step"])}
        placed.clear()
    (out / "report.json").write_text(json.dumps(report))
""")


def test_eight_devices_equal_one(tmp_path):
    run_on_fake_devices(SCRIPT, str(tmp_path), timeout=600)
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["device_count"] == 8
    assert report["mesh_sizes"] == [8, 8, 1]  # one process may use any leading devices
    for key in ("tokens", "loss_mask"):  # [8, 129] split into one row per device, or kept whole
        assert report["8"]["batch"][key] == {"devices": 8, "shards": [[1, 129]] * 8}
        assert report["1"]["batch"][key] == {"devices": 1, "shards": [[8, 129]]}
    assert report["8"]["batches"] == report["1"]["batches"] == 3
    assert report["8"]["step"] == report["1"]["step"] == 3

    sharded, single = np.load(tmp_path / "params8.npz"), np.load(tmp_path / "params1.npz")
    assert sorted(sharded) == sorted(single) and len(single) > 0
    for name in single:  # data-parallel reductions sum in another order
        np.testing.assert_allclose(sharded[name], single[name], rtol=0, atol=1e-5, err_msg=name)
    records = [read_metrics(tmp_path / f"devices{n}") for n in (8, 1)]
    assert [[r["step"] for r in run] for run in records] == [[1, 2, 3]] * 2
    for name in ("loss", "token_accuracy", "grad_norm", "target_tokens"):
        np.testing.assert_allclose(
            *[[r[f"train/{name}"] for r in run] for run in records], rtol=1e-5, err_msg=name
        )
    for run in records:  # step 1 compiles and is not timed
        assert [sorted(k for k in r if "per_second" in k) for r in run] == [[]] + [
            ["train/row_tokens_per_second", "train/target_tokens_per_second"]
        ] * 2


def test_multi_process_mesh_must_span_every_device(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "device_count", lambda: 8)  # 4 devices on each of 2 hosts
    for n in (1, 4):  # a subset of devices would leave some process outside the mesh
        with pytest.raises(ValueError, match=rf"num_devices={n} with 2 processes.*uses all 8 devices"):
            mesh_lib.make_mesh(n)


# One process of a data-parallel run: `PROCESS_ID` of 2 (gloo collectives on the CPU), or `single`.
PROCESS = textwrap.dedent("""
    import json
    import sys
    from pathlib import Path

    import jax
    import numpy as np

    from experiments.configs.quickstart import get_config
    from rtc.eval import policy
    from rtc.metrics import MetricWriter
    from rtc.pretrained.run_model import build_model
    from rtc.tokenizer.tokenizer import Tokenizer
    from rtc.train import sft

    out, process, port = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    if process != "single":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process))
    tokenizer = Tokenizer.load()
    config = get_config("tiny")
    config.data_dir = str(out / "data")  # shared: process 0 prepares it, process 1 waits
    config.sft.update(num_steps=2, log_every=1)
    model = build_model(config, tokenizer.vocab_size)
    workdir = out / ("single" if process == "single" else "two")
    state = sft.train(config, config.sft, workdir, tokenizer, model)
    assert (jax.process_count(), jax.device_count(), int(state["step"])) == (
        (1, 4, 2) if process == "single" else (2, 4, 2)
    )
    leaves = jax.tree_util.tree_leaves_with_path(state["params"])  # replicated: any local copy is all
    params = {jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in leaves}
    np.savez(out / f"params_{process}.npz", **params)
    # Evaluation decodes rows sharded over every process's devices, then gathers them to print.
    with MetricWriter(workdir, progress=False) as writer:
        results = policy.evaluate(config, workdir, tokenizer, model, state["params"], writer, 2)
    (out / f"eval_{process}.json").write_text(json.dumps(results, sort_keys=True))
""")


def test_two_processes_equal_one(tmp_path):
    port = str(free_port())
    processes = start_processes(
        [[sys.executable, "-c", PROCESS, str(tmp_path), str(i), port] for i in range(2)], 2
    )
    logs = [out for out, _ in wait_all(processes, timeout=300)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    single = subprocess.run(
        [sys.executable, "-c", PROCESS, str(tmp_path), "single", port],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    params = {name: np.load(tmp_path / f"params_{name}.npz") for name in ("0", "1", "single")}
    assert sorted(params["0"]) == sorted(params["single"]) and len(params["single"]) > 0
    for name in params["single"]:
        np.testing.assert_array_equal(params["0"][name], params["1"][name], err_msg=name)
        np.testing.assert_allclose(params["0"][name], params["single"][name], rtol=0, atol=1e-5, err_msg=name)
    losses = [
        [r["train/loss"] for r in read_metrics(tmp_path / run) if "train/loss" in r]
        for run in ("two", "single")
    ]
    assert len(losses[0]) == 2  # process 0 alone writes metrics
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["2"]
    evals = {name: (tmp_path / f"eval_{name}.json").read_text() for name in ("0", "1", "single")}
    assert evals["0"] == evals["1"] == evals["single"]
    assert logs[0].count("Held-out accuracy") == 1 and "Held-out accuracy" not in logs[1]
