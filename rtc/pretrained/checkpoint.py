"""Starting from a pretrained checkpoint: the entry points the training and search loops call.

A checkpoint is a Hugging Face model directory (config.json + safetensors: Llama, Qwen2, Gemma) or
a llama2.c legacy `.bin`; its tokenizer is the directory's `tokenizer.json` / `tokenizer.model`, or
for a `.bin` the `tok{vocab}.model` / `tokenizer.model` beside it, unless a path is given.
"""

import dataclasses
from pathlib import Path

import numpy as np

from rtc.data.download import shipped_root
from rtc.data.paths import data_root
from rtc.errors import PretrainedError
from rtc.model.config import ModelConfig
from rtc.model.transformer import Model
from rtc.pretrained import hf, llama2c
from rtc.pretrained.params import ShardingSpec
from rtc.pretrained.resize import add_scalar_head, grow_vocab
from rtc.tokenizer.hf import PretrainedTokenizer, load_tokenizer

# Model fields a run may set on a pretrained model; the others are the checkpoint's architecture.
RUNTIME_FIELDS = ("dtype", "max_seq_len", "scalar_head")


def resolve(path: str | Path) -> Path:
    """`path` as given; else relative to the data root (`rtc.data.paths.data_root`); else, in a source
    checkout, relative to the repository's `tests/data`, which ships `stories260K/`."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    roots = [data_root(), shipped_root()] if not given.is_absolute() else []
    for root in roots:
        if root is not None and (root / given).exists():
            return root / given
    looked = ", ".join(str(root) for root in roots if root is not None)
    raise PretrainedError(
        f"pretrained checkpoint {path} does not exist" + (f" (nor under {looked})" if looked else "")
    )


def load_model(
    path: str | Path, dtype=np.float32, sharding: ShardingSpec = None
) -> tuple[ModelConfig, str, dict]:
    """`(config, family, params)`: a HF directory (family llama/qwen2/gemma) or a llama2.c `.bin`
    (family "llama2c")."""
    path = resolve(path)
    if path.is_dir():
        return hf.load(path, dtype, sharding)
    if path.suffix == ".bin":
        config, params = llama2c.load(path, dtype, sharding)
        return config, "llama2c", params
    raise PretrainedError(f"{path} is neither a Hugging Face model directory nor a llama2.c .bin file")


def default_tokenizer_path(path: Path, vocab_size: int) -> Path:
    """The checkpoint directory itself, or the tokenizer model beside a `.bin`."""
    if path.is_dir():
        return path
    names = (f"tok{vocab_size}.model", "tokenizer.model", "tokenizer.json")
    for name in names:
        if (path.parent / name).exists():
            return path.parent / name
    raise PretrainedError(
        f"no tokenizer beside {path} (looked for {', '.join(names)}); set pretrained_tokenizer"
    )


def load_pretrained(
    path: str | Path,
    tokenizer_path: str | Path = "",
    template: str = "",
    dtype=np.float32,
    sharding: ShardingSpec = None,
) -> tuple[PretrainedTokenizer, Model, dict]:
    """`(tokenizer, model, params)` for a checkpoint; the embedding grows to the tokenizer's
    vocabulary when the tokenizer added reasoning markers (`resize.grow_vocab`)."""
    config, _, params = load_model(path, dtype, sharding)
    source = resolve(path)
    tokenizer = load_tokenizer(
        resolve(tokenizer_path) if tokenizer_path else default_tokenizer_path(source, config.vocab_size),
        template,
    )
    config, params = grow_vocab(config, params, tokenizer.vocab_size)
    return tokenizer, Model(config), params


def apply_overrides(config: ModelConfig, params: dict, overrides) -> tuple[ModelConfig, dict]:
    """`config.model` of a run (None = keep) applied to a loaded model: `RUNTIME_FIELDS` change it
    (a scalar head is added zeroed, or dropped); an architecture field that differs from the
    checkpoint is an error naming it. `preset` is ignored: the checkpoint is the preset."""
    changes = {}
    for key, value in (overrides or {}).items():
        if key == "preset" or value is None or getattr(config, key, None) == value:
            continue
        if key not in RUNTIME_FIELDS:
            raise PretrainedError(
                f"config.model.{key}={value!r} conflicts with the pretrained checkpoint's "
                f"{getattr(config, key, '(no such field)')!r}; a pretrained run takes its architecture "
                f"from the checkpoint (only {', '.join(RUNTIME_FIELDS)} may be set)"
            )
        changes[key] = value
    if changes.get("scalar_head"):
        config, params = add_scalar_head(config, params)
    elif changes.get("scalar_head") is False:
        params = {k: v for k, v in params.items() if k not in ("value_head", "value_bias")}
    return dataclasses.replace(config, **changes), params


def from_config(config, sharding: ShardingSpec = None) -> tuple[PretrainedTokenizer, Model, dict] | None:
    """`(tokenizer, model, params)` to start a run from, or None when `config.pretrained` is unset.

    Contract for every loop (SFT, GRPO, reward models, search):
    - `config.pretrained`: None, "" or absent = off (the loop builds its preset and random init); else a
      HF model directory or a llama2.c `.bin`, as given or relative to the data root.
      `config.pretrained_tokenizer` (optional) overrides the tokenizer path;
      `config.pretrained_template` (optional) the chat template name (`rtc.tokenizer.templates`).
    - The tokenizer has rtc's interface (encode, decode, vocab_size, pad/bos/eos ids, the
      think/answer/step ids) plus `template`, `prompt(question)` and `stop_ids`.
    - `model.config` is the checkpoint's architecture with `vocab_size >= tokenizer.vocab_size` and
      `config.model`'s non-None `dtype`, `max_seq_len`, `scalar_head` applied (`apply_overrides`);
      `config.model.preset` is ignored.
    - `params` is float32 in rtc's layout (the tree `model.init_params` builds), on `sharding` (a
      `Sharding` or `(path, shape) -> Sharding`; None: the default device). Loops place it as they
      place fresh params, and a resumed run's checkpoint replaces it as it replaces a random init.
    - Any unreadable, incomplete or unsupported checkpoint raises `PretrainedError` (a ConfigError).
    """
    path = config.get("pretrained")
    if not path:
        return None
    tokenizer, model, params = load_pretrained(
        path,
        config.get("pretrained_tokenizer") or "",
        config.get("pretrained_template") or "",
        sharding=sharding,
    )
    model_config, params = apply_overrides(model.config, params, config.get("model"))
    return tokenizer, Model(model_config), params
