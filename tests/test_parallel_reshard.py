"""A checkpoint saved under one mesh and rule set restores onto another with identical values."""

import json
import textwrap

from helpers import run_on_fake_devices

# XLA_FLAGS must be set before jax is imported, hence a fresh process.
SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import jax, numpy as np
    from rtc.checkpoint import Checkpointer
    from rtc.model.config import model_config
    from rtc.model.transformer import init_params
    from rtc.parallel import config_mesh, rules
    from rtc.train import optimizer as optimizer_lib
    from rtc.train.state import init_train_state

    out = Path(sys.argv[1])
    c = model_config("test-tiny", tie_embeddings=False)
    schedule = optimizer_lib.learning_rate_schedule(1e-3, 1, 10)
    optimizer = optimizer_lib.adamw(schedule, 0.1, 1.0)
    state = init_train_state(init_params(c, jax.random.key(0)), optimizer, jax.random.key(1))
    # Non-zero moments, so a mixed-up optimizer leaf would show.
    state["opt_state"] = jax.tree.map(lambda x: x + 0.5 if x.dtype == np.float32 else x, state["opt_state"])
    values = [np.asarray(x) for x in jax.tree.leaves(state)]

    def place(sizes, preset, num_devices=None):
        mesh = config_mesh.make_config_mesh(sizes, num_devices)
        return rules.train_state_shardings(state, mesh, preset)

    def template(shardings):  # what a restarted run builds: shapes and the new shardings, no values
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)

    def check(restored, shardings):
        return {
            "equal": all(np.array_equal(np.asarray(r), v) for r, v in zip(jax.tree.leaves(restored), values)),
            "same_sharding": all(r.sharding == s for r, s in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings))),
            "embedding": [len(restored["params"]["embedding"].sharding.device_set),
                          list(restored["params"]["embedding"].addressable_shards[0].data.shape)],
        }

    report = {}
    fsdp8, dp2 = place({"fsdp": 8}, "fsdp"), place({"data": 2}, "dp", num_devices=2)
    saved = jax.device_put(state, fsdp8)
    report["saved"] = [len(saved["params"]["embedding"].sharding.device_set),
                       list(saved["params"]["embedding"].addressable_shards[0].data.shape)]
    with Checkpointer(out / "checkpoints") as checkpointer:
        checkpointer.save(1, saved, {"mesh": "fsdp=8"})
        restored, meta = checkpointer.restore(template(dp2))
        report["fsdp8_to_dp2"] = {**check(restored, dp2), "meta": meta}
        checkpointer.save(2, restored, {"mesh": "data=2"})  # and back: 2-device copies to fsdp x tensor
        fsdp_tp = place({"fsdp": 4, "tensor": 2}, "fsdp_tp")
        report["dp2_to_fsdp_tp"] = check(checkpointer.restore(template(fsdp_tp), step=2)[0], fsdp_tp)
    print(json.dumps(report))
""")


def test_checkpoint_reshards_fsdp8_to_dp2_and_back(tmp_path):
    out = run_on_fake_devices(SCRIPT, str(tmp_path), timeout=600)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["saved"] == [8, [128, 64]]  # embedding [1024, 64] split 8 ways when saved
    assert report["fsdp8_to_dp2"] == {
        "equal": True,
        "same_sharding": True,  # the template's shardings decide
        "embedding": [2, [1024, 64]],  # a whole copy on each of the 2 devices
        "meta": {"mesh": "fsdp=8"},
    }
    assert report["dp2_to_fsdp_tp"] == {"equal": True, "same_sharding": True, "embedding": [8, [512, 16]]}
