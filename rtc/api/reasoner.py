"""`Reasoner`: a loaded model that generates with a thinking budget and searches with a verifier."""

import dataclasses
import math
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from rtc.data.answers import extract_answer
from rtc.data.format import prompt_tokens
from rtc.errors import ConfigError
from rtc.eval import voting
from rtc.sampling import sampler as sampler_lib
from rtc.sampling.budget import ThinkingBudget, thinking_limit
from rtc.sampling.rules import SamplingRule
from rtc.sampling.stream import StreamPrinter
from rtc.search import runner
from rtc.search.config import CONFIDENCE_STRATEGIES, SearchConfig

from rtc.api.results import Generation, Sample, SearchResult, Verifier, _parse, load_verifier

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_STEP_TOKENS = 16
SEARCH_STRATEGIES = ("best_of_n", "beam", "dvts", "mcts", "best_first", "majority", *CONFIDENCE_STRATEGIES)


class _Relay:
    """A file-like `out` for `StreamPrinter` that hands each printed piece to the current callback."""

    def __init__(self):
        self.target: Callable[[str], object] | None = None

    def write(self, piece: str) -> None:
        if self.target is not None and piece:
            self.target(piece)

    def flush(self) -> None:
        pass


def _batch_bucket(rows: int) -> int:
    """The row count a batch of `rows` is padded to (a power of two), so nearby sizes share a program."""
    return 1 << max(0, math.ceil(math.log2(rows)))


class Reasoner:
    """A reasoning model ready to generate and search: `model`, `params`, `tokenizer`.

    Made by `rtc.load`; `config` is the run's resolved config when it came from an rtc workdir.
    """

    def __init__(self, model, params, tokenizer, config=None, source: str = ""):
        self.model, self.params, self.tokenizer = model, params, tokenizer
        self.config, self.source = config, source
        self._relay = _Relay()
        self._printer = StreamPrinter(tokenizer.decode, row=0, out=self._relay)  # one: no recompiles

    def __repr__(self):
        c = self.model.config
        return f"Reasoner({self.source!r}, {c.num_params / 1e6:.2f}M parameters, context {c.max_seq_len})"

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return tuple(self.tokenizer.stop_ids)

    def encode_prompts(self, texts: Sequence[str]) -> list[list[int]]:
        """`[bos] + prompt` token ids of each text (`rtc.data.format.prompt_tokens`); checks they fit."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise ConfigError("texts must be a non-empty list of strings")
        if not all(isinstance(t, str) for t in texts):
            raise ConfigError("texts must be a non-empty list of strings")
        prompts = [prompt_tokens(self.tokenizer, {"question": text}) for text in texts]
        context = self.model.config.max_seq_len
        for i, ids in enumerate(prompts):
            if len(ids) >= context:
                raise ConfigError(
                    f"text {i} is {len(ids)} tokens as a prompt, which leaves no room in the model's "
                    f"context of {context} tokens; shorten it"
                )
        return prompts

    def _room(self, prompts: list[list[int]], max_new_tokens: int | None) -> int:
        """`max_new_tokens`, by default as many as fit after the longest prompt's bucket (at most 256)."""
        if max_new_tokens is not None:
            if max_new_tokens < 1:
                raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
            return max_new_tokens
        longest, context = max(map(len, prompts)), self.model.config.max_seq_len
        padded = min(sampler_lib.bucket_length(longest), context - 1)
        return max(1, min(DEFAULT_MAX_NEW_TOKENS, context - max(padded, longest)))

    def _budget(self, limit_tokens: int, reasoning_effort, budget_tokens) -> ThinkingBudget:
        limit = thinking_limit(limit_tokens, reasoning_effort=reasoning_effort, budget_tokens=budget_tokens)
        t = self.tokenizer
        return ThinkingBudget(t.think_start_id, t.think_end_id, max_thinking_tokens=limit)

    def _sample(self, prompts, cfg: sampler_lib.SamplerConfig, seed: int, stream) -> list[Sample]:
        """Every prompt through the sampler in one batch (padded to a power of two rows)."""
        rows = prompts + [prompts[0]] * (_batch_bucket(len(prompts)) - len(prompts))
        self._printer.reset()
        self._relay.target = stream
        try:
            out = sampler_lib.generate(
                self.model,
                self.params,
                rows,
                jax.random.key(seed),
                cfg,
                stream=self._printer if stream is not None else None,
            )
            completions = sampler_lib.completions(out)
            jax.effects_barrier()  # every streamed piece is out before we return
        finally:
            self._relay.target = None
        thinking = np.asarray(out.thinking_tokens)
        return [
            _parse(self.tokenizer, completions[i], thinking[i], cfg.stop_ids) for i in range(len(prompts))
        ]

    def generate(
        self,
        texts: str | Sequence[str],
        *,
        reasoning_effort: str | None = None,
        budget_tokens: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int = 0,
        stream: Callable[[str], object] | None = None,
    ) -> list[Generation] | Generation:
        """A `Generation` per text (one for a single string): `n` samples each, as one batch.

        `budget_tokens` caps the thinking trace at that many tokens, then `</think>` is forced;
        `reasoning_effort` (low / medium / high) caps it at 1/4, 1/2 or all of `max_new_tokens` less
        16 for the answer (`rtc.sampling.budget`). `temperature=0` is greedy; `n > 1` samples need
        `temperature > 0` to differ. `stream(piece)` receives the first sample's text as it is
        generated. `max_new_tokens` defaults to what fits in the context (at most 256).
        """
        single = isinstance(texts, str)
        prompts = self.encode_prompts([texts] if single else texts)
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        new_tokens = self._room(prompts, max_new_tokens)
        cfg = sampler_lib.SamplerConfig(
            max_new_tokens=new_tokens,
            stop_ids=self.stop_ids,
            pad_id=self.tokenizer.pad_id,
            rule=SamplingRule(temperature=temperature, top_p=top_p if temperature else 1.0),
            budget=self._budget(new_tokens, reasoning_effort, budget_tokens),
        )
        samples = self._sample([p for p in prompts for _ in range(n)], cfg, seed, stream)
        texts = [texts] if single else list(texts)
        results = [Generation(text, tuple(samples[i * n : (i + 1) * n])) for i, text in enumerate(texts)]
        return results[0] if single else results

    def search(
        self,
        texts: str | Sequence[str],
        *,
        verifier: str | Path | Verifier | None = None,
        strategy: str = "best_of_n",
        n: int = 8,
        beam_width: int | None = None,
        step_tokens: int = DEFAULT_STEP_TOKENS,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        reasoning_effort: str | None = None,
        budget_tokens: int | None = None,
        eta: float | None = None,
        tau: float = 0.95,
        seed: int = 0,
    ) -> list[SearchResult] | SearchResult:
        """A `SearchResult` per text (one for a single string): `n` candidates, their scores, the choice.

        `strategy`: best_of_n, beam, dvts, mcts, best_first (`rtc.search`, scored by `verifier`: an ORM/PRM run's
        workdir, a checker's SFT run (each step scores its probability under the checker, a path the
        product), a `Verifier`, or "self": the policy's probability of each step's least likely token,
        read from the sampler at no cost), majority (sample `n`, take the most frequent answer; no verifier), or,
        with no verifier, confidence_weighted / deepconf_low / deepconf_high / consensus (Fu et al. 2025:
        votes weighted by trace confidence, keeping the top `eta`% of traces; DeepConf stops weak traces
        while they are generated; consensus draws rounds of 4 until the leading answer holds a `tau`
        share of the vote, and returns only the traces it drew; a trace stopped early is unfinished).
        A path is at most `max_new_tokens` tokens, in steps of `step_tokens` (a step also ends at a
        newline); `beam_width` is the beam width M of beam / DVTS / MCTS (default: min(4, n), 2 for
        MCTS). The thinking budget works as in `generate`.
        """
        if strategy not in SEARCH_STRATEGIES:
            raise ConfigError(f"unknown search strategy {strategy!r}; known: {list(SEARCH_STRATEGIES)}")
        single = isinstance(texts, str)
        prompts = self.encode_prompts([texts] if single else texts)
        new_tokens = self._room(prompts, max_new_tokens)
        budget = self._budget(new_tokens, reasoning_effort, budget_tokens)
        if strategy == "majority":
            if verifier is not None:
                raise ConfigError("majority voting uses no verifier; for verifier scores use best_of_n")
            results = self._majority(prompts, new_tokens, budget, n, temperature, seed)
        elif strategy in CONFIDENCE_STRATEGIES:
            if verifier is not None:
                raise ConfigError(f"{strategy} votes by the model's own confidence: it uses no verifier")
            knobs = dict(eta=eta, tau=tau, round_size=min(4, n))
            cfg = self._search_config(strategy, n, 1, 0, new_tokens, temperature, budget, None, knobs)
            results = self._tree_search(prompts, cfg, None, seed)
        elif verifier == "self":  # the policy's own step check: no second model (expand.self_readings)
            knobs = dict(aggregation="min", verifier_kind="self")
            cfg = self._search_config(
                strategy, n, beam_width, step_tokens, new_tokens, temperature, budget, None, knobs
            )
            results = self._tree_search(prompts, cfg, None, seed)
        else:
            if verifier is None:
                raise ConfigError(
                    f"strategy {strategy!r} needs a verifier (an ORM/PRM run, or 'self'); or use 'majority'"
                )
            verifier = verifier if isinstance(verifier, Verifier) else load_verifier(verifier)
            if verifier.model.config.vocab_size != self.model.config.vocab_size:
                raise ConfigError(
                    f"the verifier reads a vocabulary of {verifier.model.config.vocab_size} tokens, the "
                    f"policy writes {self.model.config.vocab_size}: they need one tokenizer"
                )
            cfg = self._search_config(
                strategy, n, beam_width, step_tokens, new_tokens, temperature, budget, verifier
            )
            results = self._tree_search(prompts, cfg, verifier, seed)
        texts = [texts] if single else list(texts)
        results = [dataclasses.replace(r, prompt=text) for r, text in zip(results, texts)]
        return results[0] if single else results

    def _search_config(
        self, strategy, n, m, step_tokens, new_tokens, temperature, budget, verifier, knobs=None
    ):
        whole = strategy == "best_of_n" or strategy in CONFIDENCE_STRATEGIES  # one step: the whole path
        if m is None:
            m = 1 if whole else (2 if strategy == "mcts" else min(4, n))
        if verifier is not None:
            knobs = dict(aggregation=verifier.aggregation, verifier_kind=verifier.kind)
        return SearchConfig(
            strategy=strategy,
            n=n,
            m=m,
            depth=1 if whole else max(1, new_tokens // step_tokens),
            step_tokens=new_tokens if whole else step_tokens,
            stop_ids=self.stop_ids,
            delimiter_id=self.tokenizer.step_id,
            pad_id=self.tokenizer.pad_id,
            rule=SamplingRule(temperature=temperature),
            budget=budget,
            **(knobs or {}),
        )

    def _tree_search(
        self, prompts, cfg: SearchConfig, verifier: Verifier | None, seed: int
    ) -> list[SearchResult]:
        """The compiled search over every prompt at once (the problem count padded to a power of two);
        with no verifier, a confidence strategy voting on the answers read from the completions."""
        rows = prompts + [prompts[0]] * (_batch_bucket(len(prompts)) - len(prompts))
        scorer = (verifier.model, verifier.params) if verifier is not None else (None, None)
        answer_of = lambda ids: extract_answer(self.tokenizer.decode(ids))  # noqa: E731
        out = runner.run(
            self.model, self.params, *scorer, rows, jax.random.key(seed), cfg, answer_of=answer_of
        )
        results = []
        for b, branches in enumerate(out.completions()[: len(prompts)]):
            k = int(out.drawn[b].sum()) if isinstance(out, runner.ConfidenceResult) else len(branches)
            candidates = tuple(
                _parse(self.tokenizer, ids, out.thinking_tokens[b, i], cfg.stop_ids)
                for i, ids in enumerate(branches[:k])  # consensus: the drawn traces come first
            )
            scores = tuple(float(s) for s in out.scores[b, :k])
            duplicate = tuple(bool(d) for d in out.duplicate[b, :k])
            results.append(SearchResult("", candidates, scores, duplicate, int(out.best[b])))
        return results

    def _majority(self, prompts, new_tokens, budget, n, temperature, seed) -> list[SearchResult]:
        """Self-consistency (Wang et al. 2023): `n` samples per prompt, the most frequent answer wins."""
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        cfg = sampler_lib.SamplerConfig(
            max_new_tokens=new_tokens,
            stop_ids=self.stop_ids,
            pad_id=self.tokenizer.pad_id,
            rule=SamplingRule(temperature=temperature),
            budget=budget,
        )
        samples = self._sample([p for p in prompts for _ in range(n)], cfg, seed, None)
        groups = [samples[i * n : (i + 1) * n] for i in range(len(prompts))]
        ids = voting.answer_ids([[s.answer for s in group] for group in groups])  # i32[P, n]
        votes = (ids[:, :, None] == ids[:, None, :]).sum(-1) / n  # f[P, n]: each answer's vote share
        share = np.where(ids == voting.NO_ANSWER, 0.0, votes)
        best = voting.majority_vote_ids(ids)
        return [
            SearchResult("", tuple(group), tuple(map(float, share[p])), (False,) * n, int(best[p]))
            for p, group in enumerate(groups)
        ]
