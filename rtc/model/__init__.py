"""The network: config presets, the transformer as a pure function, and its KV cache."""

from rtc.model.config import PRESETS, ModelConfig, model_config
from rtc.model.kv_cache import init_cache
from rtc.model.transformer import Model, init_params

__all__ = ["PRESETS", "Model", "ModelConfig", "init_cache", "init_params", "model_config"]
