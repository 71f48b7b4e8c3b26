"""DeepConf confidence (Fu et al. 2025): hand values of the formulas, and the compiled online stop against a
plain-Python reference, token for token."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.eval import voting
from rtc.sampling import confidence
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, generate

LN2 = math.log(2.0)
STOP = 1


def test_token_confidence_is_minus_mean_top_k_logprob():
    # probabilities 1/2, 1/4, 1/8, 1/8: log-probs -1, -2, -3, -3 (x ln 2)
    logp = jnp.log(jnp.array([[0.125, 0.5, 0.125, 0.25]]))
    assert confidence.token_confidence(logp, 2)[0] == pytest.approx(1.5 * LN2, rel=1e-6)  # (1 + 2) / 2
    assert confidence.token_confidence(logp, 4)[0] == pytest.approx(2.25 * LN2, rel=1e-6)  # 9 / 4
    flat = jnp.log(jnp.full((1, 8), 1 / 8))
    assert confidence.token_confidence(flat, 3)[0] == pytest.approx(3 * LN2, rel=1e-6)


def test_group_and_trace_confidence_on_a_hand_sequence():
    conf = np.array([[3.0, 1.0, 2.0, 5.0, 4.0, 0.0], [7.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    lengths = np.array([5, 1])
    # window 2, row 0: groups (3+1)/2=2, (1+2)/2=1.5, (2+5)/2=3.5, (5+4)/2=4.5; row 1 shorter: one group, 7
    t = confidence.trace_confidence(conf, lengths, window=2)
    np.testing.assert_allclose(t.lowest_group, [1.5, 7.0])
    np.testing.assert_allclose(t.bottom_group, [1.5, 7.0])  # ceil(10% of 4 groups) = 1 group
    np.testing.assert_allclose(t.tail, [4.5, 7.0])  # last 2 tokens
    np.testing.assert_allclose(t.mean, [3.0, 7.0])  # 15 / 5
    # window 3: (3+1+2)/3=2, (1+2+5)/3=8/3, (2+5+4)/3=11/3 -> 2
    assert confidence.trace_confidence(conf, lengths, window=3).lowest_group[0] == pytest.approx(2.0)
    # the same under jit (the sampler computes it in the compiled program)
    jitted = jax.jit(confidence.trace_confidence, static_argnums=2)(
        jnp.asarray(conf), jnp.asarray(lengths), 2
    )
    np.testing.assert_allclose(jitted.lowest_group, [1.5, 7.0])


def test_bottom_ten_percent_averages_the_lowest_groups():
    # 20 tokens, window 1: 20 groups, the lowest ceil(2) = 2 are 0.5 and 1.0
    conf = np.array([[0.5, 1.0] + [10.0] * 18], np.float32)
    t = confidence.trace_confidence(conf, np.array([20]), window=1)
    assert t.bottom_group[0] == pytest.approx(0.75)
    assert t.lowest_group[0] == pytest.approx(0.5)


def test_stop_decision_on_a_hand_sequence_of_confidences():
    sequence, window, threshold = [3.0, 1.0, 2.0, 5.0], 2, 1.8
    buffer = jnp.zeros((1, 6))
    decisions, means = [], []
    for step, c in enumerate(sequence):
        buffer = buffer.at[0, step].set(c)
        mean, full = confidence.current_window(buffer, jnp.int32(step), window)
        means.append(float(mean[0]))
        decisions.append(bool(confidence.stop_decision(mean, full, jnp.array([threshold]))[0]))
    # step 0: window not full (mean 3); step 1: (3+1)/2 = 2 >= 1.8; step 2: (1+2)/2 = 1.5 < 1.8 -> stop
    assert means == pytest.approx([3.0, 2.0, 1.5, 3.5])
    assert decisions == [False, False, True, False]
    mean, full = confidence.current_window(buffer, jnp.int32(0), window)
    assert not confidence.stop_decision(mean, full, jnp.array([10.0]))[0]  # a partial window never stops


def test_online_threshold_is_the_100_minus_eta_percentile():
    warmup = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    # linear interpolation: the 90th percentile of 1..5 is at index 3.6 -> 4.6; the 10th at 0.4 -> 1.4
    assert confidence.online_threshold(warmup, 10.0)[0] == pytest.approx(4.6)  # DeepConf-low
    assert confidence.online_threshold(warmup, 90.0)[0] == pytest.approx(1.4)  # DeepConf-high
    with pytest.raises(ConfigError, match="eta"):
        confidence.online_threshold(warmup, 0.0)


def test_confidence_weighted_vote_filter_and_share_by_hand():
    answers = [["7", "8", "7", "9", None]]
    conf = np.array([[1.0, 5.0, 2.0, 1.5, 9.0]])
    ids = voting.answer_ids(answers)
    assert voting.majority_vote_ids(ids)[0] == 0  # "7" twice
    # weights: "7" 1 + 2 = 3, "8" 5, "9" 1.5 (no answer: no vote) -> "8"
    assert voting.confidence_weighted_vote(answers, conf)[0] == 1
    np.testing.assert_allclose(voting.vote_share(ids, conf), [5.0 / 9.5])
    # top 40% of 5 traces = 2 kept: 9.0 (no answer) and 5.0 ("8"): "8" with all the kept weight
    kept = voting.top_confidence_mask(conf, 40.0)
    assert kept.tolist() == [[False, True, False, False, True]]
    assert voting.filtered_vote(answers, conf, 40.0)[0] == 1
    np.testing.assert_allclose(voting.vote_share(np.where(kept, ids, -1), conf), [1.0])
    # keep the top 60% (3 traces: 9.0, 5.0, 2.0): "8" 5 against "7" 2 -> "8"; unweighted, one vote each:
    # the tie goes to the first kept candidate, column 1 ("8")
    assert voting.filtered_vote(answers, conf, 60.0)[0] == 1
    assert voting.filtered_vote(answers, conf, 60.0, weighted=False)[0] == 1
    # keeping 100% is the plain confidence-weighted vote; weighted against majority on more traces:
    answers = [["7", "8", "7", "9", "8", "7"]]
    conf = np.array([[1.0, 5.0, 2.0, 1.5, 1.0, 1.0]])
    assert voting.majority_vote(answers)[0] == 0  # "7": 3 votes to 2
    assert voting.confidence_weighted_vote(answers, conf)[0] == 1  # "8": 6 against 4
    assert voting.filtered_vote(answers, conf, 100.0)[0] == 1


def _bigram_model(model, scale=2.0, seed=1, stop_bonus=0.0):
    """`model` plus a fixed random bigram table on its logits: the random tiny model alone repeats its
    last token with flat, nearly constant confidence; with the table tokens and confidences vary.
    `stop_bonus` is added to the stop id's logit."""
    vocab = model.config.vocab_size
    table = scale * jax.random.normal(jax.random.key(seed), (vocab, vocab))  # f32[V, V]
    table = table.at[:, STOP].add(stop_bonus)

    class Bigram:
        config = model.config
        max_seq_len = model.max_seq_len
        init_cache = staticmethod(model.init_cache)
        grow_cache = staticmethod(model.grow_cache)

        @staticmethod
        def apply(params, tokens, positions, cache=None):
            logits, values, cache = model.apply(params, tokens, positions, cache)
            return logits + table[tokens], values, cache

    return Bigram()


def _reference_online(model, params, prompts, rng, rule, n, k, window, thresholds):
    """Plain Python: recompute each row's logits from scratch every token, draw with the sampler's key
    sequence, and stop a row at the first full window whose mean confidence is below its threshold."""
    rows = [list(p) for p in prompts]
    emitted = [[] for _ in prompts]
    confs = [[] for _ in prompts]
    done = [False] * len(prompts)
    stopped = [False] * len(prompts)
    width = max(len(p) for p in prompts) + n

    @jax.jit
    def last_logits(padded, lengths):  # causal: the padding after a row's end changes nothing before it
        out, _, _ = model.apply(params, padded, jnp.broadcast_to(jnp.arange(width), padded.shape))
        return jnp.take_along_axis(out, (lengths - 1)[:, None, None], axis=1)[:, 0]  # f32[B, V]

    for _ in range(n):
        if all(done):
            break
        rng, key = jax.random.split(rng)
        padded = np.zeros((len(rows), width), np.int32)
        for b, row in enumerate(rows):
            padded[b, : len(row)] = row
        logits = np.asarray(last_logits(padded, np.array([len(r) for r in rows])))
        tokens = np.asarray(rule.get_next_tokens(jnp.asarray(logits), key))
        scale = 1.0 if rule.greedy else 1.0 / rule.temperature
        for b in range(len(prompts)):
            if done[b]:
                continue
            logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits[b]) * scale))
            confs[b].append(-float(np.mean(np.sort(logp)[-k:])))
            rows[b].append(int(tokens[b]))
            emitted[b].append(int(tokens[b]))
            if len(confs[b]) >= window and np.mean(confs[b][-window:]) < thresholds[b]:
                done[b] = stopped[b] = True
    return emitted, confs, stopped


@pytest.mark.parametrize("rule", [SamplingRule(temperature=0.0), SamplingRule(temperature=0.8)])
def test_compiled_online_stop_equals_python_reference(tiny_model, rule):
    model, params = _bigram_model(tiny_model[0]), tiny_model[1]
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [20, 21]]
    n, k, window = 12, 5, 3
    cfg = SamplerConfig(max_new_tokens=n, stop_ids=(), rule=rule, confidence_k=k, confidence_window=window)
    rng = jax.random.key(7)
    free = generate(model, params, prompts, rng, cfg)  # tracking, no threshold: nobody stops
    assert not free.stopped.any() and free.lengths.tolist() == [n] * len(prompts)
    # per row a threshold just above its lowest full-window mean, in the first gap wider than float
    # rounding (so both sides decide alike): it stops at its first window that low; the last row never stops
    thresholds = []
    for b in range(len(prompts)):
        c = np.asarray(free.confidences[b], np.float64)
        means = np.sort([c[t - window + 1 : t + 1].mean() for t in range(window - 1, n)])
        gap = int(np.argmax(np.diff(means) > 1e-3))
        assert means[gap + 1] - means[gap] > 1e-3
        thresholds.append((means[gap] + means[gap + 1]) / 2)
    thresholds[-1] = -np.inf
    out = generate(model, params, prompts, rng, cfg, stop_threshold=np.array(thresholds))
    emitted, confs, stopped = _reference_online(model, params, prompts, rng, rule, n, k, window, thresholds)
    assert out.stopped.tolist() == stopped == [True, True, True, False]
    for b in range(len(prompts)):
        length = int(out.lengths[b])
        assert out.tokens[b, :length].tolist() == emitted[b]
        assert (out.tokens[b, length:] == 0).all() and (out.confidences[b, length:] == 0).all()
        np.testing.assert_allclose(out.confidences[b, :length], confs[b], rtol=1e-4)
        # a stopped row's prefix is the free run's: stopping changes nothing before it
        assert out.tokens[b, :length].tolist() == free.tokens[b, :length].tolist()
    # the trace confidences of the free run, from its token confidences
    lowest = confidence.trace_confidence(np.asarray(free.confidences), np.asarray(free.lengths), window)
    np.testing.assert_allclose(free.trace.lowest_group, lowest.lowest_group, rtol=1e-5)


def test_tracking_off_is_the_plain_sampler_and_tracking_alone_changes_no_token(tiny_model):
    model, params = tiny_model
    prompts = [[5, 6, 7], [8, 9, 10, 11]]
    rule = SamplingRule(temperature=1.0, top_k=8)
    off = SamplerConfig(max_new_tokens=10, stop_ids=(1,), rule=rule)
    on = SamplerConfig(max_new_tokens=10, stop_ids=(1,), rule=rule, confidence_k=4, confidence_window=2)
    a = generate(model, params, prompts, jax.random.key(3), off)
    b = generate(model, params, prompts, jax.random.key(3), on)
    assert a.confidences is None and a.stopped is None and a.trace is None
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    with pytest.raises(ConfigError, match="confidence_k"):
        generate(model, params, prompts, jax.random.key(3), off, stop_threshold=np.zeros(2))


def _search_config(strategy, n, **fields):
    from rtc.search.config import SearchConfig

    return SearchConfig(
        strategy=strategy,
        n=n,
        m=1,
        depth=1,
        step_tokens=10,
        stop_ids=(STOP,),
        delimiter_id=2,
        rule=SamplingRule(temperature=1.0),
        confidence_k=5,
        window=2,
        **fields,
    )


def _answer_of(ids):  # the token before the stop id, as text; None for an empty completion
    return str(ids[-2]) if len(ids) >= 2 else None


def test_runner_deepconf_online_threshold_stops_and_votes(tiny_model):
    from rtc.search import runner

    biased = _bigram_model(tiny_model[0], stop_bonus=3.0)  # a stop id about one token in four
    params, prompts = tiny_model[1], [[5, 6, 7], [8, 9]]
    cfg = _search_config("deepconf_low", 8, n_init=3)
    out = runner.run(biased, params, None, None, prompts, jax.random.key(0), cfg, answer_of=_answer_of)
    # the threshold: the 90th percentile of the 3 warm-up traces' lowest group confidences
    np.testing.assert_allclose(out.threshold, np.percentile(out.scores[:, :3], 90, axis=1), rtol=1e-6)
    assert not out.stopped[:, :3].any()  # warm-up traces never stop early
    assert out.stopped[:, 3:].any()  # eta 10%: most later traces fall below the threshold
    for b in range(2):
        for i in np.flatnonzero(out.stopped[b]):
            assert out.answers[b][i] is None and not out.finished[b, i]
            assert out.lengths[b, i] >= cfg.window  # only a full window stops a trace
    assert out.generated_tokens.tolist() == out.lengths.sum(axis=1).tolist()
    with pytest.raises(ConfigError, match="answer_of"):
        runner.run(biased, params, None, None, prompts, jax.random.key(0), cfg)

    # consensus: tau = 1 closes a problem only when every answered trace agrees; rounds of 4 up to 8
    cfg = _search_config("consensus", 8, round_size=4, tau=1.0)
    out = runner.run(biased, params, None, None, prompts, jax.random.key(0), cfg, answer_of=_answer_of)
    assert out.drawn.sum(axis=1).tolist() == (4 * out.rounds).tolist()
    for b in range(2):
        answered = {a for a, d in zip(out.answers[b], out.drawn[b]) if d and a is not None}
        assert (out.rounds[b] == 1) == (len(answered) == 1)
    # a vote share of 1e-6 is reached after the first round that gives the problem an answer
    cfg = _search_config("consensus", 8, round_size=4, tau=1e-6)
    out = runner.run(biased, params, None, None, prompts, jax.random.key(0), cfg, answer_of=_answer_of)
    for b in range(2):
        first = [a is not None for a in out.answers[b][:4]]
        assert (out.rounds[b] == 1) == any(first)
        assert out.vote_share[b] > 0 or not any(out.answers[b])


@pytest.mark.parametrize("strategy", ["deepconf_low", "consensus"])
def test_runner_slot_refill_equals_a_slot_per_trace(tiny_model, strategy):
    """Through 2 rows per problem, traces handed from row to row by slot refill, each trace is the one it
    is when it has a row of its own (slots >= traces per call: nothing is refilled): refill keys a trace's
    tokens by its index, not its row."""
    from rtc.search import runner

    biased = _bigram_model(tiny_model[0], stop_bonus=3.0)  # answers of mixed length: one stop in ~4 tokens
    params, prompts = tiny_model[1], [[5, 6, 7], [8, 9], [10]]
    fields = {"n_init": 3} if strategy == "deepconf_low" else {"round_size": 4, "tau": 1.0}
    run = lambda slots: runner.run(  # noqa: E731
        biased, params, None, None, prompts, jax.random.key(0), _search_config(strategy, 8, slots=slots, **fields),
        answer_of=_answer_of,
    )  # fmt: skip
    own, shared = run(8), run(2)
    for field in ("tokens", "lengths", "stopped", "drawn", "best", "rounds", "generated_tokens"):
        np.testing.assert_array_equal(getattr(shared, field), getattr(own, field), err_msg=field)
    np.testing.assert_allclose(shared.scores, own.scores, rtol=1e-6)
    assert shared.answers == own.answers
    if strategy == "deepconf_low":
        np.testing.assert_allclose(shared.threshold, own.threshold, rtol=1e-6)
        assert shared.stopped[:, 3:].any() and not shared.stopped[:, :3].any()


def test_slot_refill_is_not_a_tree_search_setting(tiny_model):
    with pytest.raises(ConfigError, match="slot refill is a setting"):
        _search_config("beam", 4, slots=2)
    with pytest.raises(ConfigError, match="slots"):
        _search_config("deepconf_low", 4, slots=-1)
