"""rtc parameters out as a Hugging Face checkpoint: `config.json` + safetensors (+ tokenizer).

The inverse of `rtc.pretrained.hf.load` (export then load gives back the same parameters), and a
directory that transformers' `AutoModelForCausalLM.from_pretrained` and other servers read. Tensors
are converted one at a time and written in shards of at most `max_shard_bytes`, so the host holds
one shard beyond the parameters. A scalar head (critic / PRM) is written as `value_head.weight` /
`value_head.bias` with `rtc_scalar_head: true` in config.json: rtc loads it back; transformers
ignores it with a warning.
"""

import json
from pathlib import Path

import jax
import numpy as np
import sentencepiece as spm

from rtc.model.config import ModelConfig
from rtc.pretrained import layout
from rtc.pretrained.hf_config import hf_config_from_model, infer_family
from rtc.pretrained.params import flatten
from rtc.pretrained.safetensors_io import write_sharded

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": jax.numpy.bfloat16}


def save_sentencepiece(tokenizer, directory: Path) -> None:
    """rtc's own tokenizer (`rtc.tokenizer.tokenizer.Tokenizer`) as `tokenizer.model` (its sentencepiece
    model, copied) and a `tokenizer_config.json` that transformers' `AutoTokenizer` loads as a Llama
    tokenizer giving rtc's ids: no prefix space, bos added in front as rtc's prompts have it, the
    reasoning markers as added tokens. (A literal U+2581 is the one text encoded differently: rtc
    encodes it as its bytes, sentencepiece as a space.)"""
    model = Path(tokenizer.path).read_bytes()
    (directory / "tokenizer.model").write_bytes(model)
    piece = spm.SentencePieceProcessor(model_proto=model).id_to_piece
    markers = (
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        tokenizer.answer_start_id,
        tokenizer.answer_end_id,
    )
    token = dict(special=False, normalized=False, lstrip=False, rstrip=False, single_word=False)
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": piece(tokenizer.bos_id),
        "eos_token": piece(tokenizer.eos_id),
        "pad_token": piece(tokenizer.pad_id),
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": False,
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(i): {"content": piece(i), **token} for i in markers},
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _special_ids(tokenizer) -> dict[str, int]:
    if tokenizer is None:
        return {}
    return {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}


def export(
    directory: str | Path,
    config: ModelConfig,
    params: dict,
    tokenizer=None,
    family: str = "",
    dtype: str = "float32",
    max_shard_bytes: int = 2 << 30,
) -> Path:
    """Writes `params` of a `config` model to `directory` as a `family` checkpoint (default: the
    family whose computation the config is, `hf_config.infer_family`); returns the directory.

    `tokenizer` (rtc's own, or an `rtc.tokenizer.hf` tokenizer with its added markers) is saved
    beside it and its bos/eos/pad ids go into config.json. `dtype`: float32, float16 or bfloat16.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    family = family or infer_family(config)
    hf = hf_config_from_model(config, family, _special_ids(tokenizer))
    hf["torch_dtype"] = dtype
    if config.scalar_head:
        hf["rtc_scalar_head"] = True
    flat = flatten(params)
    names = layout.hf_names(config)

    def tensors():
        for path, name in names.items():
            host = np.asarray(jax.device_get(flat[path]))
            yield (
                name,
                np.ascontiguousarray(layout.to_hf(path.split("/")[-1], host, config).astype(DTYPES[dtype])),
            )

    write_sharded(directory, tensors(), max_shard_bytes)
    (directory / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    generation = {k: v for k, v in hf.items() if k.endswith("_token_id")}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if hasattr(tokenizer, "save"):  # a pretrained checkpoint's tokenizer (`rtc.tokenizer.hf`)
        tokenizer.save(directory)
    elif tokenizer is not None:
        save_sentencepiece(tokenizer, directory)
    return directory
