"""The sampler on 8 fake CPU devices: rows split over `data` decode as they do on one device, with the dense
and with the paged KV cache (whose page pool the compiler places)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    from rtc.model import Model, model_config
    from rtc.parallel import mesh as mesh_lib
    from rtc.sampling.budget import ThinkingBudget
    from rtc.sampling.rules import SamplingRule
    from rtc.sampling.sampler import SamplerConfig, generate

    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=128))
    params = model.init_params(jax.random.key(0))
    dense = model
    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=128, kv_page_size=PAGE_SIZE))
    prompts = [[5 + i] * (1 + i) for i in range(8)]
    budget = ThinkingBudget(2, 3, max_thinking_tokens=4)
    cfg = SamplerConfig(max_new_tokens=12, stop_ids=(1,), rule=SamplingRule(1.0, top_k=8), budget=budget)
    single = generate(dense, params, prompts, jax.random.key(1), cfg)
    mesh = mesh_lib.make_mesh()
    seen = []
    stream = lambda step, tokens, live: seen.append(int(step))
    sharded = generate(model, mesh_lib.replicate(params, mesh), prompts, jax.random.key(1), cfg,
                       stream=stream, batch_sharding=mesh_lib.batch_sharded(mesh))
    jax.effects_barrier()
    print(json.dumps({
        "devices": jax.device_count(),
        "output_devices": len(sharded.tokens.sharding.device_set),
        "shard_rows": [s.data.shape[0] for s in sharded.tokens.addressable_shards],
        "tokens_equal": bool(np.array_equal(single.tokens, sharded.tokens)),
        "logprobs_close": bool(np.allclose(single.logprobs, sharded.logprobs, atol=1e-5)),
        "lengths_equal": bool(np.array_equal(single.lengths, sharded.lengths)),
        "streamed_steps": len(set(seen)),
    }))
    """
)


@pytest.mark.parametrize("page_size", [0, 4])
def test_sampler_on_eight_devices_equals_one(page_size):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    script = SCRIPT.replace("PAGE_SIZE", str(page_size))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8 and report["output_devices"] == 8
    assert report["shard_rows"] == [1] * 8
    assert report["tokens_equal"] and report["logprobs_close"] and report["lengths_equal"]
    assert report["streamed_steps"] > 0
