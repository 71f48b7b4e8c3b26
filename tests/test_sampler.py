import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.sampling import budget as budget_lib
from rtc.sampling.rules import SamplingRule, top_k_filter, top_p_filter
from rtc.sampling.sampler import SamplerConfig, completions, generate, pad_prompts, sample

PAD, STOP, THINK, END_THINK, CUE = 0, 1, 2, 3, 4


def _argmax_by_recomputation(model, params, prompt, n):
    tokens = list(prompt)
    for _ in range(n):
        x = jnp.array([tokens])
        logits, _, _ = model.apply(params, x, jnp.arange(len(tokens))[None])
        tokens.append(int(jnp.argmax(logits[0, -1])))
    return tokens[len(prompt) :]


def test_greedy_equals_step_by_step_argmax(tiny_model):
    model, params = tiny_model
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    cfg = SamplerConfig(max_new_tokens=10, stop_ids=(), pad_id=PAD)
    out = generate(model, params, prompts, jax.random.key(0), cfg)
    for row, prompt in enumerate(prompts):
        assert out.tokens[row].tolist() == _argmax_by_recomputation(model, params, prompt, 10)
    assert out.lengths.tolist() == [10, 10, 10]


def test_logprobs_match_model_at_temperature_on_ragged_rows(tiny_model):
    model, params = tiny_model
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    cfg = SamplerConfig(max_new_tokens=4, stop_ids=(), rule=SamplingRule(temperature=0.5))
    out = generate(model, params, prompts, jax.random.key(3), cfg)
    for row, prompt in enumerate(prompts):
        seq = jnp.array([prompt + out.tokens[row].tolist()])
        logits, _, _ = model.apply(params, seq, jnp.arange(seq.shape[1])[None])
        p = len(prompt)
        logp = jax.nn.log_softmax(logits[0, p - 1 : p + 3] / 0.5)
        expected = jnp.take_along_axis(logp, seq[0, p : p + 4, None], -1)[:, 0]
        np.testing.assert_allclose(out.logprobs[row], expected, atol=1e-5)
    assert not out.forced.any()


def test_stop_tokens_end_rows_and_pad_after(tiny_model):
    model, params = tiny_model
    greedy = generate(model, params, [[5, 6, 7]], jax.random.key(0), SamplerConfig(12, stop_ids=()))
    stop = int(greedy.tokens[0, 2])  # make the third greedy token a stop token
    first = greedy.tokens[0].tolist().index(stop)
    out = generate(model, params, [[5, 6, 7]], jax.random.key(0), SamplerConfig(12, stop_ids=(stop,)))
    assert out.lengths.tolist() == [first + 1]
    assert completions(out)[0] == greedy.tokens[0, : first + 1].tolist()
    assert (out.tokens[0, first + 1 :] == PAD).all() and (out.logprobs[0, first + 1 :] == 0).all()


def _biased_model(model, bias):
    """Wraps `model` adding `bias: f32[V]` to its logits (to steer tokens in budget tests)."""

    class Biased:
        max_seq_len = model.max_seq_len
        init_cache = staticmethod(model.init_cache)
        grow_cache = staticmethod(model.grow_cache)

        @staticmethod
        def apply(params, tokens, positions, cache=None):
            logits, values, cache = model.apply(params, tokens, positions, cache)
            return logits + bias, values, cache

    return Biased()


def test_budget_forcing_respects_max_thinking(tiny_model):
    model, params = tiny_model
    # The model always wants to think: <think> first, then never </think>.
    bias = jnp.zeros(64).at[THINK].set(50.0).at[10].set(40.0)
    biased = _biased_model(model, bias)
    budget = budget_lib.ThinkingBudget(THINK, END_THINK, max_thinking_tokens=5)
    cfg = SamplerConfig(max_new_tokens=12, stop_ids=(STOP,), budget=budget)
    out = generate(biased, params, [[5, 6], [7]], jax.random.key(0), cfg)
    for row in out.tokens.tolist():
        assert row[0] == THINK and row[6] == END_THINK, row
    assert out.thinking_tokens.tolist() == [5, 5]
    assert out.forced[:, 6].all() and not out.forced[:, :6].any()


def test_budget_forcing_respects_min_thinking(tiny_model):
    model, params = tiny_model
    # The prompt opens the thinking block and the model wants to close it at once.
    bias = jnp.zeros(64).at[END_THINK].set(20.0).at[STOP].set(10.0)
    biased = _biased_model(model, bias)
    budget = budget_lib.ThinkingBudget(THINK, END_THINK, min_thinking_tokens=4, cue_ids=(CUE, 11))
    cfg = SamplerConfig(max_new_tokens=16, stop_ids=(STOP,), budget=budget)
    out = generate(biased, params, [[5, THINK]], jax.random.key(0), cfg)
    assert out.tokens[0, :5].tolist() == [CUE, 11, CUE, 11, END_THINK]
    assert out.thinking_tokens.tolist() == [4]


def test_budget_forcing_batched_with_stops_and_rows_not_thinking(tiny_model):
    model, params = tiny_model
    # The model wants: </think> (20) over stop (10) over anything else. Row 0 opens thinking in its
    # prompt (with content after <think>); row 1 never thinks, so only stop-vs-</think> matters there.
    bias = jnp.zeros(64).at[END_THINK].set(20.0).at[STOP].set(10.0)
    biased = _biased_model(model, bias)
    budget = budget_lib.ThinkingBudget(
        THINK, END_THINK, max_thinking_tokens=6, min_thinking_tokens=3, cue_ids=(CUE,)
    )
    cfg = SamplerConfig(max_new_tokens=10, stop_ids=(STOP, END_THINK), budget=budget)
    out = generate(biased, params, [[5, THINK, 9, 9], [7]], jax.random.key(0), cfg)
    # Row 0: three cues (each replacing an early </think>), then </think> is allowed and stops it.
    assert out.tokens[0, :4].tolist() == [CUE, CUE, CUE, END_THINK]
    assert out.forced[0, :4].tolist() == [True, True, True, False]
    assert out.lengths.tolist() == [4, 1] and out.thinking_tokens.tolist() == [3, 0]
    # Row 1 is not thinking: its </think> is a plain stop token, not forced.
    assert out.tokens[1, 0] == END_THINK and not out.forced[1].any()
    assert (out.tokens[1, 1:] == PAD).all() and (out.logprobs[1, 1:] == 0).all()


def test_reasoning_effort_maps_to_budgets():
    assert budget_lib.thinking_limit(116, reasoning_effort="low") == 25
    assert budget_lib.thinking_limit(116, reasoning_effort="high") == 100
    assert budget_lib.thinking_limit(116, budget_tokens=7) == 7
    assert budget_lib.thinking_limit(116) is None
    with pytest.raises(ValueError, match="reasoning_effort"):
        budget_lib.thinking_limit(116, reasoning_effort="extreme")


def test_streaming_hands_each_token_to_callback(tiny_model):
    model, params = tiny_model
    greedy = generate(model, params, [[5, 6, 7]], jax.random.key(0), SamplerConfig(6, stop_ids=()))
    stop = int(greedy.tokens[0, 3])
    seen = []
    cfg = SamplerConfig(max_new_tokens=6, stop_ids=(stop,))
    stream = lambda step, tokens, live: seen.append((int(step), np.asarray(tokens).tolist(), bool(live[0])))
    out = generate(model, params, [[5, 6, 7], [5, 6, 7]], jax.random.key(0), cfg, stream=stream)
    jax.effects_barrier()
    emitted = [tokens[0] for _, tokens, live in sorted(seen) if live]
    assert emitted == completions(out)[0] and emitted[-1] == stop


def test_top_k_and_top_p_golden():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    assert jnp.isfinite(top_k_filter(logits, 2)).tolist() == [[True, True, False, False]]
    # Mass before each token: 0, .5, .8, .95 -> with p=0.8 keep the first two.
    assert jnp.isfinite(top_p_filter(logits, 0.8)).tolist() == [[True, True, False, False]]
    assert jnp.isfinite(top_p_filter(logits, 0.81)).tolist() == [[True, True, True, False]]


def test_sampling_is_deterministic_for_a_key_and_in_range(tiny_model):
    model, params = tiny_model
    cfg = SamplerConfig(max_new_tokens=8, stop_ids=(), rule=SamplingRule(1.0, top_k=5, top_p=0.9))
    a = generate(model, params, [[5, 6, 7]] * 4, jax.random.key(1), cfg)
    b = generate(model, params, [[5, 6, 7]] * 4, jax.random.key(1), cfg)
    assert a.tokens.tolist() == b.tokens.tolist()
    assert len({tuple(r) for r in a.tokens.tolist()}) > 1  # rows draw independently


def test_prompt_too_long_is_a_clear_error():
    with pytest.raises(ValueError, match="prompt of 120 tokens plus max_new_tokens=16 exceeds .* 128"):
        pad_prompts([[1] * 120], 0, 16, 128)


def test_prompt_buckets_share_one_compile(tiny_model):
    model, params = tiny_model
    cfg = SamplerConfig(max_new_tokens=3, stop_ids=(1,))
    tokens, lengths = pad_prompts([[1, 2, 3]], 0, 3, 128)
    tokens2, _ = pad_prompts([[1] * 9], 0, 3, 128)
    assert tokens.shape == tokens2.shape == (1, 16) and lengths.tolist() == [3]
    before = sample._cache_size()
    for prompt in ([5, 6, 7], [5] * 9, [7] * 16):
        generate(model, params, [prompt], jax.random.key(0), cfg)
    assert sample._cache_size() == before + 1


def test_first_argmax_and_gumbel_draws_match_jax():
    from rtc.sampling.rules import first_argmax

    x = jnp.array([[1.0, 3.0, 3.0, 0.0], [5.0, -1.0, 2.0, 5.0], [-jnp.inf, -jnp.inf, 0.0, -jnp.inf]])
    assert first_argmax(x).tolist() == jnp.argmax(x, axis=-1).tolist() == [1, 0, 2]
    logits = jax.random.normal(jax.random.key(0), (64, 100))
    ours = SamplingRule(temperature=1.0).get_next_tokens(logits, jax.random.key(5))
    assert ours.tolist() == jax.random.categorical(jax.random.key(5), logits, axis=-1).tolist()


def test_decoding_in_cache_phases_equals_one_phase(tiny_model):
    from rtc.sampling.sampler import phase_ends

    assert (
        phase_ends(128, 4) == [32, 64, 96, 128]
        and phase_ends(10, 3) == [4, 7, 10]
        and phase_ends(2, 5) == [1, 2]
    )
    model, params = tiny_model
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14]]
    for rule in (SamplingRule(0.0), SamplingRule(1.0, top_k=10)):
        one = generate(model, params, prompts, jax.random.key(2), SamplerConfig(13, stop_ids=(1,), rule=rule))
        phased = SamplerConfig(13, stop_ids=(1,), rule=rule, cache_phases=4)
        four = generate(model, params, prompts, jax.random.key(2), phased)
        assert four.tokens.tolist() == one.tokens.tolist() and four.lengths.tolist() == one.lengths.tolist()
        np.testing.assert_allclose(four.logprobs, one.logprobs, atol=1e-5)
