"""Pretrained tokenizers behind rtc's interface: sentencepiece (tok512), tokenizer.json, templates."""

import json
from pathlib import Path

import pytest
import tokenizers

from rtc.errors import PretrainedError
from rtc.tokenizer.hf import HFTokenizer, SentencePieceTokenizer, load_tokenizer
from rtc.tokenizer.templates import TEMPLATES, family_template, get_template

TOK512 = Path(__file__).parent / "data" / "stories260K" / "tok512.model"  # shipped with the tests
COMPLETION = "Compute 3+4.\n<think>3+4=7\n</think><answer>7</answer>"


@pytest.fixture(scope="module")
def tok512():
    return load_tokenizer(TOK512)


def test_tok512_keeps_its_ids_and_adds_the_markers(tok512):
    assert isinstance(tok512, SentencePieceTokenizer)
    assert tok512.encode("Once upon a time") == [403, 407, 261, 378]  # the dataset README's ids
    assert (tok512.bos_id, tok512.eos_id, tok512.pad_id) == (1, 2, 0)  # no pad piece: unk
    assert tok512.step_id == 13  # the byte piece <0x0A>
    markers = [tok512.think_start_id, tok512.think_end_id, tok512.answer_start_id, tok512.answer_end_id]
    assert markers == [512, 513, 514, 515] and tok512.vocab_size == 516
    ids = tok512.encode(COMPLETION)
    assert set(markers) <= set(ids) and ids.count(tok512.step_id) == 2
    assert tok512.decode(ids) == COMPLETION
    assert tok512.decode([tok512.bos_id] + ids + [tok512.eos_id, tok512.pad_id]) == COMPLETION
    assert tok512.template.name == "plain" and tok512.stop_ids == (2, 515)


def test_tok512_saves_and_reloads_with_the_same_ids(tok512, tmp_path):
    tok512.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.vocab_size == 516 and again.encode(COMPLETION) == tok512.encode(COMPLETION)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["eos_token"] == "</s>"


def _bpe_directory(tmp_path, extra_tokens=(), config=None):
    """A byte-level BPE tokenizer.json trained on a few lines, with ChatML turn tokens."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra_tokens]
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=special,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["Compute 3+4.\nthe answer is 7\n", "hello world\nhello there"] * 20, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    hf = {"model_type": "qwen2", "eos_token_id": 0, "bos_token_id": None, **(config or {})}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    return tmp_path


def test_tokenizer_json_adds_missing_markers_and_reads_special_ids(tmp_path):
    tok = load_tokenizer(_bpe_directory(tmp_path))
    assert isinstance(tok, HFTokenizer) and tok.template.name == "chatml"
    base = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size()
    assert tok.vocab_size == base + 4 and tok.think_start_id >= base
    assert (tok.eos_id, tok.bos_id, tok.pad_id) == (0, 0, 0)  # Qwen-style: no bos or pad, eos stands in
    assert tok.encode("\n") == [tok.step_id]
    ids = tok.encode(COMPLETION)
    assert tok.decode(ids) == COMPLETION and tok.think_end_id in ids
    prompt = tok.prompt("Compute 3+4.")
    assert prompt == "<|im_start|>user\nCompute 3+4.<|im_end|>\n<|im_start|>assistant\n"
    assert tok.encode(prompt)[0] == 1  # <|im_start|> is one token
    assert tok.stop_ids == (0, 2, tok.answer_end_id)  # eos, <|im_end|>, </answer>
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.encode(COMPLETION) == ids and again.vocab_size == tok.vocab_size


def test_markers_already_in_the_vocabulary_are_used(tmp_path):
    tok = load_tokenizer(_bpe_directory(tmp_path, extra_tokens=("<think>", "</think>")))
    assert tok.think_start_id == 3 and tok.think_end_id == 4  # DeepSeek-R1 / Qwen3 style
    base = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size()
    assert tok.vocab_size == base + 2  # only <answer> and </answer> added


def test_template_override_and_family_defaults(tmp_path):
    tok = load_tokenizer(_bpe_directory(tmp_path), template_name="plain")
    assert tok.prompt("q") == "q\n"  # rtc's plain format: the question and the step delimiter
    assert family_template("llama", {"<|start_header_id|>"}).name == "llama3"
    assert family_template("llama", {"<s>"}).name == "plain"
    assert family_template("gemma", {"<start_of_turn>"}).prompt("hi", system="be brief") == (
        "<start_of_turn>user\nbe brief\n\nhi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert TEMPLATES["llama3"].prompt("hi").endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    with pytest.raises(PretrainedError, match="unknown chat template 'vicuna'"):
        get_template("vicuna")


def test_bad_tokenizer_files_are_errors(tmp_path):
    with pytest.raises(PretrainedError, match="neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(PretrainedError, match="cannot read tokenizer"):
        load_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "broken.model").write_bytes(b"\x01\x02garbage")
    with pytest.raises(PretrainedError, match="not a sentencepiece model"):
        load_tokenizer(tmp_path / "broken.model")
