"""Process reward model (PRM): step labels for the SFT policy's solutions, then best-of-N.

Command:   python -m rtc.main --config=experiments/configs/prm.py --workdir=/tmp/rtc_prm \
             --config.policy.workdir=/tmp/rtc_orm/policy --config.eval_rm.compare_workdir=/tmp/rtc_orm
           (reuses the ORM run's policy and compares with its ORM; without them it trains its own policy)
Hardware:  2 CPU cores (shared with other jobs when measured, 2026-11-29).
Runtime:   6.6 min with the policy given: 4,000 solutions sampled, exact step labels (3,995 kept,
           5 without a step delimiter), 200 PRM steps, evaluation with Monte-Carlo labels of 100
           held-out solutions x 16 rollouts per step prefix.
Expected:  250 held-out problems x 8 solutions (35.6% correct): step accuracy 0.893 and step AUROC 0.948
           against exact labels (4,822 steps); outcome AUROC pooled 0.944 (last) / 0.948 (min) /
           0.955 (product) / 0.947 (mean), within a problem 0.53-0.56; best-of-8 34.0-34.8% for the
           four aggregations vs one sample 35.6%, majority 37.6%, ORM 33.6%, oracle 50.4%.
           MC (hard) vs exact step-label agreement for N = 1, 2, 4, 8, 16: 0.863, 0.876, 0.881, 0.889, 0.903.

The ORM config (`orm.py`) with `mode = "prm"` and exact step labels; `--config.rm.labels=mc_hard`
(or `mc_soft`) trains on Math-Shepherd labels instead. `:tiny` shrinks everything for the test.
"""

import importlib.util
from pathlib import Path

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("orm", Path(__file__).with_name("orm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg)
    c.mode = "prm"
    c.rm.labels = "exact"
    return c
