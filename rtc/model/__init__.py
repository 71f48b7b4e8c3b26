"""The network: config presets, the transformer as a pure function, and its KV cache."""
from rtc.model.config import ModelConfig, PRESETS, model_config
from rtc.model.kv_cache import init_cache
from rtc.model.transformer import Model, init_params
