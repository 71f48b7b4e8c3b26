"""Data-parallel SFT on 8 fake CPU devices ends where the same run on 1 device does."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from rtc.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]

# XLA_FLAGS must be set before jax is imported, hence a fresh process.
SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import jax
    import numpy as np

    from experiments.configs.quickstart import get_config
    from rtc.parallel import mesh as mesh_lib
    from rtc.tokenizer.tokenizer import Tokenizer
    from rtc.train import sft_loop

    out = Path(sys.argv[1])
    placed = []
    shard_batch = mesh_lib.shard_batch

    def spy(batch, mesh):  # records where the loop's batches really live
        sharded = shard_batch(batch, mesh)
        placed.append({k: {"devices": len(v.sharding.device_set),
                           "shards": [list(s.data.shape) for s in v.addressable_shards]}
                       for k, v in sharded.items()})
        return sharded

    mesh_lib.shard_batch = spy
    tokenizer = Tokenizer.load()
    report = {"device_count": jax.device_count()}
    for n in (8, 1):
        config = get_config("tiny")
        config.data_dir = str(out / "data")
        config.num_devices = n
        config.train.update(num_steps=3, batch_size=8, log_every=1)
        model = sft_loop.build_model(config, tokenizer.vocab_size)
        state = sft_loop.train(config, out / f"devices{n}", tokenizer, model)
        leaves = jax.tree_util.tree_leaves_with_path(state["params"])
        np.savez(out / f"params{n}.npz", **{jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves})
        report[n] = {"batch": placed[-1], "batches": len(placed), "step": int(state["step"])}
        placed.clear()
    (out / "report.json").write_text(json.dumps(report))
""")


def test_eight_devices_equal_one(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["device_count"] == 8
    for key in ("tokens", "loss_mask"):  # [8, 129] split into one row per device, or kept whole
        assert report["8"]["batch"][key] == {"devices": 8, "shards": [[1, 129]] * 8}
        assert report["1"]["batch"][key] == {"devices": 1, "shards": [[8, 129]]}
    assert report["8"]["batches"] == report["1"]["batches"] == 3
    assert report["8"]["step"] == report["1"]["step"] == 3

    sharded, single = np.load(tmp_path / "params8.npz"), np.load(tmp_path / "params1.npz")
    assert sorted(sharded) == sorted(single) and len(single) > 0
    for name in single:  # data-parallel reductions sum in another order
        np.testing.assert_allclose(sharded[name], single[name], rtol=0, atol=1e-5, err_msg=name)
    losses = [[r["train/loss"] for r in read_metrics(tmp_path / f"devices{n}")] for n in (8, 1)]
    assert len(losses[0]) == 3
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
