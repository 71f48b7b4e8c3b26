"""The search on 8 fake CPU devices equals the search on one, for every strategy and placement,
including fewer problems than devices (one problem's 16 branches spread over all 8)."""

import json
import textwrap

from helpers import run_on_fake_devices

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json
    import jax
    import numpy as np
    from rtc.model import Model, model_config
    from rtc.parallel import mesh as mesh_lib
    from rtc.sampling.rules import SamplingRule
    from rtc.search import runner
    from rtc.search.config import SearchConfig

    policy = Model(model_config("test-tiny", vocab_size=12, max_seq_len=128))
    params = policy.init_params(jax.random.key(0))
    verifier = Model(dataclasses.replace(policy.config, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    mesh = mesh_lib.make_mesh()
    prompts = [[1, 6, 7, 8], [1, 9, 10, 11, 6, 7, 8], [1, 6], [1, 7, 7, 9, 10]]
    cases = [
        ("best_of_n", 8, 1, 2, "auto", 0),
        ("dvts", 8, 2, 2, "auto", 0),  # subtrees of 2 on a device: local gathers
        ("beam", 4, 2, 4, "auto", 0),  # 16 rows over 8 devices: 2 a device, a problem spans 2 devices
        ("beam", 16, 4, 1, "auto", 0),  # one problem, 16 beams over 8 devices: fewer problems than devices
        ("beam", 8, 2, 3, "auto", 1),  # 3 problems: padded to 4 so 32 rows split; lookahead 1
        ("dvts", 8, 4, 2, "global", 0),  # forced global gather
        ("beam", 32, 4, 1, "auto", 0),  # one problem over 8 devices: survivors exchanged all_to_all
        ("mcts", 4, 2, 4, "auto", 0),  # 4 problems x 2 trees: one tree a device
        ("mcts", 4, 2, 1, "auto", 0),  # 1 problem: padded to 4 so its 2 trees and 6 others fill 8 devices
    ]
    report = {"devices": jax.device_count()}
    for strategy, n, m, problems, placement, lookahead in cases:
        cfg = SearchConfig(strategy=strategy, n=n, m=m, depth=3, step_tokens=5, stop_ids=(2,), delimiter_id=3,
                           rule=SamplingRule(temperature=1.0), lookahead=lookahead,
                           trees=2 if strategy == "mcts" else 1)
        args = (policy, params, verifier, vparams, prompts[:problems], jax.random.key(4), cfg)
        one = runner.run(*args)
        eight = runner.run(policy, mesh_lib.replicate(params, mesh), verifier, mesh_lib.replicate(vparams, mesh),
                           *args[4:], mesh=mesh, placement=placement)
        name = f"{strategy}-{n}-{m}-{problems}-{placement}-{lookahead}"
        report[name] = {
            "tokens": bool(np.array_equal(one.tokens, eight.tokens)),
            "lengths": bool(np.array_equal(one.lengths, eight.lengths)),
            "best": bool(np.array_equal(one.best, eight.best)),
            "duplicate": bool(np.array_equal(one.duplicate, eight.duplicate)),
            "scores": bool(np.allclose(one.scores, eight.scores, atol=1e-5)),
            "generated": bool(np.array_equal(one.generated_tokens, eight.generated_tokens)),
            "problems": int(one.tokens.shape[0]),
        }
    # A problem spanning devices whose beams all finish at once keeps every path (exchange with `keep`).
    cfg = SearchConfig(strategy="beam", n=32, m=4, depth=3, step_tokens=5, stop_ids=(8,), delimiter_id=3,
                       rule=SamplingRule(temperature=0.0))
    args = (policy, params, verifier, vparams, [[1, 6, 7, 8]], jax.random.key(4), cfg)
    one = runner.run(*args)
    eight = runner.run(policy, mesh_lib.replicate(params, mesh), verifier, mesh_lib.replicate(vparams, mesh),
                       *args[4:], mesh=mesh)
    report["settled"] = {
        "tokens": bool(np.array_equal(one.tokens, eight.tokens)),
        "duplicate": bool(np.array_equal(one.duplicate, eight.duplicate)),
        "none_dropped": bool(not eight.duplicate.any() and eight.finished.all()),
        "problems": 1,
    }

    # Independent branches never move a KV cache between devices: no all-gather of `[R, ...]` arrays
    # when every device holds whole groups; the forced global prune all-gathers them every step.
    import re
    from rtc.search import tree_search
    tokens, lengths = np.ones((4, 16), np.int32), np.full((4,), 5, np.int32)
    cases = [("best_of_n", 1, "auto"), ("dvts", 2, "auto"), ("dvts", 2, "global"), ("beam", 2, "auto")]
    for strategy, m, placement in cases:
        cfg = SearchConfig(strategy=strategy, n=8, m=m, depth=3, step_tokens=5, stop_ids=(2,), delimiter_id=3)
        hlo = tree_search.search.lower(policy, params, verifier, vparams, tokens, lengths, jax.random.key(0),
                                       cfg=cfg, mesh=mesh, placement=placement).compile().as_text()
        report[f"row_gathers-{strategy}-{placement}"] = len(re.findall(r"f32\\[32,2,\\d+,16\\][^ ]* all-gather", hlo))
        report[f"all_to_all-{strategy}-{placement}"] = len(re.findall(r"f32\\[[^ ]*\\][^ ]* all-to-all", hlo))
    print(json.dumps(report))
    """
)


def test_search_on_eight_devices_equals_one():
    out = run_on_fake_devices(SCRIPT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report.pop("devices") == 8
    assert report.pop("row_gathers-best_of_n-auto") == 0
    assert report.pop("row_gathers-dvts-auto") == 0
    assert report.pop("row_gathers-dvts-global") > 0
    # a beam search whose problem spans devices (8 beams, 4 rows a device) exchanges only the survivors
    assert report.pop("row_gathers-beam-auto") == 0 and report.pop("all_to_all-beam-auto") > 0
    for name in [k for k in report if k.startswith("all_to_all-")]:
        report.pop(name)
    for name, checks in report.items():
        problems = checks.pop("problems")
        assert name == "settled" or problems == int(name.split("-")[3]), name
        assert all(checks.values()), (name, checks)


PAGED_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json
    import jax
    import numpy as np
    from rtc.model import Model, model_config
    from rtc.parallel import mesh as mesh_lib
    from rtc.sampling.rules import SamplingRule
    from rtc.search import runner
    from rtc.search.config import SearchConfig

    dense = Model(model_config("test-tiny", vocab_size=12, max_seq_len=128))
    params = dense.init_params(jax.random.key(0))
    vdense = Model(dataclasses.replace(dense.config, scalar_head=True))
    vparams = vdense.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    paged = lambda m: Model(dataclasses.replace(m.config, kv_page_size=4))
    mesh = mesh_lib.make_mesh()
    prompts = [[1, 6, 7, 8], [1, 9, 10, 11, 6, 7, 8], [1, 6], [1, 7, 7, 9, 10]]
    report = {}
    for strategy, n, m, problems in [("best_of_n", 8, 1, 2), ("beam", 16, 4, 1), ("dvts", 8, 2, 2), ("mcts", 4, 2, 4)]:
        cfg = SearchConfig(strategy=strategy, n=n, m=m, depth=3, step_tokens=5, stop_ids=(2,), delimiter_id=3,
                           rule=SamplingRule(temperature=1.0), trees=2 if strategy == "mcts" else 1)
        rest = (prompts[:problems], jax.random.key(4), cfg)
        one = runner.run(dense, params, vdense, vparams, *rest)
        eight = runner.run(paged(dense), mesh_lib.replicate(params, mesh), paged(vdense),
                           mesh_lib.replicate(vparams, mesh), *rest, mesh=mesh)
        report[strategy] = bool(np.array_equal(one.tokens, eight.tokens)) and bool(
            np.allclose(one.scores, eight.scores, atol=1e-5))
    print(json.dumps(report))
    """
)


def test_paged_search_on_eight_devices_equals_dense_on_one():
    out = run_on_fake_devices(PAGED_SCRIPT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"best_of_n": True, "beam": True, "dvts": True, "mcts": True}, report
