"""Token-level beam search as one jitted program: a parallel prefill, then a `lax.while_loop` over new tokens.

The standard left-to-right beam search (Graves 2012, "Sequence Transduction with Recurrent Neural
Networks", sec. 3.2; Sutskever et al. 2014) with the exact step rule of Hugging Face transformers'
`GenerationMixin._beam_search` (transformers 5.x, `generation/utils.py`) with `do_sample=False`, so
`generate(num_beams=K, early_stopping=False, length_penalty=alpha)` (its defaults) returns the same tokens.
For each problem, every step:

1. candidates: `running_score[k] + log_softmax(logits[k])[v]` over all `K x V` (beam, token) pairs; keep
   the top `C = max(2, 1 + len(stop_ids)) * K`, best first;
2. a candidate whose token is a stop id, or that reaches `max_new_tokens`, is finished. A finished
   candidate ranked in the top `K` of the `C` enters the bank of finished hypotheses with score
   `sum logp / L ** length_penalty`, `L` its generated tokens including the stop token; the bank keeps
   its best `K` (it takes nothing once the problem is closed, step 4);
3. the `K` best unfinished candidates are the next running beams; the KV cache rows are gathered by
   their parent beam and the new tokens are fed;
4. early stopping (`early_stopping=False`): a problem closes once its bank holds `K` hypotheses and
   `best running score / (tokens so far) ** length_penalty` is no better than the bank's worst.

The loop ends when every problem is closed or after `max_new_tokens` steps; the last step's tokens are
not fed to the model. Like `sampler.py`, the model comes in as an object with `apply`, `init_cache`,
`grow_cache` and `max_seq_len`, and prompts are right-padded to a length bucket.
"""

import dataclasses
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from rtc.errors import ConfigError
from rtc.model.kv_cache import reorder
from rtc.sampling.prefill import pool_pages, prefill
from rtc.sampling.sampler import pad_prompts, phase_ends

# HF's "very low score" for unused beams and excluded candidates; the same constant keeps ties identical.
LOW = -1.0e9


@dataclasses.dataclass(frozen=True)
class BeamSearchConfig:
    """Static settings of one compiled beam search."""

    num_beams: int
    max_new_tokens: int
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0
    # HF's `length_penalty`: a finished hypothesis scores sum logp / length ** length_penalty.
    length_penalty: float = 1.0
    cache_phases: int = 1  # as SamplerConfig.cache_phases: grow the KV cache between phases

    def __post_init__(self):
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def num_candidates(self) -> int:
        """C: enough candidates that K unfinished remain even if every stop id is among them (HF's `beams_to_keep`)."""
        return max(2, 1 + len(self.stop_ids)) * self.num_beams


@flax.struct.dataclass
class BeamOutput:
    tokens: jax.Array  # i32[B, K, N]: the bank of finished hypotheses, best first; pad after each length
    scores: jax.Array  # f32[B, K]: sum logp / length ** length_penalty (HF's `sequences_scores`)
    lengths: jax.Array  # i32[B, K]: generated tokens, the stop token included


@flax.struct.dataclass
class BeamState:
    step: jax.Array  # i32[]: tokens chosen so far
    next_logits: jax.Array  # f32[B, K, V]: logits after each running beam
    running_tokens: jax.Array  # i32[B, K, N]
    running_scores: jax.Array  # f32[B, K]: sum logp, best first
    parents: jax.Array  # i32[B, K]: the beam each running beam extended at the last step
    last_tokens: jax.Array  # i32[B, K]: each running beam's newest token, not yet fed
    bank_tokens: jax.Array  # i32[B, K, N]
    bank_scores: jax.Array  # f32[B, K]: length-normalised, best first; LOW where empty
    bank_lengths: jax.Array  # i32[B, K]
    bank_full: jax.Array  # bool[B, K]: the slot holds a finished hypothesis (HF's `is_sent_finished`)
    open: jax.Array  # bool[B]: the bank can still improve (HF's `is_early_stop_heuristic_unsatisfied`)
    cache: dict  # B*K rows, row b*K + k


def select_problem(
    logits,
    running_tokens,
    running_scores,
    bank_tokens,
    bank_scores,
    bank_lengths,
    bank_full,
    is_open,
    step,
    cfg,
):
    """One step of the rule in the module docstring for one problem (vmapped over problems).

    logits: f32[K, V]; running_tokens: i32[K, N]; running_scores: f32[K]; bank_*: [K, ...]; is_open: bool[];
    step: i32[]. Returns the next running (tokens, scores, parents, last tokens), bank and `is_open`.
    """
    k, v = logits.shape
    n = running_tokens.shape[1]
    c = cfg.num_candidates
    scores = jax.nn.log_softmax(logits, axis=-1) + running_scores[:, None]  # [K, V]
    cand_scores, flat = jax.lax.top_k(scores.reshape(-1), c)  # [C], best first
    cand_parents, cand_tokens = flat // v, flat % v  # [C]
    cand_seqs = running_tokens[cand_parents].at[:, step].set(cand_tokens)  # [C, N]
    finished = jnp.isin(cand_tokens, jnp.array(cfg.stop_ids, jnp.int32)) | (step == n - 1)  # [C]

    run_scores, run_idx = jax.lax.top_k(cand_scores + LOW * finished, k)  # [K]

    length = (step + 1).astype(jnp.float32)
    entering = finished & (jnp.arange(c) < k)
    cand_bank = cand_scores / length**cfg.length_penalty + LOW * ~is_open + LOW * ~entering  # [C]
    merged_scores = jnp.concatenate([bank_scores, cand_bank])  # [K + C]
    new_bank_scores, keep = jax.lax.top_k(merged_scores, k)
    new_bank_tokens = jnp.concatenate([bank_tokens, cand_seqs])[keep]
    new_bank_lengths = jnp.concatenate([bank_lengths, jnp.full((c,), step + 1, jnp.int32)])[keep]
    new_bank_full = jnp.concatenate([bank_full, entering])[keep]

    # HF measures the best running beam at the length reached, whatever length_penalty's sign.
    best_running = run_scores[0] / length**cfg.length_penalty
    worst_kept = jnp.where(new_bank_full, jnp.min(new_bank_scores), LOW)  # [K]
    is_open = is_open & jnp.any(best_running > worst_kept)
    return (
        cand_seqs[run_idx],
        run_scores,
        cand_parents[run_idx],
        cand_tokens[run_idx],
        new_bank_tokens,
        new_bank_scores,
        new_bank_lengths,
        new_bank_full,
        is_open,
    )


def select(state: BeamState, cfg: BeamSearchConfig) -> BeamState:
    """Chooses every problem's next running beams and updates its bank; `step` advances by one."""
    per_problem = jax.vmap(lambda *xs: select_problem(*xs, step=state.step, cfg=cfg))
    running, scores, parents, last, bank_tokens, bank_scores, bank_lengths, bank_full, is_open = per_problem(
        state.next_logits,
        state.running_tokens,
        state.running_scores,
        state.bank_tokens,
        state.bank_scores,
        state.bank_lengths,
        state.bank_full,
        state.open,
    )
    return state.replace(
        step=state.step + 1,
        running_tokens=running,
        running_scores=scores,
        parents=parents,
        last_tokens=last,
        bank_tokens=bank_tokens,
        bank_scores=bank_scores,
        bank_lengths=bank_lengths,
        bank_full=bank_full,
        open=is_open,
    )


def feed(model, params, state: BeamState) -> BeamState:
    """Gathers the cache rows of each running beam's parent and feeds the beams' newest tokens."""
    b, k, v = state.next_logits.shape
    rows = (jnp.arange(b)[:, None] * k + state.parents).reshape(-1)  # [B*K]
    cache = reorder(state.cache, rows)
    positions = cache["index"][:, None]  # [B*K, 1]: slots are positions
    logits, _, cache = model.apply(params, state.last_tokens.reshape(-1, 1), positions, cache)
    return state.replace(next_logits=logits[:, 0].reshape(b, k, v), cache=cache)


def _beam_search(
    model, params, prompt_tokens, prompt_lengths, cfg: BeamSearchConfig, cache_dtype
) -> BeamOutput:
    """prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B] (>= 1). Each prompt is prefilled once,
    its cache then copied to its K beams."""
    b, p = prompt_tokens.shape
    k, n = cfg.num_beams, cfg.max_new_tokens
    ends = phase_ends(n, cfg.cache_phases)
    num_pages = pool_pages(model, b, p, b * k, n)
    next_logits, cache = prefill(
        model, params, prompt_tokens, prompt_lengths, p + ends[0], cache_dtype, num_pages=num_pages
    )
    v = next_logits.shape[-1]
    if v < cfg.num_candidates:
        raise ConfigError(
            f"beam search keeps {cfg.num_candidates} candidates a step, more than the {v} tokens"
        )
    cache = reorder(cache, jnp.repeat(jnp.arange(b), k))  # [B*K, ...], row b*K + k (paged: shared pages)
    # Only beam 0 is live at first (HF's -1e9 on the others), so the K beams start distinct.
    running_scores = jnp.broadcast_to(jnp.where(jnp.arange(k) == 0, 0.0, LOW), (b, k)).astype(jnp.float32)
    pads = jnp.full((b, k, n), cfg.pad_id, jnp.int32)
    zeros = jnp.zeros((b, k), jnp.int32)
    state = BeamState(
        step=jnp.int32(0),
        next_logits=jnp.broadcast_to(next_logits[:, None], (b, k, v)),
        running_tokens=pads,
        running_scores=running_scores,
        parents=zeros,
        last_tokens=zeros,
        bank_tokens=pads,
        bank_scores=jnp.full((b, k), LOW, jnp.float32),
        bank_lengths=zeros,
        bank_full=jnp.zeros((b, k), bool),
        open=jnp.ones((b,), bool),
        cache=cache,
    )
    state = select(state, cfg)
    for i, end in enumerate(ends):
        if i:
            state = state.replace(cache=model.grow_cache(state.cache, p + end))
        state = jax.lax.while_loop(
            lambda s, end=end: (s.step < end) & jnp.any(s.open),
            lambda s: select(feed(model, params, s), cfg),
            state,
        )
    return BeamOutput(tokens=state.bank_tokens, scores=state.bank_scores, lengths=state.bank_lengths)


search = jax.jit(_beam_search, static_argnames=("model", "cfg", "cache_dtype"))


def beam_search(
    model, params, prompts: Sequence[Sequence[int]], cfg: BeamSearchConfig, cache_dtype=jnp.float32
) -> BeamOutput:
    """Pads `prompts` (token lists) to a bucket and returns each problem's `num_beams` best hypotheses."""
    tokens, lengths = pad_prompts(prompts, cfg.pad_id, cfg.max_new_tokens, model.max_seq_len)
    return search(model, params, tokens, lengths, cfg=cfg, cache_dtype=jnp.dtype(cache_dtype))


def best_completions(out: BeamOutput) -> list[list[int]]:
    """Each problem's best hypothesis (host lists), up to and including its stop token."""
    tokens, lengths = jax.device_get((out.tokens[:, 0], out.lengths[:, 0]))
    return [tokens[i, : lengths[i]].tolist() for i in range(len(lengths))]
