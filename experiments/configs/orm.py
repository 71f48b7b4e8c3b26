"""Outcome reward model (ORM): the SFT policy's solutions labelled by the verifier, then best-of-N.

Command:   python -m rtc.main --config=experiments/configs/orm.py --workdir=/tmp/rtc_orm
           (the policy is trained first into WORKDIR/policy with the `sft` block; skip that with
           --config.policy_workdir=DIR of a finished SFT run of the same model)
Hardware:  2 CPU cores.
Runtime and result: README.md, "Reward models (ORM and PRM)" (measured).

Blocks: `sft` / `policy_workdir` (the policy sampled from), `rm_data` (problems, solutions per problem,
sampling temperature, labels; `hard_negatives`: gold chains beside copies with one slip carried through;
`validation_problems`: see below), `rm` (the reward model's training; `head_only`: only the scalar head;
`preset`, `select_every`: see below), `eval_rm` (held-out problems, best-of-N size, `compare_workdir`: a
run of the other kind to compare with).

The verifier's size: `rm.preset` (None: the policy's network, `model` overrides included, initialised from
the policy) may name another preset of rtc.model.config.PRESETS, e.g. `--config.rm.preset=cpu-medium`.
The reward model is then that preset alone (with the policy's context when `model.max_seq_len` is set),
initialised from `verifier_workdir`, a finished SFT run of that preset, or else from its own SFT on the
task with the `sft` block, trained into WORKDIR/verifier_sft. Without `rm.preset`, `verifier_workdir` is
an SFT run of the policy's network to start from instead of the policy. Either way the reward model still
judges the policy's solutions: only the model that scores them changes.

Early stopping: with `rm.select_every` > 0, every that many steps (and at the last step) the reward model
scores `rm_data.group_size` solutions of each of `rm_data.validation_problems` training problems (the
ones after the first `rm_data.num_problems`, never trained on; a PRM by `rm_data.aggregation` of its step
scores), and the step with the best within-problem AUROC is kept (WORKDIR/best/) and loaded by default;
WORKDIR/selection.json holds every evaluated step's AUROC and the chosen step. 0 (the default): the last
step, as before.
`checker_workdir`: a checker (experiments/configs/checker.py), an SFT run trained past the policy whose
probability of each solution is scored beside the reward models as `checker`.
`:tiny` shrinks everything to check a setup in seconds.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from experiments.configs import common


def get_config(arg: str = "", mode: str = "orm"):
    parts = common.variants(arg, {"tiny"}, mode)
    c = common.base(mode)
    c.policy_workdir = placeholder(str)  # a finished SFT run (skips training the policy)
    c.checker_workdir = placeholder(str)  # a checker LM (experiments/configs/checker.py), scored beside
    c.verifier_workdir = placeholder(str)  # a finished SFT run of rm.preset (skips the verifier's own SFT)
    c.sft = common.sft()
    c.rm = common.training(
        seq_len=160,  # [bos] + prompt + completion (eval.max_new_tokens)
        num_steps=200,
        learning_rate=1e-4,
        warmup_steps=20,
        weight_decay=0.0,
        checkpoint_every=100,
        head_only=False,
        preset=placeholder(str),  # the verifier's model preset (None: the policy's network)
        select_every=0,  # > 0: keep the step with the best held-out within-problem AUROC (0: the last)
    )
    c.rm_data = ml_collections.ConfigDict(
        dict(
            num_problems=1000,  # training problems
            group_size=4,  # sampled solutions per problem
            temperature=1.0,
            sample_batch_size=128,
            labels="verifier" if mode == "orm" else "exact",  # PRM: exact / mc_hard / mc_soft / human
            human_path=placeholder(str),  # labels="human": a PRM800K-format .jsonl (your own download)
            neutral="positive",  # PRM800K neutral (0) ratings: positive (Lightman et al.) or negative
            mc_rollouts=8,  # Monte-Carlo labels: rollouts per step prefix
            mc_prefix_batch=16,  # step prefixes per sampler call (x mc_rollouts rows)
            mc_temperature=1.0,
            aggregation="product",  # PRM solution score used downstream (last / min / product / mean)
            # hard negatives (arithmetic): per problem, its gold chain and this many copies with one slip
            # carried through (rtc.rewards.hard_negatives), for the first hard_negative_problems problems
            # (0: num_problems); no policy sampling, so they can cover the whole training split
            hard_negatives=0,
            hard_negative_problems=0,
            # rm.select_every: training problems after the first num_problems, held out to choose the step
            validation_problems=0,
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
            compare_workdir=placeholder(str),  # a finished run of the other kind, to compare with
        )
    )
    if "tiny" in parts:
        common.shrink(c)
        c.task.update(num_train=32, num_test=8, levels=(1, 2))
        c.sft.update(num_steps=30, checkpoint_every=30, log_every=10)
        c.rm.update(batch_size=4, seq_len=96, num_steps=4, warmup_steps=1, log_every=2, checkpoint_every=2)
        c.rm_data.update(num_problems=8, group_size=2, sample_batch_size=16, mc_rollouts=2, mc_prefix_batch=4)
        c.eval_rm.update(
            num_problems=4,
            best_of_n=2,
            sample_batch_size=8,
            score_batch_size=8,
            mc_solutions=2,
            mc_rollouts=2,
        )
    return c
