"""Verifiers as N grows (Lightman et al. 2023, fig. 3): PRM vs ORM vs majority vote on the same samples.

Command:   python -m rtc.main --config=experiments/configs/verifiers.py --workdir=/tmp/rtc_verifiers \
             --config.orm_workdir=/tmp/rtc_orm --config.prm_workdir=/tmp/rtc_prm \
             --config.policy_workdir=/tmp/rtc_orm/policy
           (the runs of experiments/configs/orm.py and prm.py; without them it trains the policy, the
           ORM and the PRM first, into WORKDIR/orm and WORKDIR/prm: about 20 min more)
Hardware:  2 CPU cores.
Runtime:   see experiments/README.md ("Verifiers as N grows"): 200 problems x 32 samples, both reward
           models scoring all 6,400 solutions.

Writes WORKDIR/verifiers.md (accuracy of majority, best-of-N and weighted vote by the ORM and by the PRM
under each aggregation, pass@N, at every N, with bootstrap intervals; each score's AUROC),
verifiers.png and verifiers.json. Fields on top of the PRM config (`prm.py`): `orm_workdir`,
`prm_workdir`, `checker_workdir` (a checker, experiments/configs/checker.py, scored as `checker`), and
`verifiers` (problems, samples per problem, the N of the curves, temperature, `reward_models`: which of
the ORM and PRM to score, e.g. `"('prm',)"` or `"()"`).
`:tiny` shrinks everything to check a setup in seconds.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from experiments.configs import prm


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = prm.get_config(arg)
    c.mode = "verifiers"
    c.orm_workdir = placeholder(str)
    c.prm_workdir = placeholder(str)
    c.verifiers = ml_collections.ConfigDict(
        dict(
            num_problems=200,
            large_n=32,
            budgets=(1, 2, 4, 8, 16, 32),
            temperature=1.0,
            num_draws=100,
            bootstrap=1000,
            reward_models=("orm", "prm"),  # the trained reward models scored; () with a checker alone
        )
    )
    if arg == "tiny":
        c.verifiers.update(num_problems=4, large_n=4, budgets=(1, 2, 4), num_draws=4, bootstrap=20)
    return c
