"""Pretrained checkpoints: llama2.c and Hugging Face safetensors in, safetensors out.

    tokenizer, model, params = load_pretrained("path/to/Qwen2.5-0.5B")   # or a llama2.c .bin
    export("out_dir", model.config, params, tokenizer)                  # HF safetensors + config.json

Training and search loops call `from_config(config)` (see its docstring for the contract).
"""

from rtc.pretrained.checkpoint import from_config, load_model, load_pretrained
from rtc.pretrained.export import export

__all__ = ["export", "from_config", "load_model", "load_pretrained"]
