"""Hugging Face checkpoints (Llama, Qwen2, Gemma; `config.json` + safetensors) into rtc parameters.

Every tensor the config implies must be present with its config-derived shape, and every tensor
present must be used (bar rotary caches of old exports and a duplicate `lm_head` of a tied model):
anything else is an error naming the tensor. Tensors are read, converted (`layout.to_rtc`) and
placed one at a time, so the host holds at most a couple of tensors beyond the placed parameters.
"""

import json
from pathlib import Path

import numpy as np

from rtc.errors import PretrainedError
from rtc.model.config import ModelConfig
from rtc.pretrained import layout
from rtc.pretrained.hf_config import model_config_from_hf
from rtc.pretrained.params import ShardingSpec, check_complete, place, unflatten
from rtc.pretrained.safetensors_io import SafetensorsReader


def read_config(directory: str | Path) -> dict:
    """The `config.json` of a checkpoint directory as a dict."""
    path = Path(directory) / "config.json"
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise PretrainedError(f"cannot read {path}: {error}") from error
    except ValueError as error:
        raise PretrainedError(f"{path} is not valid JSON: {error}") from error


def _check_names(reader: SafetensorsReader, names: dict[str, str], config: ModelConfig, source: str) -> None:
    present = reader.names()
    missing = sorted(set(names.values()) - present)
    if missing:
        raise PretrainedError(f"{source}: missing tensor {missing[0]} ({len(missing)} missing in all)")
    ignorable = {n for n in present if n.endswith(layout.IGNORED_SUFFIXES)}
    if config.tie_embeddings:
        ignorable.add("lm_head.weight")  # some tied checkpoints store the shared matrix twice
    unexpected = sorted(present - set(names.values()) - ignorable)
    if unexpected:
        raise PretrainedError(
            f"{source}: unexpected tensor {unexpected[0]} ({len(unexpected)} in all) that the "
            f"{config.num_layers}-layer config.json does not account for"
        )


def load(
    directory: str | Path, dtype=np.float32, sharding: ShardingSpec = None
) -> tuple[ModelConfig, str, dict]:
    """`(config, family, params)` of the checkpoint in `directory`, onto `sharding` tensor by tensor.

    A scalar head written by `rtc.pretrained.export` (config.json `rtc_scalar_head`) is loaded too.
    """
    directory = Path(directory)
    hf = read_config(directory)
    source = str(directory)
    config, family = model_config_from_hf(hf, f"{directory / 'config.json'}")
    if hf.get("rtc_scalar_head"):
        config = ModelConfig(**{**config.__dict__, "scalar_head": True})
    names = layout.hf_names(config)
    flat = {}
    with SafetensorsReader(directory) as reader:
        _check_names(reader, names, config, source)
        for path, name in sorted(names.items(), key=lambda item: reader.weight_map[item[1]]):
            leaf = path.split("/")[-1]
            expected = layout.hf_shape(leaf, config)
            if reader.shape(name) != expected:
                raise PretrainedError(
                    f"{source}: tensor {name} has shape {reader.shape(name)}, config.json implies {expected}"
                )
            x = reader.read(name)
            flat[path] = place(path, layout.to_rtc(leaf, x, config), dtype, sharding)
            del x
    params = unflatten(flat)
    check_complete(params, config, source)
    return config, family, params
