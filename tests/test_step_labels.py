"""Step labels: exact, Monte-Carlo (against a deterministic policy) and human, and their bad inputs."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.data import arithmetic
from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.data.format import prompt_tokens
from rtc.rewards import rm_data, step_labels
from rtc.rewards.rm_data import Solution
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig


def _solution(tokenizer, record, steps, answer="0", completion=None) -> Solution:
    """A solution writing `steps` (texts) then `answer`, or the raw `completion` text."""
    if completion is None:
        completion = "<think>" + "".join(s + "\n" for s in steps) + f"</think><answer>{answer}</answer>"
    return Solution(record, tuple(prompt_tokens(tokenizer, record)), tuple(tokenizer.encode(completion)))


# 5+3-2+4: a chain in which every step uses the previous step's value.
CHAIN = arithmetic.make_record([5, 3, 2, 4], ["+", "-", "+"])  # steps 5+3=8, 8-2=6, 6+4=10


def test_exact_labels_first_wrong_step_and_all_after_are_bad():
    gold = ["8", "6", "10"]
    assert step_labels.exact_step_labels(["5+3=8", "8-2=6", "6+4=10"], gold).tolist() == [1, 1, 1]
    assert step_labels.exact_step_labels(["5+3=8", "8-2=7", "7+4=11"], gold).tolist() == [1, 0, 0]
    # A later step that happens to be right is still after the first mistake.
    assert step_labels.exact_step_labels(["5+3=9", "8-2=6", "6+4=10"], gold).tolist() == [0, 0, 0]
    # Steps past the gold chain, or without a number after '=', are wrong.
    assert step_labels.exact_step_labels(["5+3=8", "8-2=6", "6+4=10", "10=10"], gold).tolist() == [1, 1, 1, 0]
    assert step_labels.exact_step_labels(["5+3", "8-2=6"], gold).tolist() == [0, 0]


def test_defects_no_delimiter_and_empty_steps(tokenizer):
    d, think = tokenizer.step_id, (tokenizer.think_start_id,)
    ids = lambda text: tokenizer.encode(text)
    assert rm_data.defect(ids("<think>5+3=8\n</think>"), d, think) is None
    assert rm_data.defect(ids("<think>5+3=8</think><answer>8</answer>"), d, think) == "no_delimiter"
    assert rm_data.defect(ids("<think>5+3=8\n\n8-2=6\n</think>"), d, think) == "empty_step"
    assert rm_data.defect(ids("<think>\n5+3=8\n</think>"), d, think) == "empty_step"


def test_exact_labeler_skips_and_counts_defective_solutions(tokenizer):
    labeler = step_labels.ExactLabeler(tokenizer, tokenizer.step_id, (tokenizer.think_start_id,))
    solutions = [
        _solution(tokenizer, CHAIN, ["5+3=8", "8-2=7"]),
        _solution(tokenizer, CHAIN, [], completion="<think>5+3=8</think><answer>8</answer>"),
        _solution(tokenizer, CHAIN, [], completion="<think>5+3=8\n\n</think><answer>8</answer>"),
        _solution(tokenizer, CHAIN, [], completion="no format at all"),
    ]
    labelled = labeler(solutions)
    assert labelled.labels[0].tolist() == [1.0, 0.0]
    assert labelled.labels[1:] == [None, None, None]
    assert labelled.skipped == {"no_delimiter": 2, "empty_step": 1}


def test_exact_labels_need_step_values(tokenizer):
    labeler = step_labels.ExactLabeler(tokenizer, tokenizer.step_id)
    record = {**CHAIN, "step_values": []}
    with pytest.raises(ConfigError, match="need records with step_values"):
        labeler([_solution(tokenizer, record, ["5+3=8"])])


def test_step_label_arrays_put_each_label_at_its_delimiter(tokenizer):
    s = _solution(tokenizer, CHAIN, ["5+3=8", "8-2=6"])
    arrays = rm_data.step_label_arrays([s], [[1.0, 0.0]], tokenizer.step_id, seq_len=64)
    encoded = rm_data.encode_solutions([s], 64, tokenizer.pad_id)
    ends = np.flatnonzero(arrays["step_mask"][0])
    assert (
        ends.tolist() == np.flatnonzero(encoded["tokens"][0] == tokenizer.step_id)[1:].tolist()
    )  # not the prompt's
    assert arrays["step_labels"][0, ends].tolist() == [1.0, 0.0]
    assert encoded["completion_mask"][0].sum() == len(s.completion_ids)


def test_label_count_mismatch_and_overlong_solutions_are_named(tokenizer):
    s = _solution(tokenizer, CHAIN, ["5+3=8", "8-2=6"])
    with pytest.raises(ConfigError, match="solution 1 has 2 steps but 3 step labels"):
        rm_data.step_label_arrays([s, s], [[1, 1], [1, 1, 0]], tokenizer.step_id, seq_len=64)
    with pytest.raises(ConfigError, match=r"solution 0 has \d+ tokens, more than seq_len=8"):
        rm_data.encode_solutions([s], 8, tokenizer.pad_id)


def test_human_labeler_checks_counts_and_skips_unlabelled(tokenizer):
    labeler = step_labels.HumanLabeler(tokenizer.step_id)
    s = _solution(tokenizer, CHAIN, ["5+3=8", "8-2=6"])
    labelled = labeler([dataclasses.replace(s, human_labels=(1.0, 0.0)), s])
    assert labelled.labels[0].tolist() == [1.0, 0.0] and labelled.labels[1] is None
    assert labelled.skipped == {"unlabelled": 1}
    with pytest.raises(ConfigError, match="solution 0 has 2 steps but 1 human labels"):
        labeler([dataclasses.replace(s, human_labels=(1.0,))])


def test_hard_and_soft_labels_golden():
    outcomes = np.array([[False, True, False, True], [False, False, False, False], [True, True, True, True]])
    assert step_labels.hard_labels(outcomes).tolist() == [1.0, 0.0, 1.0]  # any of 4
    assert step_labels.soft_labels(outcomes).tolist() == [0.5, 0.0, 1.0]  # 2/4, 0/4, 4/4
    assert step_labels.hard_labels(outcomes, 1).tolist() == [0.0, 0.0, 1.0]  # the first rollout only
    assert step_labels.soft_labels(outcomes, 2).tolist() == [0.5, 0.0, 1.0]  # 1/2, 0/2, 2/2


# --- Monte-Carlo labels against a deterministic policy ---------------------------------------------------

_HASH_BASE = 31


def _hash_weights(length: int) -> np.ndarray:
    return np.array([pow(_HASH_BASE, i, 2**32) for i in range(length)], np.uint64)


def _host_key(ids) -> int:
    return int((np.asarray(ids, np.uint64) * _hash_weights(len(ids))).sum() % 2**32)


@dataclasses.dataclass(frozen=True)
class LookupPolicy:
    """A deterministic policy: the prompt's hash picks a row of `table`, which it then emits token by token.

    It stands for a perfect solver that cannot undo a written mistake (`_continue`). The prefill
    hashes the non-pad prompt tokens; the cache holds the row and where the prompt ended.
    """

    keys: tuple[int, ...]
    table: tuple[tuple[int, ...], ...]
    vocab_size: int
    max_seq_len: int = 256

    def init_cache(self, batch_size, max_len, dtype=jnp.float32):
        zeros = jnp.zeros((batch_size,), jnp.int32)
        return {"index": zeros, "row": zeros, "start": zeros}

    def grow_cache(self, cache, max_len):
        return cache

    def apply(self, params, tokens, positions, cache=None):
        table = jnp.asarray(self.table, jnp.int32)
        if tokens.shape[1] > 1:  # prefill: hash the prompt (pad id 0 adds nothing)
            weights = jnp.asarray(_hash_weights(tokens.shape[1]).astype(np.uint32))
            key = jnp.sum(tokens.astype(jnp.uint32) * weights, axis=1, dtype=jnp.uint32)
            row = jnp.argmax(jnp.asarray(np.array(self.keys, np.uint32))[None, :] == key[:, None], axis=1)
            start = jnp.sum(tokens != 0, axis=1)
            cache = {"index": cache["index"] + tokens.shape[1], "row": row, "start": start}
            step = jnp.zeros_like(start)
        else:  # decoding the token at slot `index`: the next one is the continuation's (index - start + 1)-th
            step = cache["index"] - cache["start"] + 1
            cache = {**cache, "index": cache["index"] + 1}
        token = table[cache["row"], jnp.minimum(step, table.shape[1] - 1)]
        logits = 10.0 * jax.nn.one_hot(token, self.vocab_size)[:, None, :]
        return jnp.broadcast_to(logits, (*tokens.shape, self.vocab_size)), None, cache


def _continue(written: list[int], operators, operands) -> str:
    """What a perfect solver that trusts its written values writes after `written` step values.

    Arithmetic chain: step k applies operator k to the running value (the last written value).
    """
    value = written[-1] if written else operands[0]
    text = ""
    for operator, operand in list(zip(operators, operands[1:]))[len(written) :]:
        result = value + operand if operator == "+" else value - operand
        text += f"{value}{operator}{operand}={result}\n"
        value = result
    return text + f"</think><answer>{value}</answer>"


def _lookup_policy(tokenizer, solutions) -> LookupPolicy:
    rows = {}  # prompt hash -> (prompt, continuation); shared prefixes share a row
    for s in solutions:
        meta = json.loads(s.record["meta"])
        for k, prefix in enumerate(step_labels.step_prefixes(s, tokenizer.step_id)):
            texts = rm_data.step_texts(tokenizer, s.completion_ids, tokenizer.step_id)[: k + 1]
            written = [int(t.rpartition("=")[2]) for t in texts]
            continuation = tokenizer.encode(_continue(written, meta["operators"], meta["operands"]))
            key = _host_key(prefix)
            assert rows.setdefault(key, (prefix, continuation))[0] == prefix, (
                "hash collision: change _HASH_BASE"
            )
    keys, table = list(rows), [continuation for _, continuation in rows.values()]
    width = max(len(row) for row in table)
    padded = tuple(tuple(row + [tokenizer.eos_id] * (width - len(row))) for row in table)
    return LookupPolicy(tuple(keys), padded, tokenizer.vocab_size)


@pytest.fixture
def chain_solutions(tokenizer):
    return [
        _solution(tokenizer, CHAIN, ["5+3=8", "8-2=6", "6+4=10"], "10"),  # right throughout
        _solution(tokenizer, CHAIN, ["5+3=8", "8-2=7", "7+4=11"], "11"),  # wrong from step 2
        _solution(tokenizer, CHAIN, ["5+3=9", "9-2=7"], "7"),  # wrong from step 1, stops early
        _solution(tokenizer, CHAIN, ["5+3=8"], "8"),  # right, then answers too early
    ]


def _mc_labeler(tokenizer, policy, num_rollouts, prefix_batch, soft=False):
    cfg = SamplerConfig(
        max_new_tokens=40,
        stop_ids=(tokenizer.answer_end_id, tokenizer.eos_id),
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=0.0),
    )
    return step_labels.MonteCarloLabeler(
        policy, None, tokenizer, get_task("arithmetic"), cfg, num_rollouts, prefix_batch,
        jax.random.key(0), tokenizer.step_id, soft=soft, ignore_ids=(tokenizer.think_start_id,),
    )  # fmt: skip


def test_mc_labels_equal_exact_labels_for_a_deterministic_policy(tokenizer, chain_solutions):
    policy = _lookup_policy(tokenizer, chain_solutions)
    exact = step_labels.ExactLabeler(tokenizer, tokenizer.step_id)(chain_solutions)
    hard = _mc_labeler(tokenizer, policy, num_rollouts=3, prefix_batch=4)(chain_solutions)
    soft = _mc_labeler(tokenizer, policy, num_rollouts=3, prefix_batch=4, soft=True)(chain_solutions)
    expected = [[1, 1, 1], [1, 0, 0], [0, 0], [1]]
    assert [e.tolist() for e in exact.labels] == expected
    assert [h.tolist() for h in hard.labels] == expected
    assert [s.tolist() for s in soft.labels] == expected  # every rollout agrees: fractions are 0 or 1


def test_mc_labels_are_value_estimates_a_lucky_recovery_counts_as_good(tokenizer):
    # Step 1 is wrong (9), step 2 ignores it and writes the right value (8-2=6): exact labels say
    # [0, 0]; a solver trusting its written values finishes right from step 2 on, so MC says [0, 1].
    s = _solution(tokenizer, CHAIN, ["5+3=9", "8-2=6"], "6")
    policy = _lookup_policy(tokenizer, [s])
    assert step_labels.ExactLabeler(tokenizer, tokenizer.step_id)([s]).labels[0].tolist() == [0, 0]
    assert _mc_labeler(tokenizer, policy, 2, 2)([s]).labels[0].tolist() == [0, 1]


def test_mc_rollouts_are_one_sampler_call_per_batch_of_prefixes(tokenizer, chain_solutions, monkeypatch):
    policy = _lookup_policy(tokenizer, chain_solutions)
    calls = []
    generate = step_labels.generate

    def counting(model, params, prompts, rng, cfg, *args, **kwargs):
        calls.append(len(prompts))
        return generate(model, params, prompts, rng, cfg, *args, **kwargs)

    monkeypatch.setattr(step_labels, "generate", counting)
    _mc_labeler(tokenizer, policy, num_rollouts=3, prefix_batch=4)(chain_solutions)
    # 3 + 3 + 2 + 1 = 9 prefixes in batches of 4: 3 calls of 4 x 3 = 12 rows (the last one padded).
    assert calls == [12, 12, 12]
