"""A checkpoint's own chat template, rendered by rtc as transformers' `apply_chat_template` renders it.

Each family's tokenizer folder is built here: a byte-level BPE `tokenizer.json` trained on a few lines
with the family's special tokens, and a `tokenizer_config.json` holding the real instruct template
(`tests/data/chat_templates/`). The folders carry no `model_type`: given one, transformers rebuilds
that model's own tokenizer class around `tokenizer.json` (its pre-tokenizer, not this toy one), so the
ids would differ for reasons that are not the template's.
"""

import datetime
import json
from pathlib import Path

import pytest
import tokenizers

from rtc.data.format import prompt_tokens
from rtc.errors import PretrainedError
from rtc.tokenizer import templates
from rtc.tokenizer.hf import load_tokenizer
from rtc.tokenizer.templates import JinjaTemplate, chat_messages, jinja_template
from rtc.train.sft_data import encode_example

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"

# family: (template file, special tokens, tokenizer_config bos/eos, turn end)
FAMILIES = {
    "llama3": (
        "llama3.jinja",
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
        "<|eot_id|>",
    ),
    "qwen2": (
        "qwen2.jinja",
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        {"bos_token": None, "eos_token": "<|endoftext|>"},
        "<|im_end|>",
    ),
    "gemma": (
        "gemma.jinja",
        ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
        "<end_of_turn>",
    ),
}
TEXTS = [
    "What is 3+4? Think step by step.\nsystem user assistant model",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "You are a careful math tutor. Answer briefly.",
]
QUESTIONS = [
    "What is 3+4?",
    "Natalia sold clips to 48 of her friends in April.\nHow many clips did she sell?",
    "  ¿Cuánto es 7×8?  ",  # Llama's and Gemma's templates trim the content; Qwen's keeps it
]
SYSTEMS = ["", "You are a careful math tutor."]


def _write_folder(directory: Path, family: str, chat_template: bool = True, model_type: str = "") -> Path:
    name, special, tokens, _ = FAMILIES[family]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=special,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS * 10, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **tokens}
    if chat_template:
        config["chat_template"] = (TEMPLATES / name).read_text()
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "config.json").write_text(json.dumps({"model_type": model_type} if model_type else {}))
    return directory


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def folder(request, tmp_path_factory):
    return request.param, _write_folder(tmp_path_factory.mktemp(request.param), request.param)


def _hf(directory: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(directory))


def _cases(family: str):
    systems = [""] if family == "gemma" else SYSTEMS  # Gemma's template has no system role
    return [(q, s) for q in QUESTIONS for s in systems]


def test_prompt_text_and_ids_equal_apply_chat_template(folder, monkeypatch):
    family, directory = folder
    # transformers renders today's date; rtc a fixed one (templates.TEMPLATE_DATE): compare on today's
    monkeypatch.setattr(templates, "TEMPLATE_DATE", datetime.datetime.now())
    rtc_tok, hf_tok = load_tokenizer(directory), _hf(directory)
    assert isinstance(rtc_tok.template, JinjaTemplate)
    for question, system in _cases(family):
        messages = chat_messages(question, system)
        expected = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = hf_tok.bos_token or ""
        assert rtc_tok.template.render(messages) == expected
        assert (bos if rtc_tok.template.bos else "") + rtc_tok.prompt(question, system) == expected
        ids = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"]
        assert prompt_tokens(rtc_tok, {"question": question, "system": system}) == ids


def test_bos_is_added_once_and_only_where_the_template_writes_it(folder):
    family, directory = folder
    tok = load_tokenizer(directory)
    ids = prompt_tokens(tok, {"question": "What is 3+4?"})
    bos_string = FAMILIES[family][2]["bos_token"]
    assert tok.template.bos == (family != "qwen2")  # Qwen's template writes no bos
    assert not tok.prompt("What is 3+4?").startswith(bos_string or "<none>")
    assert ids.count(tok.bos_id) == (1 if tok.template.bos else 0)
    assert (ids[0] == tok.bos_id) == tok.template.bos


def test_stop_ids_hold_eos_the_turn_end_and_answer_end(folder):
    family, directory = folder
    tok = load_tokenizer(directory)
    turn_end = FAMILIES[family][3]
    assert tok.template.turn_end == turn_end
    raw = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    eos = raw.token_to_id(FAMILIES[family][2]["eos_token"])
    assert tok.stop_ids == (eos, raw.token_to_id(turn_end), tok.answer_end_id)


def test_prompt_does_not_change_with_the_clock(tmp_path, monkeypatch):
    llama = load_tokenizer(_write_folder(tmp_path / "llama3", "llama3"))
    first = llama.prompt("Hi")

    class Tomorrow(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2031, 1, 2)

    monkeypatch.setattr(datetime, "datetime", Tomorrow)
    assert llama.prompt("Hi") == first and "Today Date: 26 Jul 2024" in first


def test_exact_llama3_and_gemma_prompts(tmp_path):
    llama = load_tokenizer(_write_folder(tmp_path / "llama3", "llama3"))
    text = llama.template.render(chat_messages("Hi", "Be brief."))
    header = (
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: "
    )
    assert text.startswith("<|begin_of_text|>" + header)
    assert text.endswith(
        "\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    gemma = load_tokenizer(_write_folder(tmp_path / "gemma", "gemma"))
    assert gemma.prompt("  Hi ") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    with pytest.raises(PretrainedError, match="System role not supported"):
        gemma.prompt("Hi", system="Be brief.")


def test_sft_prompt_is_the_inference_prompt(tmp_path):
    tok = load_tokenizer(_write_folder(tmp_path, "qwen2"))
    example = {"question": "What is 3+4?", "steps": ["3+4=7"], "answer": "7"}
    ids, mask = encode_example(tok, example)
    prompt = prompt_tokens(tok, example)
    assert ids[: len(prompt)] == prompt and mask[: len(prompt)] == [0] * len(prompt)
    assert tok.decode(ids[len(prompt) :]) == "<think>3+4=7\n</think><answer>7</answer>"
    assert ids[-1] == tok.eos_id and mask[len(prompt) :] == [1] * (len(ids) - len(prompt))


@pytest.mark.parametrize(
    "family, model_type, template, prompt",
    [
        (
            "llama3",
            "llama",
            "llama3",
            "<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("qwen2", "qwen2", "chatml", "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"),
        ("gemma", "gemma", "gemma", "<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n"),
        ("qwen2", "", "plain", "q\n"),  # no template, no family: rtc's plain format
        ("qwen2", "llama", "plain", "q\n"),  # a llama without Llama 3's header tokens
    ],
)
def test_without_a_chat_template_the_family_template_stands_in(
    tmp_path, family, model_type, template, prompt
):
    tok = load_tokenizer(_write_folder(tmp_path, family, chat_template=False, model_type=model_type))
    assert tok.template.name == template and tok.prompt("q") == prompt
    bos = [tok.bos_id] if template != "chatml" else []  # ChatML has no bos, as Qwen's own template
    assert prompt_tokens(tok, {"question": "q"}) == bos + tok.encode(prompt)


def test_chat_template_sources(tmp_path):
    directory = _write_folder(tmp_path, "qwen2", chat_template=False)
    (directory / "chat_template.jinja").write_text((TEMPLATES / "gemma.jinja").read_text())
    assert (
        load_tokenizer(directory).prompt("q") == "<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n"
    )
    (directory / "chat_template.jinja").unlink()
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["chat_template"] = [
        {"name": "tool_use", "template": "{{ 'tools' }}"},
        {"name": "default", "template": "{% for m in messages %}[{{ m.content }}]{% endfor %}"},
    ]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(directory)
    assert tok.prompt("q", system="s") == "[s][q]" and tok.template.turn_end == "]"
    assert load_tokenizer(directory, template_name="chatml").template.name == "chatml"  # a name overrides
    config["chat_template"] = config["chat_template"][:1]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match="no 'default'"):
        load_tokenizer(directory)


def test_saved_tokenizer_keeps_its_chat_template(tmp_path):
    tok = load_tokenizer(_write_folder(tmp_path / "in", "llama3"))
    (tmp_path / "out").mkdir()
    tok.save(tmp_path / "out")
    again = load_tokenizer(tmp_path / "out")
    question = {"question": "What is 3+4?"}
    assert again.template.source == tok.template.source
    assert prompt_tokens(again, question) == prompt_tokens(tok, question)


def test_sandbox_and_environment():
    helpers = "{{ raise_exception('no') if messages|length > 1 }}{{ messages[0] | tojson }}{{ strftime_now('%Y')|length }}"
    template = jinja_template(helpers, {"bos_token": "<s>"})
    assert template.prompt("é<b>") == '{"role": "user", "content": "é<b>"}4'  # no HTML escaping, no ASCII
    assert template.bos is False and template.turn_end == ""  # the probe with two messages raised
    with pytest.raises(PretrainedError, match="cannot render"):
        jinja_template("{{ messages.__class__.__mro__ }}", {}).prompt("q")
    with pytest.raises(PretrainedError, match="cannot compile"):
        jinja_template("{% for %}", {})
    loops = "{% for m in [1, 2, 3] %}{% if m == 2 %}{% break %}{% endif %}{{ m }}{% endfor %}"
    assert jinja_template(loops + "{% generation %}g{% endgeneration %}", {}).prompt("q") == "1g"
