"""Tests for the rtc tokenizer: exact round trips, one id per special symbol, split digits, reproducible builds."""

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc.data import arithmetic, countdown, gsm8k, math500
from rtc.data.format import completion_text, prompt_text, prompt_tokens
from rtc.tokenizer import build
from rtc.data.special import SPECIAL_SYMBOLS
from rtc.tokenizer.tokenizer import Tokenizer, TokenizerModelError
from rtc.train.sft_data import encode_example

SHIPPED = Path(__file__).parent / "data"  # 40-line copies of GSM8K and MATH-500


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.load()


def _texts():
    records = itertools.chain(
        arithmetic.generate("test", 50, seed=0),
        countdown.generate("test", 50, seed=0),
        itertools.islice(gsm8k.generate("test", SHIPPED), 100),
        itertools.islice(math500.generate("test", SHIPPED), 100),
    )
    return [prompt_text(record) + completion_text(record) for record in records]


def test_packaged_model(tokenizer):
    assert tokenizer.vocab_size == build.DEFAULT_VOCAB_SIZE
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 2, 3)
    ids = [
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        tokenizer.answer_start_id,
        tokenizer.answer_end_id,
    ]
    assert ids + [tokenizer.step_id] == [4, 5, 6, 7, 8]


def test_round_trip_on_task_texts(tokenizer):
    for text in _texts():
        assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet=" \n\t\u2581<>/athinkswer0123456789", max_size=40))
def test_round_trip_on_any_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("symbol", SPECIAL_SYMBOLS)
def test_special_symbols_are_single_ids(tokenizer, symbol):
    assert len(tokenizer.encode(symbol)) == 1
    assert tokenizer.encode(f"x{symbol}y")[1:-1] == tokenizer.encode(symbol)


def test_completion_structure(tokenizer):
    ids = tokenizer.encode("<think>1+2=3\n</think><answer>3</answer>")
    assert ids[0] == tokenizer.think_start_id and ids[-1] == tokenizer.answer_end_id
    assert ids.count(tokenizer.step_id) == 1


def test_prompt_is_the_plain_format(tokenizer):
    assert tokenizer.template.name == "plain" and tokenizer.template.bos
    assert tokenizer.prompt("What is 3+4?") == "What is 3+4?\n"
    expected = [2, 1004, 803, 309, 939, 967, 973, 968, 985, 8]
    assert prompt_tokens(tokenizer, {"question": "What is 3+4?"}) == expected
    assert tokenizer.prompt("q", system="s") == "s\n\nq\n"
    records = itertools.chain(arithmetic.generate("test", 10, seed=0), countdown.generate("test", 10, seed=0))
    for record in records:
        prompt = [tokenizer.bos_id] + tokenizer.encode(prompt_text(record))  # the format before templates
        assert prompt_tokens(tokenizer, record) == prompt
        completion = tokenizer.encode(completion_text(record)) + [tokenizer.eos_id]
        mask = [0] * len(prompt) + [1] * len(completion)
        assert encode_example(tokenizer, record) == (prompt + completion, mask)


def test_stop_ids_are_answer_end_and_eos(tokenizer):
    assert tokenizer.stop_ids == (tokenizer.answer_end_id, tokenizer.eos_id) == (7, 3)


def test_digits_are_split(tokenizer):
    ids = tokenizer.encode("12345")
    assert len(ids) == 5 and tokenizer.decode(ids[:2]) == "12"


def test_decode_skips_control_ids(tokenizer):
    ids = tokenizer.encode("hi")
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]) == "hi"


def test_build_is_deterministic(tmp_path):
    texts = _texts()
    first = build.train_model(texts, vocab_size=400)
    assert first == build.train_model(texts, vocab_size=400)
    build.write_model(first, tmp_path / "small.model")
    small = Tokenizer.load(tmp_path / "small.model")
    assert small.vocab_size == 400 and small.step_id == 8
    assert all(small.decode(small.encode(text)) == text for text in texts)


def test_missing_or_corrupt_model_is_clear(tmp_path):
    with pytest.raises(TokenizerModelError, match=r"nope\.model.*python -m rtc\.tokenizer\.build"):
        Tokenizer.load(tmp_path / "nope.model")
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(TokenizerModelError, match=r"corrupt\.model.*python -m rtc\.tokenizer\.build"):
        Tokenizer.load(corrupt)
