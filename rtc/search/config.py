"""What a test-time search does, as one static, hashable config (a `jax.jit` static argument).

Strategies (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally...", sec. 5; Beeching et al.
2024, HF search-and-learn, for DVTS) are one machinery with different group sizes:
- `best_of_n`: N independent samples per problem; nothing is pruned (groups of 1).
- `beam`: N live beams per problem; each step every beam is expanded, then the best N/M of the
    problem's N candidates are kept and each is copied M times (groups of N, keep N/M).
- `dvts`: N/M independent subtrees of M beams; each keeps its single best candidate and copies it M
    times (groups of M, keep 1): diverse verifier tree search.
- `mcts`: Monte Carlo tree search over steps (`rtc.search.mcts`): n / m simulations per tree, each
    expanding a leaf into M steps and rolling every child out; `trees` root-parallel trees per problem.
- `best_first`: best-first search over steps (`rtc.search.best_first`): a frontier of N paths per problem
    ordered by verifier score; each of at most `depth` iterations pops the best unfinished path and
    expands it into M children, which evict the frontier's lowest-scored paths when it is full.
A step ends at the delimiter token (a newline) or after `step_tokens` tokens; a path ends at a stop id.

Confidence strategies (Fu et al. 2025, "Deep Think with Confidence"; `rtc.sampling.confidence`) need no
verifier: they sample whole completions (depth 1, `step_tokens` new tokens) with the sampler's token
confidence on, and vote by the trace confidence (the lowest sliding-window group confidence):
- `confidence_weighted`: N samples, a confidence-weighted majority vote (among the top `eta`% most
    confident traces when `eta` is set).
- `deepconf_low` / `deepconf_high`: DeepConf online. `n_init` warm-up traces per problem set the stop
    threshold (the `100 - eta` percentile of their lowest group confidences; eta 10 / 90 unless set);
    the other N - n_init traces stop inside the compiled loop once their window confidence falls below
    it; the finished traces at or above the threshold vote, weighted by confidence.
- `consensus`: adaptive sampling: rounds of `round_size` traces per problem until the leading answer's
    confidence-weighted vote share reaches `tau` or N traces are spent.
"""

import dataclasses

from rtc.errors import ConfigError
from rtc.rewards.reward_model import AGGREGATIONS
from rtc.sampling.budget import ThinkingBudget
from rtc.sampling.rules import SamplingRule

TREE_STRATEGIES = ("beam", "dvts", "mcts", "best_first")
CONFIDENCE_STRATEGIES = ("confidence_weighted", "deepconf_low", "deepconf_high", "consensus")
STRATEGIES = ("best_of_n", *TREE_STRATEGIES, *CONFIDENCE_STRATEGIES)
# The DeepConf presets' eta: the percentage of warm-up traces above the stop threshold (Fu et al. 2025).
DEEPCONF_ETA = {"deepconf_low": 10.0, "deepconf_high": 90.0}
VERIFIER_KINDS = ("prm", "orm", "self", "checker")

# reasoning_effort -> (N, beam width M, depth in steps, fraction of the thinking budget), per strategy
# family. "low" spends ~1/8 of "high"'s generations, so one knob spans the scaling curve.
EFFORT = {
    "low": {"n": 2, "m": 2, "depth_fraction": 0.5, "thinking_fraction": 0.25},
    "medium": {"n": 4, "m": 2, "depth_fraction": 0.75, "thinking_fraction": 0.5},
    "high": {"n": 16, "m": 4, "depth_fraction": 1.0, "thinking_fraction": 1.0},
}


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Static settings of one compiled search.

    n: branches per problem (N); m: expansions per kept beam (M, beam width); depth: most steps;
    step_tokens: the static token cap of one step; lookahead: extra greedy steps rolled out from each
    candidate before it is scored for pruning (Snell et al. 2024 sec. 5.1), then discarded;
    aggregation: how step scores make a path score (last / min / product / mean); verifier_kind:
    `prm` scores every step delimiter, `orm` the last token of every step, `self` needs no verifier: a
    step scores the policy's probability of its least likely sampled token (`expand.self_readings`),
    `checker`: a step scores its probability under another language model, the verifier
    (`expand.verifier_readings`).
    Confidence strategies: confidence_k: top-k log-probs of the token confidence; window: tokens of the
    group confidence's sliding window; eta: percentage of traces kept (None: the strategy's preset, all
    traces for confidence_weighted and consensus); n_init: DeepConf's warm-up traces (0: max(2, N / 4));
    tau: the vote share that ends consensus sampling; round_size: traces per problem per consensus round;
    slots: rows per problem for slot refill (0: a row per trace, an ended or stopped trace idling in it
    until the sampler call ends; S > 0: S rows per problem, each taking the problem's next trace as soon as
    its own ends, on one device: `rtc.search.confidence_runner`, and for best_of_n
    `rtc.search.refill_search`, whole paths then read by the verifier step by step); shared_slots: the
    B * S rows take the next trace of any problem (one queue), so a problem whose traces end early lends
    its rows to the others; False: each problem's traces queue for its own S rows, which a paged cache
    reads its prompt once for (`rtc.sampling.refill`). The traces are the same either way.
    """

    strategy: str
    n: int
    m: int
    depth: int
    step_tokens: int
    stop_ids: tuple[int, ...]
    delimiter_id: int
    pad_id: int = 0
    rule: SamplingRule = SamplingRule(temperature=1.0)
    budget: ThinkingBudget | None = None
    lookahead: int = 0
    aggregation: str = "last"
    verifier_kind: str = "prm"
    trees: int = 1  # mcts: independent trees per problem (root parallelism)
    exploration: float = 1.0  # mcts: the UCT constant c
    confidence_k: int = 20
    window: int = 16
    eta: float | None = None
    n_init: int = 0
    tau: float = 0.95
    round_size: int = 4
    slots: int = 0
    shared_slots: bool = True

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown search strategy {self.strategy!r}; known: {list(STRATEGIES)}")
        if self.n < 1 or self.m < 1 or self.depth < 1 or self.step_tokens < 1:
            raise ConfigError(f"n, m, depth and step_tokens must be >= 1, got {self}")
        if self.strategy in CONFIDENCE_STRATEGIES:
            self._check_confidence()
        self._check_slots()
        if self.strategy == "best_first":
            self._check_best_first()
        elif self.strategy in TREE_STRATEGIES and self.n % self.m:
            raise ConfigError(
                f"N={self.n} branches is not divisible by beam width M={self.m}: {self.strategy} keeps "
                f"N/M beams and expands each M times; choose N a multiple of M"
            )
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"unknown aggregation {self.aggregation!r}; known: {sorted(AGGREGATIONS)}")
        if self.verifier_kind not in VERIFIER_KINDS:
            raise ConfigError(f"unknown verifier_kind {self.verifier_kind!r}; known: {list(VERIFIER_KINDS)}")
        if self.verifier_kind == "self" and self.lookahead:
            raise ConfigError(
                "verifier_kind='self' reads sampled tokens; greedy lookahead has none: set lookahead=0"
            )
        if self.verifier_kind == "self" and self.rule.temperature <= 0:
            raise ConfigError(
                "verifier_kind='self' scores a step by the probability of its sampled tokens: it needs "
                f"sampling (temperature > 0), got temperature={self.rule.temperature}"
            )
        if self.trees < 1 or (self.trees > 1 and self.strategy != "mcts"):
            raise ConfigError(f"trees={self.trees}: root-parallel trees (> 1) are an mcts setting")
        if self.lookahead < 0:
            raise ConfigError(f"lookahead must be >= 0, got {self.lookahead}")
        limit = None if self.budget is None else self.budget.max_thinking_tokens
        if self.split_steps and limit is not None and limit < self.step_tokens:
            raise ConfigError(
                f"thinking budget of {limit} tokens is below one search step ({self.step_tokens} tokens): "
                f"the search could not score a single thinking step; raise budget_tokens to at least "
                f"step_tokens, lower step_tokens, or use best_of_n"
            )

    def _check_slots(self):
        if self.slots < 0:
            raise ConfigError(f"slots is the rows per problem for slot refill (0: off), got {self.slots}")
        refilled = ("best_of_n", *CONFIDENCE_STRATEGIES)
        if self.slots and self.strategy not in refilled:
            raise ConfigError(f"slots={self.slots}: slot refill is a setting of {list(refilled)}")
        if self.slots and self.lookahead:
            raise ConfigError(
                f"slots={self.slots}: best_of_n through slot refill prunes nothing: set lookahead=0"
            )

    def _check_best_first(self):
        if self.m > self.n:
            raise ConfigError(
                f"best_first keeps a frontier of N={self.n} paths and expands the best into M={self.m} "
                f"children: M must be <= N"
            )
        if self.lookahead:
            raise ConfigError(
                f"best_first ranks paths by their own scores: lookahead must be 0, got {self.lookahead}"
            )

    def _check_confidence(self):
        if self.m != 1 or self.depth != 1 or self.lookahead or self.trees != 1:
            raise ConfigError(
                f"{self.strategy} samples whole completions: m, depth and trees must be 1 and lookahead 0 "
                f"(set the completion length with step_tokens), got m={self.m}, depth={self.depth}, "
                f"trees={self.trees}, lookahead={self.lookahead}"
            )
        if self.confidence_k < 1 or self.window < 1:
            raise ConfigError(f"confidence_k and window must be >= 1, got {self.confidence_k}, {self.window}")
        if self.eta is not None and not 0.0 < self.eta <= 100.0:
            raise ConfigError(f"eta is the percentage of traces kept, in (0, 100], got {self.eta}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau is a vote share, in (0, 1], got {self.tau}")
        if self.n_init < 0 or self.warmup_traces > self.n:
            raise ConfigError(f"n_init={self.n_init} warm-up traces: need 0 <= n_init <= N={self.n}")
        if self.strategy == "consensus" and (self.round_size < 1 or self.n % self.round_size):
            raise ConfigError(
                f"consensus draws rounds of round_size={self.round_size} traces up to N={self.n}: "
                f"choose N a multiple of round_size"
            )

    @property
    def group_size(self) -> int:
        """Rows that compete with each other when pruning (1: nothing is pruned)."""
        return {"beam": self.n, "dvts": self.m}.get(self.strategy, 1)

    @property
    def keep(self) -> int:
        """Candidates a group keeps each step; each is copied `group_size // keep` times."""
        return {"beam": self.n // self.m}.get(self.strategy, 1)

    @property
    def split_steps(self) -> bool:
        """Steps end at the delimiter (best-of-N and the confidence strategies sample whole completions as
        one step)."""
        return self.strategy in TREE_STRATEGIES

    @property
    def kept_percent(self) -> float:
        """eta: the percentage of traces kept by confidence (the DeepConf preset's unless set)."""
        return self.eta if self.eta is not None else DEEPCONF_ETA.get(self.strategy, 100.0)

    @property
    def warmup_traces(self) -> int:
        """DeepConf's N_init: warm-up traces per problem that set the online stop threshold."""
        return self.n_init or min(self.n, max(2, self.n // 4))

    @property
    def candidates(self) -> int:
        """Final paths per problem (K of `SearchOutput`)."""
        return self.n * self.trees

    @property
    def max_path_tokens(self) -> int:
        """Tokens one path can hold, lookahead included."""
        return (self.depth + self.lookahead) * self.step_tokens


def from_effort(
    effort: str,
    strategy: str,
    max_depth: int,
    max_thinking_tokens: int | None,
    **fields,
) -> SearchConfig:
    """The search that `reasoning_effort` = low / medium / high names (OpenAI's knob, applied to N,
    beam width, depth and the thinking budget together). `fields` fill the rest of `SearchConfig`."""
    if effort not in EFFORT:
        raise ConfigError(f"unknown reasoning_effort {effort!r}; known: {list(EFFORT)}")
    e = EFFORT[effort]
    budget = fields.pop("budget", None)
    if budget is not None and max_thinking_tokens is not None:
        limit = max(1, int(e["thinking_fraction"] * max_thinking_tokens))
        if strategy in TREE_STRATEGIES:
            limit = max(limit, fields.get("step_tokens", 1))
        budget = dataclasses.replace(budget, max_thinking_tokens=limit)
    return SearchConfig(
        strategy=strategy,
        n=e["n"],
        m=e["m"] if strategy in TREE_STRATEGIES else 1,
        depth=1 if strategy in CONFIDENCE_STRATEGIES else max(1, round(e["depth_fraction"] * max_depth)),
        budget=budget,
        **fields,
    )
