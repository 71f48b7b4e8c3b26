"""Process reward model (PRM): step labels for the SFT policy's solutions, then best-of-N.

Command:   python -m rtc.main --config=experiments/configs/prm.py --workdir=/tmp/rtc_prm \
             --config.policy_workdir=/tmp/rtc_orm/policy --config.eval_rm.compare_workdir=/tmp/rtc_orm
           (reuses the ORM run's policy and compares with its ORM; without them it trains its own policy)
Hardware:  2 CPU cores.
Runtime and result: README.md, "Reward models (ORM and PRM)" (measured).

The ORM config (`orm.py`) in mode `prm` with exact step labels; `--config.rm_data.labels=mc_hard` (or
`mc_soft`) trains on Math-Shepherd labels instead, `human` on PRM800K-format files. The verifier's own
preset (`rm.preset`, `verifier_workdir`) and early stopping on held-out within-problem AUROC
(`rm.select_every`, `rm_data.validation_problems`; a solution scored by `rm_data.aggregation` of its step
scores) are described in `orm.py`.
`:tiny` shrinks everything to check a setup in seconds.
"""

from experiments.configs import orm


def get_config(arg: str = ""):
    return orm.get_config(arg, mode="prm")
