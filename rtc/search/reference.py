"""Plain-Python reference of `tree_search.search` (and the pieces of `reference_best_first`), written the
way HF search-and-learn does it.

Beeching et al. (2024, HF search-and-learn) run best-of-N, PRM beam search (Snell et al. 2024, sec.
5.1) and DVTS as Python loops over problems, steps and beams, with no state kept between steps: each
step re-reads every beam's whole prefix (prompt + path) into a fresh policy KV cache, decodes the
step one token at a time, and re-scores the whole prefix with one full verifier pass
(`reward_model.prm_step_rewards` + `reward_model.aggregate`). This module does exactly that, so it
shares no search code with the compiled programs and checks them (tests/test_search_reference.py,
tests/test_search_best_first.py) and times the first (bench/search_bench.py). It is slow by design.

Randomness is the compiled search's, drawn the same way: step `s` splits `fold_in(rng, s)` once per
token and draws with `rule.get_next_tokens` over all `R = B * N` rows (problem-major), so each
problem places its rows' logits in a full `[R, V]` array. Lookahead rolls out greedy steps keyed by
`fold_in(fold_in(fold_in(rng, s), 1 << 20), i)`. Every jitted piece has one fixed shape (prefixes padded
to the prompt width plus `max_path_tokens`), so nothing recompiles per beam.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rtc.rewards import reward_model as rm
from rtc.sampling.rules import SamplingRule
from rtc.search.config import SearchConfig
from rtc.search.tree_search import SearchOutput

_NO_FORCE, _FORCE_CUE = 0, 1  # `sampler._force`'s modes
_LOOKAHEAD_STREAM = 1 << 20  # tree_search.py: lookahead keys fold this into the step's key
PER_PROBLEM = ("best", "generated_tokens", "verifier_tokens", "verifier_nan")


@dataclasses.dataclass(frozen=True)
class Beam:
    """One branch, as plain Python values."""

    path: tuple[int, ...] = ()  # the completion so far
    step_ends: tuple[int, ...] = ()  # index in `path` of each (non-empty) step's last token
    finished: bool = False
    duplicate: bool = False
    thinking: bool = False
    thought: int = 0
    force_mode: int = _NO_FORCE
    force_ptr: int = 0
    score: float = 0.0
    nan: int = 0


@functools.partial(jax.jit, static_argnames="policy")
def prefill(policy, params, tokens, length):
    """Reads a padded prefix `tokens: i32[1, C]` of `length` tokens into a fresh cache of C slots.

    Returns (next-token logits f32[V], cache whose next slot is `length`).
    """
    c = tokens.shape[1]
    positions = jnp.arange(c, dtype=jnp.int32)[None]  # [1, C]
    logits, _, cache = policy.apply(params, tokens, positions, policy.init_cache(1, c))
    return logits[0, length - 1], {**cache, "index": jnp.reshape(length, (1,)).astype(jnp.int32)}


@functools.partial(jax.jit, static_argnames="policy")
def decode_token(policy, params, token, cache):
    """Feeds `token: i32[]` at the cache's next slot; returns (next-token logits f32[V], cache)."""
    positions = cache["index"][:, None]  # [1, 1]
    logits, _, cache = policy.apply(params, jnp.reshape(token, (1, 1)), positions, cache)
    return logits[0, 0], cache


@functools.partial(jax.jit, static_argnames="rule")
def draw(rule: SamplingRule, logits, key):
    """i32[R]: the rule's draw for every row of `logits: f32[R, V]`."""
    return rule.get_next_tokens(logits, key)


@functools.partial(jax.jit, static_argnames=("verifier", "verifier_kind", "delimiter_id", "aggregation"))
def path_score(
    verifier, verifier_params, tokens, completion, step_last, verifier_kind, delimiter_id, aggregation
):
    """(score f32[], non-finite readings i32[]) of one path, re-scored from scratch in one pass.

    tokens: i32[1, C] prompt + path, padded; completion: bool[1, C] the path; step_last: bool[1, C]
    each step's last token. A PRM is read at the path's delimiters (Lightman et al. 2023), an ORM at
    each step's last token; non-finite readings are left out of the aggregate.
    """
    if verifier_kind == "prm":
        probs, read = rm.prm_step_rewards(verifier, verifier_params, tokens, completion, delimiter_id)
    else:
        probs, read = jax.nn.sigmoid(rm.head_logits(verifier, verifier_params, tokens)), step_last
    ok = read & jnp.isfinite(probs)
    return rm.aggregate(aggregation, probs, ok)[0], (read & ~ok).sum()


@functools.partial(jax.jit, static_argnames="policy")
def written_logprobs(policy, params, tokens, temperature):
    """f32[C]: log p of each token of `tokens: i32[1, C]` given the ones before it, under the policy's
    softmax at `temperature` (0 at position 0), from one full pass."""
    positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)[None]
    logits, _, _ = policy.apply(params, tokens, positions)
    logp = jax.nn.log_softmax(logits[0, :-1] / temperature, axis=-1)  # [C-1, V]
    return jnp.pad(jnp.take_along_axis(logp, tokens[0, 1:, None], axis=-1)[:, 0], (1, 0))


def self_path_score(models, tokens, start: int, step_ends, cfg) -> float:
    """A path's score under `verifier_kind="self"`: each step reads exp(min log p) of its tokens, and
    the readings aggregate as a PRM's do; under `"checker"` each step reads exp(sum log p), the
    verifier's probability of the step at temperature 1. `start`: the path's first position in `tokens`."""
    if cfg.verifier_kind == "checker":
        logp = np.asarray(written_logprobs(models.verifier, models.verifier_params, tokens, 1.0))
        reduce = np.sum
    else:
        logp = np.asarray(written_logprobs(models.policy, models.params, tokens, cfg.rule.temperature))
        reduce = np.min
    bounds = [start] + [start + e + 1 for e in step_ends]
    readings = [np.exp(reduce(logp[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
    probs = jnp.asarray(np.array(readings, np.float32)[None])
    return float(rm.aggregate(cfg.aggregation, probs, jnp.ones(probs.shape, bool))[0]) if readings else 0.0


def opens_thinking(prompt: list[int], budget) -> bool:
    """The prompt leaves a `<think>` block open (its last `<think>` follows its last `</think>`)."""
    if budget is None:
        return False
    last = lambda token: max((i for i, t in enumerate(prompt) if t == token), default=-1)
    return last(budget.think_start_id) > last(budget.think_end_id)


def force(beam: Beam, sampled: int, cfg: SearchConfig) -> tuple[int, int, int]:
    """(token, force_mode, force_ptr): `sampler._force`'s budget forcing (Muennighoff et al. 2025,
    sec. 3.1) for one row. Ending thinking is `</think>` or a path stop id, not a step delimiter."""
    budget = cfg.budget
    token, mode, ptr = sampled, beam.force_mode, beam.force_ptr
    if budget is None:
        return token, mode, ptr
    if budget.min_thinking_tokens:
        cue = budget.cue_ids
        ending = sampled in (budget.think_end_id,) + cfg.stop_ids
        if beam.thinking and beam.thought < budget.min_thinking_tokens and ending and mode == _NO_FORCE:
            token, ptr = cue[0], 1 if len(cue) > 1 else 0
            mode = _FORCE_CUE if ptr else mode
        if beam.force_mode == _FORCE_CUE:
            token, ptr = cue[min(beam.force_ptr, len(cue) - 1)], beam.force_ptr + 1
            mode = _NO_FORCE if ptr >= len(cue) else mode
    if (
        budget.max_thinking_tokens is not None
        and beam.thinking
        and beam.thought >= budget.max_thinking_tokens
    ):
        token, mode = budget.think_end_id, _NO_FORCE
    return token, mode, ptr


def emit(beam: Beam, token: int, cfg: SearchConfig) -> Beam:
    """`beam` with `token` appended and its thinking count advanced."""
    thinking, thought = beam.thinking, beam.thought
    if cfg.budget is not None:
        thought += thinking and token != cfg.budget.think_end_id
        thinking = (thinking or token == cfg.budget.think_start_id) and token != cfg.budget.think_end_id
    return dataclasses.replace(beam, path=beam.path + (token,), thinking=thinking, thought=thought)


@dataclasses.dataclass(frozen=True)
class Models:
    """The networks and the fixed shapes the jitted pieces see."""

    policy: object
    params: dict
    verifier: object | None
    verifier_params: dict | None
    rows: int  # R = B * N: the width of every draw
    width: int  # C: padded prompt width + max_path_tokens

    def padded(self, tokens: list[int], pad_id: int) -> jax.Array:
        return jnp.array([tokens + [pad_id] * (self.width - len(tokens))], jnp.int32)  # [1, C]


def write_step(
    models: Models, prompt: list[int], beams: list[Beam], first_row: int, key, rule: SamplingRule, cfg
) -> tuple[list[Beam], list[int]]:
    """Every unfinished beam writes one step; returns (beams, step lengths).

    Each beam's prefix is prefilled afresh; a step ends at a stop id, the delimiter (split steps) or
    after `cfg.step_tokens` tokens. A beam that has ended its step draws nothing more (its thinking
    state waits, unchanged, for the next step) and its last token is not fed: the next step re-reads it.
    """
    beams = list(beams)
    stops = cfg.stop_ids + ((cfg.delimiter_id,) if cfg.split_steps else ())
    live = [not beam.finished for beam in beams]
    caches = [None] * len(beams)
    logits = [None] * len(beams)
    for i, beam in enumerate(beams):
        if live[i]:
            prefix = prompt + list(beam.path)
            logits[i], caches[i] = prefill(
                models.policy, models.params, models.padded(prefix, cfg.pad_id), len(prefix)
            )
    lengths = [0] * len(beams)
    for _ in range(cfg.step_tokens):
        if not any(live):
            break
        key, token_key = jax.random.split(key)
        all_rows = np.zeros((models.rows, models.policy.config.vocab_size), np.float32)  # [R, V]
        for i in range(len(beams)):
            if live[i]:
                all_rows[first_row + i] = np.asarray(logits[i])
        drawn = np.asarray(draw(rule, jnp.asarray(all_rows), token_key))  # [R]
        for i, beam in enumerate(beams):
            if not live[i]:
                continue
            token, mode, ptr = force(beam, int(drawn[first_row + i]), cfg)
            beams[i] = emit(dataclasses.replace(beam, force_mode=mode, force_ptr=ptr), token, cfg)
            lengths[i] += 1
            if token in stops:
                live[i] = False
            else:
                logits[i], caches[i] = decode_token(models.policy, models.params, jnp.int32(token), caches[i])
    for i, beam in enumerate(beams):
        if lengths[i]:
            beams[i] = dataclasses.replace(
                beam, step_ends=beam.step_ends + (len(beam.path) - 1,), finished=beam.path[-1] in cfg.stop_ids
            )
    return beams, lengths


def rescore(models: Models, prompt: list[int], beams: list[Beam], moved: list[int], cfg) -> list[Beam]:
    """Every beam that wrote tokens, re-scored from its whole prefix by one verifier pass."""
    if models.verifier is None and cfg.verifier_kind != "self":
        return beams
    out = list(beams)
    for i, beam in enumerate(beams):
        if not moved[i]:
            continue
        tokens = models.padded(prompt + list(beam.path), cfg.pad_id)  # [1, C]
        if cfg.verifier_kind in ("self", "checker"):
            out[i] = dataclasses.replace(
                beam, score=self_path_score(models, tokens, len(prompt), beam.step_ends, cfg)
            )
            continue
        where = np.arange(models.width)
        completion = (where >= len(prompt)) & (where < len(prompt) + len(beam.path))
        step_last = np.isin(where, [len(prompt) + e for e in beam.step_ends])
        score, nan = path_score(
            models.verifier,
            models.verifier_params,
            tokens,
            jnp.asarray(completion[None]),
            jnp.asarray(step_last[None]),
            cfg.verifier_kind,
            cfg.delimiter_id,
            cfg.aggregation,
        )
        out[i] = dataclasses.replace(beam, score=float(score), nan=int(nan))
    return out


def selection(beams: list[Beam]) -> list[float]:
    """What pruning ranks by; duplicates never compete."""
    return [-np.inf if beam.duplicate else beam.score for beam in beams]


def lookahead_selection(models, prompt, beams, first_row, key, cfg) -> tuple[list[float], int]:
    """(scores after `cfg.lookahead` greedy steps from each beam, tokens spent); the roll-outs are
    discarded (Snell et al. 2024, sec. 5.1)."""
    greedy = SamplingRule(temperature=0.0)
    spent = 0
    for i in range(cfg.lookahead):
        beams, lengths = write_step(models, prompt, beams, first_row, jax.random.fold_in(key, i), greedy, cfg)
        beams = rescore(models, prompt, beams, lengths, cfg)
        spent += sum(lengths)
    return selection(beams), spent


def prune(beams: list[Beam], scores: list[float], cfg: SearchConfig) -> list[Beam]:
    """Each group keeps its `keep` best beams (stable sort: ties go to the lower row), each copied
    `group_size // keep` times; copies of a finished beam are duplicates. A group whose beams have all
    finished is kept as it is."""
    g, keep = cfg.group_size, cfg.keep
    copies = g // keep
    out = []
    for start in range(0, len(beams), g):
        group = beams[start : start + g]
        if all(beam.finished or beam.duplicate for beam in group):
            out.extend(group)
            continue
        ranked = sorted(range(start, start + g), key=lambda i: -scores[i])[:keep]
        for parent in ranked:
            for c in range(copies):
                out.append(dataclasses.replace(beams[parent], duplicate=beams[parent].finished and c > 0))
    return out


def search_problem(models: Models, prompt: list[int], b: int, rng, cfg: SearchConfig):
    """One problem's search: (beams, steps run, generated tokens, verifier tokens).

    It stops when its own branches have all finished; the compiled loop goes on while any problem's
    have not, which changes nothing here: a finished group is never pruned.
    """
    n = cfg.n
    beams = [Beam(thinking=opens_thinking(prompt, cfg.budget))] * n
    generated, verified = 0, len(prompt) if models.verifier is not None else 0
    step = 0
    while step < cfg.depth and not all(beam.finished or beam.duplicate for beam in beams):
        step_key = jax.random.fold_in(rng, step)
        beams, lengths = write_step(models, prompt, beams, b * n, step_key, cfg.rule, cfg)
        beams = rescore(models, prompt, beams, lengths, cfg)
        generated += sum(lengths)
        verified += sum(lengths) if models.verifier is not None else 0
        if cfg.group_size > 1 and step < cfg.depth - 1:
            scores = selection(beams)
            if cfg.lookahead:
                look_key = jax.random.fold_in(step_key, _LOOKAHEAD_STREAM)
                scores, spent = lookahead_selection(models, prompt, beams, b * n, look_key, cfg)
                generated += spent
                verified += spent if models.verifier is not None else 0
            beams = prune(beams, scores, cfg)
        step += 1
    return beams, step, generated, verified


def best_branch(beams: list[Beam]) -> int:
    """Finished before unfinished, then by score; ties go to the lower branch."""
    rank = [
        -np.inf if beam.duplicate else np.float32(beam.score) + np.float32(2.0 * beam.finished)
        for beam in beams
    ]
    return max(range(len(beams)), key=lambda i: rank[i])


def empty_output(b_count: int, cfg: SearchConfig) -> dict:
    """Every `SearchOutput` field but `steps`, zeroed: `[B, K]` per branch, `[B]` per problem."""
    per_branch = lambda dtype: np.zeros((b_count, cfg.n), dtype)
    out = {
        "tokens": np.full((b_count, cfg.n, cfg.max_path_tokens), cfg.pad_id, np.int32),
        "lengths": per_branch(np.int32),
        "scores": per_branch(np.float32),
        "finished": per_branch(bool),
        "duplicate": per_branch(bool),
        "thinking_tokens": per_branch(np.int32),
    }
    out.update({name: np.zeros((b_count,), np.int32) for name in PER_PROBLEM})
    return out


def write_problem(out: dict, b: int, beams: list[Beam]) -> None:
    """Problem `b`'s branches and its best branch into `out` (`empty_output`)."""
    for i, beam in enumerate(beams):
        out["tokens"][b, i, : len(beam.path)] = beam.path
        out["lengths"][b, i] = len(beam.path)
        out["scores"][b, i] = beam.score
        out["finished"][b, i], out["duplicate"][b, i] = beam.finished, beam.duplicate
        out["thinking_tokens"][b, i] = beam.thought
    out["best"][b] = best_branch(beams)


def reference_search(
    policy, params, verifier, verifier_params, prompt_tokens, prompt_lengths, rng, cfg: SearchConfig
) -> SearchOutput:
    """`tree_search.search`'s result, computed by re-reading every prefix at every step; numpy fields.

    prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B]. `verifier` None: scores stay 0.
    """
    prompt_tokens, prompt_lengths = np.asarray(prompt_tokens), np.asarray(prompt_lengths)
    b_count = prompt_tokens.shape[0]
    width = prompt_tokens.shape[1] + cfg.max_path_tokens
    models = Models(policy, params, verifier, verifier_params, b_count * cfg.n, width)
    out = empty_output(b_count, cfg)
    steps = 0
    for b in range(b_count):
        prompt = prompt_tokens[b, : prompt_lengths[b]].tolist()
        beams, steps_b, out["generated_tokens"][b], out["verifier_tokens"][b] = search_problem(
            models, prompt, b, rng, cfg
        )
        steps = max(steps, steps_b)
        write_problem(out, b, beams)
        out["verifier_nan"][b] = sum(beam.nan for beam in beams)
    return SearchOutput(steps=np.int32(steps), **out)
