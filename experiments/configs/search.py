"""Test-time scaling on held-out arithmetic: best-of-N, voting, PRM beam search, DVTS, MCTS and best-first.

Command:   python -m rtc.main --config=experiments/configs/search.py --workdir=/tmp/rtc_search \
             --config.prm_workdir=/tmp/rtc_prm --config.policy_workdir=/tmp/rtc_orm/policy
           (the PRM run of experiments/configs/prm.py and its policy; without them it trains both
           first, into WORKDIR/prm)
Hardware:  2 CPU cores.
Runtime and result: README.md, "Test-time compute" and experiments/README.md (measured).

Writes WORKDIR/scaling.png (accuracy vs generated tokens, bootstrap bands, the 1-(1-p)^N oracle),
scaling.md, compute_optimal.md and search_results.json. Fields on top of the PRM config (`prm.py`):
- `prm_workdir`: a finished PRM (or ORM, with `search.verifier_kind="orm"`) run; with
  `search.verifier_kind="self"` (and `aggregation="min"`) no reward model is read: every step scores the
  policy's probability of its least likely sampled token, and `policy_workdir` must be given; with
  `search.verifier_kind="checker"` each step scores its probability under the checker LM of
  `checker_workdir` (experiments/configs/checker.py: the policy trained further; `aggregation="product"`
  makes the path score its probability of the whole path);
- `search`: problems, strategies, budgets N (generations per problem, Snell et al.'s unit), the
  large-N best-of-N run the sampling curves are drawn from, step shape (`step_tokens` x `depth`),
  beam width M, lookahead, MCTS trees and exploration, `reasoning_effort` (low / medium / high:
  N, M, depth and thinking budget together, overriding the budgets) and `budget_tokens` (thinking cap).
  The verifier-free confidence strategies (Fu et al. 2025, "Deep Think with Confidence") can be added to
  `strategies`: `confidence_weighted`, `deepconf_low`, `deepconf_high`, `consensus`, e.g.
  `--config.search.strategies="('best_of_n','beam','deepconf_low','consensus')"`; they sample whole
  completions of `depth x step_tokens` tokens and take the knobs `eta`, `window`, `tau`, `n_init`,
  `confidence_k`, `round_size`, `slots`. Their curves are drawn beside the others, against the tokens they generate.
`:tiny` shrinks everything to check a setup in seconds.
"""

import ml_collections

from ml_collections.config_dict import placeholder

from experiments.configs import prm


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = prm.get_config(arg)
    c.mode = "search"
    c.prm_workdir = placeholder(str)
    c.search = ml_collections.ConfigDict(
        dict(
            num_problems=200,
            strategies=("best_of_n", "beam", "dvts", "mcts", "best_first"),
            budgets=(4, 8, 16, 32),
            large_n=32,  # best-of-N samples per problem; majority / weighted / pass@k subsample them
            batch_problems=8,
            temperature=1.0,
            step_tokens=12,
            depth=10,
            beam_width=4,
            lookahead=0,
            aggregation="last",
            verifier_kind="prm",
            mcts_trees=1,
            mcts_exploration=1.0,
            # confidence strategies: percentage of traces kept by confidence (None: the strategy's preset,
            # 10 for deepconf_low, 90 for deepconf_high, all traces for confidence_weighted and consensus)
            eta=placeholder(float),
            window=16,  # tokens in the sliding window of the group confidence
            tau=0.95,  # consensus: the confidence-weighted vote share that stops drawing traces
            n_init=0,  # deepconf_*: warm-up traces per problem that set the stop threshold (0: max(2, N/4))
            confidence_k=20,  # top-k log-probs of the token confidence
            round_size=4,  # consensus: traces per problem per round (at most N; N a multiple of it)
            slots=0,  # rows per problem for slot refill of best_of_n and the confidence strategies (0: off)
            reasoning_effort=placeholder(str),
            budget_tokens=placeholder(int),
            num_draws=100,
            bootstrap=1000,
            difficulty_samples=4,
            difficulty_bins=5,
            router_thresholds=(0.0, 0.2, 0.4, 0.6, 0.8, 1.01),
        )
    )
    if arg == "tiny":
        c.search.update(
            num_problems=4,
            budgets=(2, 4),
            large_n=4,
            batch_problems=2,
            step_tokens=8,
            depth=4,
            beam_width=2,
            num_draws=4,
            bootstrap=20,
            difficulty_samples=2,
            difficulty_bins=2,
            window=4,
            round_size=2,
        )
    return c
