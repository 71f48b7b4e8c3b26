"""Tokenizers of pretrained checkpoints behind rtc's tokenizer interface (`rtc.tokenizer.tokenizer`).

Two formats: a Hugging Face `tokenizer.json` (the `tokenizers` library) and a sentencepiece model
(Kudo & Richardson 2018: llama2.c's `tok512.model`, Llama 2's `tokenizer.model`). rtc's samplers and
searches need each reasoning marker (`<think>`, `</think>`, `<answer>`, `</answer>`) and the step
delimiter to be one token. A marker the vocabulary lacks is added after the last id (a `tokenizers`
added token; a sentencepiece user-defined piece), so `vocab_size` can exceed the checkpoint's and
`rtc.pretrained` grows the embedding to match. bos/eos/pad come from the checkpoint's
`config.json`, `generation_config.json` or `tokenizer_config.json`; without a pad token, pad is unk
(sentencepiece) or eos: every rtc loss masks padding explicitly, so its id only has to exist.

The prompt framing is the checkpoint's own `chat_template` (`chat_template.jinja`, else the
`tokenizer_config.json` entry) rendered by `rtc.tokenizer.templates.JinjaTemplate`; without one, the
family's hand-written template (`family_template`); a `template_name` overrides both.
"""

import json
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
import tokenizers

from rtc.errors import PretrainedError
from rtc.tokenizer.templates import ChatTemplate, JinjaTemplate, family_template, get_template, jinja_template

_BYTE_PIECE = "<0x{:02X}>"
_TEMPLATE_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


class PretrainedTokenizer:
    """rtc's tokenizer interface over a pretrained vocabulary; subclasses supply the codec."""

    def __init__(self, path: str, template: ChatTemplate, ids: dict[str, int], eos_ids: tuple[int, ...]):
        self.path = path
        self.template = template
        self._ids = ids  # bos, eos, pad, think_start, think_end, answer_start, answer_end, step
        self.eos_ids = eos_ids  # every end-of-sequence id the checkpoint names (Llama 3 has several)
        self._skip = {ids["pad"], ids["bos"], ids["eos"]}

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no bos/eos added)."""
        return self._encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids: int[T]`; pad, bos and eos decode to nothing."""
        return self._decode([int(i) for i in ids if int(i) not in self._skip])

    def prompt(self, question: str, system: str = "") -> str:
        """`question` framed by the chat template, without bos (`ChatTemplate.prompt`; the ids start with
        `bos_id` when `template.bos`: `rtc.data.format.prompt_tokens`)."""
        return self.template.prompt(question, system)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a reply: the eos ids, the template's turn end when it is one token, `</answer>`."""
        turn_end = self.encode(self.template.turn_end) if self.template.turn_end else []
        extra = tuple(turn_end) if len(turn_end) == 1 else ()
        return tuple(dict.fromkeys(self.eos_ids + extra + (self.answer_end_id,)))

    vocab_size: int
    pad_id = property(lambda self: self._ids["pad"])
    bos_id = property(lambda self: self._ids["bos"])
    eos_id = property(lambda self: self._ids["eos"])
    think_start_id = property(lambda self: self._ids["think_start"])
    think_end_id = property(lambda self: self._ids["think_end"])
    answer_start_id = property(lambda self: self._ids["answer_start"])
    answer_end_id = property(lambda self: self._ids["answer_end"])
    step_id = property(lambda self: self._ids["step"], doc="The step delimiter (newline) token.")


class HFTokenizer(PretrainedTokenizer):
    """A `tokenizer.json`; `save` writes it back with the added markers."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, path: str, template_name: str = ""):
        self._tok = tokenizer
        meta = _special_token_meta(Path(path).parent)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        template = _choose_template(template_name, meta, vocab)
        missing = [m for m in template.markers if tokenizer.token_to_id(m) is None]
        tokenizer.add_tokens([tokenizers.AddedToken(m, normalized=False, special=False) for m in missing])
        ids = {name: tokenizer.token_to_id(m) for name, m in _marker_names(template).items()}
        ids["step"] = self._single_token(template.step_delimiter)
        eos_ids = meta["eos"] or _token_ids(meta["eos_token"], tokenizer.token_to_id)
        if not eos_ids:
            raise PretrainedError(f"{path}: no eos token in config.json or tokenizer_config.json")
        bos = meta["bos"] if meta["bos"] is not None else tokenizer.token_to_id(meta["bos_token"] or "")
        pad = meta["pad"] if meta["pad"] is not None else tokenizer.token_to_id(meta["pad_token"] or "")
        ids.update(
            eos=eos_ids[0], bos=eos_ids[0] if bos is None else bos, pad=eos_ids[0] if pad is None else pad
        )
        super().__init__(path, template, ids, tuple(eos_ids))
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1

    @classmethod
    def load(cls, path: str | Path, template_name: str = "") -> "HFTokenizer":
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust library raises a bare Exception
            raise PretrainedError(f"cannot read tokenizer {path}: {error}") from error
        return cls(tokenizer, str(path), template_name)

    def _single_token(self, text: str) -> int:
        """The id `text` takes inside running text (a byte piece for byte-fallback vocabularies)."""
        for candidate in (text, _BYTE_PIECE.format(text.encode()[0]) if len(text.encode()) == 1 else None):
            if candidate is not None and self._tok.token_to_id(candidate) is not None:
                return self._tok.token_to_id(candidate)
        ids = self._encode(text)
        if len(ids) == 1:
            return ids[0]
        self._tok.add_tokens([tokenizers.AddedToken(text, normalized=False, special=False)])
        return self._tok.token_to_id(text)

    def _encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def save(self, directory: str | Path) -> None:
        """Writes `tokenizer.json` and a `tokenizer_config.json` naming the special tokens."""
        self._tok.save(str(Path(directory) / "tokenizer.json"))
        _write_tokenizer_config(
            directory, "PreTrainedTokenizerFast", self._tok.id_to_token, self._ids, self.template
        )


class SentencePieceTokenizer(PretrainedTokenizer):
    """A sentencepiece model; missing markers become user-defined pieces appended to it."""

    def __init__(self, model: bytes, path: str, template_name: str = ""):
        from sentencepiece import sentencepiece_model_pb2  # needs protobuf; only this class does

        proto = sentencepiece_model_pb2.ModelProto()
        try:
            proto.ParseFromString(model)
        except Exception as error:  # protobuf's DecodeError is not a public base class
            raise PretrainedError(f"{path} is not a sentencepiece model: {error}") from error
        meta = _special_token_meta(Path(path).parent)
        vocab = {p.piece for p in proto.pieces}
        template = _choose_template(template_name, meta, vocab)
        delimiter = template.step_delimiter
        step_piece = delimiter if delimiter in vocab else _BYTE_PIECE.format(delimiter.encode()[0])
        wanted = list(template.markers) + ([] if step_piece in vocab else [delimiter])
        for piece in (m for m in wanted if m not in vocab):
            added = proto.pieces.add()
            added.piece, added.score = piece, 0.0
            added.type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
        self._model = proto.SerializeToString()
        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(self._model)
        sp = self._sp
        ids = {name: sp.piece_to_id(m) for name, m in _marker_names(template).items()}
        ids["step"] = sp.piece_to_id(step_piece if step_piece in vocab else delimiter)
        eos = meta["eos"] or ([sp.eos_id()] if sp.eos_id() >= 0 else [])
        if not eos:
            raise PretrainedError(f"{path}: the sentencepiece model has no eos piece")
        bos = meta["bos"] if meta["bos"] is not None else sp.bos_id()
        pad = meta["pad"] if meta["pad"] is not None else sp.pad_id()
        fallback = sp.unk_id() if sp.unk_id() >= 0 else eos[0]
        ids.update(eos=eos[0], bos=bos if bos >= 0 else eos[0], pad=pad if pad >= 0 else fallback)
        super().__init__(path, template, ids, tuple(eos))
        self.vocab_size = sp.vocab_size()

    @classmethod
    def load(cls, path: str | Path, template_name: str = "") -> "SentencePieceTokenizer":
        try:
            model = Path(path).read_bytes()
        except OSError as error:
            raise PretrainedError(f"cannot read tokenizer {path}: {error}") from error
        return cls(model, str(path), template_name)

    def _encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def _decode(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def save(self, directory: str | Path) -> None:
        """Writes `tokenizer.model` (with the added pieces) and a `tokenizer_config.json`."""
        (Path(directory) / "tokenizer.model").write_bytes(self._model)
        _write_tokenizer_config(directory, "LlamaTokenizer", self._sp.id_to_piece, self._ids, self.template)


def load_tokenizer(path: str | Path, template_name: str = "") -> PretrainedTokenizer:
    """The tokenizer at `path`: a `tokenizer.json`, a sentencepiece model, or a directory with either
    (`tokenizer.json` preferred). `template_name` overrides the family's chat template."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in ("tokenizer.json", "tokenizer.model") if (path / name).exists()]
        if not found:
            raise PretrainedError(f"{path} has neither tokenizer.json nor tokenizer.model")
        path = found[0]
    if not path.exists():
        raise PretrainedError(f"tokenizer {path} does not exist")
    if path.suffix == ".json":
        return HFTokenizer.load(path, template_name)
    return SentencePieceTokenizer.load(path, template_name)


def _choose_template(template_name: str, meta: dict, vocab) -> ChatTemplate:
    """The template called `template_name`; else the checkpoint's own chat template; else its family's."""
    if template_name:
        return get_template(template_name)
    if meta["chat_template"]:
        return jinja_template(meta["chat_template"], meta["special_tokens"])
    return family_template(meta["family"], vocab)


def _marker_names(template: ChatTemplate) -> dict[str, str]:
    return dict(zip(("think_start", "think_end", "answer_start", "answer_end"), template.markers))


def _token_ids(value, token_to_id) -> list[int]:
    """Ids named by a config value: an int, a list of ints, or a token string."""
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        found = token_to_id(value)
        return [] if found is None else [found]
    return [int(v) for v in value]


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PretrainedError(f"cannot parse {path}: {error}") from error


def _token_string(value) -> str | None:
    """A tokenizer_config.json special token: a string or an AddedToken dict `{"content": ...}`."""
    return value.get("content") if isinstance(value, dict) else value


def _chat_template_source(directory: Path, tokenizer_config: dict) -> str:
    """The checkpoint's chat template: `chat_template.jinja` (which transformers prefers), else
    `tokenizer_config.json`'s `chat_template`, a string or a list of `{"name", "template"}` (the
    one named "default"); "" when it has none."""
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    value = tokenizer_config.get("chat_template") or ""
    if isinstance(value, list):
        named = {entry.get("name"): entry.get("template", "") for entry in value}
        if "default" not in named:
            raise PretrainedError(f"{directory}: chat_template lists {sorted(named)} but no 'default'")
        value = named["default"]
    return value


def _special_token_meta(directory: Path) -> dict:
    """bos/eos/pad ids (config.json, then generation_config.json), token strings
    (tokenizer_config.json, then special_tokens_map.json), the chat template and the model family
    (`model_type`) found in `directory`."""
    config = _read_json(directory / "config.json")
    generation = _read_json(directory / "generation_config.json")
    tokenizer_config = {
        **_read_json(directory / "special_tokens_map.json"),
        **_read_json(directory / "tokenizer_config.json"),
    }

    def first(name):
        value = config.get(name, generation.get(name))
        return value if value is not None else generation.get(name)

    eos = first("eos_token_id")
    return {
        "family": config.get("model_type", ""),
        "bos": first("bos_token_id"),
        "pad": first("pad_token_id"),
        "eos": [] if eos is None else ([eos] if isinstance(eos, int) else [int(e) for e in eos]),
        "bos_token": _token_string(tokenizer_config.get("bos_token")),
        "eos_token": _token_string(tokenizer_config.get("eos_token")),
        "pad_token": _token_string(tokenizer_config.get("pad_token")),
        "special_tokens": {  # the strings a chat template reads, as transformers' special_tokens_map
            name: _token_string(tokenizer_config.get(name)) for name in _TEMPLATE_TOKENS
        },
        "chat_template": _chat_template_source(directory, tokenizer_config),
    }


def _write_tokenizer_config(
    directory, tokenizer_class: str, id_to_token, ids: dict[str, int], template: ChatTemplate
) -> None:
    """`tokenizer_config.json`: the class, the bos/eos/pad strings and the checkpoint's chat template."""
    config = {"tokenizer_class": tokenizer_class}
    config.update({f"{name}_token": id_to_token(ids[name]) for name in ("bos", "eos", "pad")})
    if isinstance(template, JinjaTemplate):
        config["chat_template"] = template.source
    (Path(directory) / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
