"""Outcome reward model (ORM): the SFT policy's solutions labelled by the verifier, then best-of-N.

Command:   python -m rtc.main --config=experiments/configs/orm.py --workdir=/tmp/rtc_orm
Hardware:  2 CPU cores (shared with other jobs when measured, 2026-11-29).
Runtime:   the policy first (quickstart SFT, 600 steps, into WORKDIR/policy; skip it with
           --config.policy.workdir=DIR of a finished SFT run of the same model), then 5.3 min:
           4,000 solutions sampled and labelled (~40 s), 200 ORM steps, evaluation.
Expected:  on 250 held-out problems x 8 solutions (35.6% correct): ORM AUROC 0.949 pooled but 0.552
           within a problem, so best-of-8 by ORM (33.6%) does not beat one sample (35.6%); majority
           vote 37.6%, oracle 50.4%. Measured with the policy of the quickstart run (same seed).
           Longer training (800 steps, lr 3e-4) overfits: within-problem AUROC 0.385, best-of-8 30.0%.

Fields on top of the quickstart config (`experiments/configs/quickstart.py`):
- `policy.workdir` / `policy.train`: the policy to sample from (an SFT run, or these SFT settings);
- `rm`: training data (problems, solutions per problem, sampling temperature, labels);
- `train`: the reward model's training (`head_only`: train only the scalar head);
- `eval_rm`: held-out problems, best-of-N size, and `compare_workdir` (a PRM run to compare with).
`:tiny` shrinks everything for the end-to-end test.
"""

import importlib.util
from pathlib import Path

import ml_collections


def quickstart(arg: str) -> ml_collections.ConfigDict:
    """The quickstart config (loaded from its file beside this one, as the CLI loads configs)."""
    spec = importlib.util.spec_from_file_location("quickstart", Path(__file__).with_name("quickstart.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny"):
        raise ValueError(f"unknown orm variant {arg!r}; known: 'tiny'")
    c = quickstart(arg)
    c.mode = "orm"
    c.policy = ml_collections.ConfigDict(dict(workdir="", train=c.train.to_dict()))
    c.train = ml_collections.ConfigDict(
        dict(
            batch_size=32,
            seq_len=160,  # [bos] + prompt + completion (eval.max_new_tokens)
            num_steps=200,
            learning_rate=1e-4,
            warmup_steps=20,
            weight_decay=0.0,
            grad_clip=1.0,
            log_every=50,
            checkpoint_every=100,
            max_to_keep=2,
            halt_after=-1,
            head_only=False,
        )
    )
    c.rm = ml_collections.ConfigDict(
        dict(
            num_problems=1000,  # training problems
            group_size=4,  # sampled solutions per problem
            temperature=1.0,
            sample_batch_size=128,
            labels="verifier",  # ORM: the task's answer check; PRM: exact / mc_hard / mc_soft / human
            human_path="",  # labels="human": a PRM800K-format .jsonl (your own download)
            neutral="positive",  # PRM800K neutral (0) ratings: positive (Lightman et al.) or negative
            mc_rollouts=8,  # Monte-Carlo labels: rollouts per step prefix
            mc_prefix_batch=16,  # step prefixes per sampler call (x mc_rollouts rows)
            mc_temperature=1.0,
            aggregation="product",  # PRM solution score used downstream (last / min / product / mean)
        )
    )
    c.eval_rm = ml_collections.ConfigDict(
        dict(
            num_problems=250,
            best_of_n=8,
            temperature=1.0,
            sample_batch_size=128,
            score_batch_size=64,
            mc_solutions=100,  # PRM runs: held-out solutions whose Monte-Carlo labels are compared
            mc_rollouts=16,
            compare_workdir="",  # a finished run of the other kind, for the best-of-N comparison
        )
    )
    if arg == "tiny":
        c.task.update(num_train=32, num_test=8, levels=(1, 2))
        c.policy.train.update(num_steps=30, checkpoint_every=30, log_every=10)
        c.train.update(batch_size=4, seq_len=96, num_steps=4, warmup_steps=1, log_every=2, checkpoint_every=2)
        c.rm.update(num_problems=8, group_size=2, sample_batch_size=16, mc_rollouts=2, mc_prefix_batch=4)
        c.eval_rm.update(
            num_problems=4,
            best_of_n=2,
            sample_batch_size=8,
            score_batch_size=8,
            mc_solutions=2,
            mc_rollouts=2,
        )
    return c
