"""A generative verifier ("checker"): the policy's network trained further on the task's gold chains.

Command:   python -m rtc.main --config=experiments/configs/checker.py --workdir=/tmp/rtc_checker \
             --config.policy_workdir=/tmp/rtc_quickstart
Hardware:  2 CPU cores.
Runtime:   see experiments/README.md ("A checker trained past the policy").

The checker reads a solution back teacher-forced and scores it by its probability of the whole completion
(`rtc.rewards.self_check.checker_scores`; in the search, each step by its probability), as the policy
reading itself back does, but with weights that compute the task better than the policy's: a slip the
policy believes (greedy `16*9=104`) is a token the checker finds unlikely. It is an SFT run that starts from `policy_workdir`'s params (fresh optimizer
and schedule) and trains `sft.num_steps` more steps on the same data; its own greedy accuracy is printed at
the end, as for any SFT run. Give it to the verifier runs as `checker_workdir` (prm.py, orm.py,
verifiers.py, search.py). `:tiny` shrinks everything to check a setup in seconds.
"""

from ml_collections.config_dict import placeholder

from experiments.configs import quickstart


def get_config(arg: str = ""):
    c = quickstart.get_config(arg)
    c.policy_workdir = placeholder(str)  # the SFT run whose params the checker starts from
    if arg != "tiny":
        c.sft.num_steps = 2400
    return c
