"""Hugging Face `config.json` <-> rtc `ModelConfig` for the Llama, Qwen2 and Gemma families.

Reads both the transformers 4 keys (`rope_theta`, `rope_scaling`) and the transformers 5 ones
(`rope_parameters`). Anything the rtc transformer does not compute (sliding windows, projection
biases other than Qwen2's q/k/v, rotary types other than linear and Llama 3's) is an error naming the
field, so a checkpoint never loads into a model that computes something else.
"""

import math

from rtc.errors import PretrainedError
from rtc.model.config import ModelConfig

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "GemmaForCausalLM": "gemma"}
_ARCHITECTURE_OF = {family: name for name, family in ARCHITECTURES.items()}
_TIED_BY_DEFAULT = {"llama": False, "qwen2": False, "gemma": True}
_ACTIVATIONS = {
    "silu": "silu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu_tanh",
}  # Gemma's legacy "gelu"


def family_of(hf: dict, source: str = "config.json") -> str:
    """ "llama", "qwen2" or "gemma" from `architectures` (else `model_type`); others are an error."""
    architectures = hf.get("architectures") or []
    unknown = [a for a in architectures if a not in ARCHITECTURES]
    if unknown:
        raise PretrainedError(
            f"{source}: architectures={unknown} is not supported; rtc loads {sorted(ARCHITECTURES)}"
        )
    if architectures:
        return ARCHITECTURES[architectures[0]]
    model_type = hf.get("model_type")
    if model_type not in _TIED_BY_DEFAULT:
        raise PretrainedError(
            f"{source}: model_type={model_type!r} is not supported; rtc loads {sorted(_TIED_BY_DEFAULT)}"
        )
    return model_type


def _require(hf: dict, key: str, source: str):
    if hf.get(key) is None:
        raise PretrainedError(f"{source} lacks the field {key!r}")
    return hf[key]


def _rope_fields(hf: dict, source: str) -> dict:
    """ModelConfig rotary fields from `rope_parameters` (transformers 5) or `rope_theta`/`rope_scaling`."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    spec = {**scaling, **params}
    kind = spec.get("rope_type", spec.get("type", "default"))
    fields = {"rope_theta": float(theta)}
    if kind in ("default", None):
        return fields
    if kind not in ("linear", "llama3"):
        raise PretrainedError(f"{source}: rope_type={kind!r} is not supported (rtc has linear and llama3)")
    fields.update(rope_scaling=kind, rope_scaling_factor=float(_require(spec, "factor", f"{source} rope")))
    if kind == "llama3":
        fields.update(
            rope_low_freq_factor=float(_require(spec, "low_freq_factor", f"{source} rope")),
            rope_high_freq_factor=float(_require(spec, "high_freq_factor", f"{source} rope")),
            rope_original_max_len=int(_require(spec, "original_max_position_embeddings", f"{source} rope")),
        )
    return fields


def _check_unsupported(hf: dict, family: str, source: str) -> None:
    flags = {"attention_bias": False, "mlp_bias": False, "use_sliding_window": False}
    if family == "qwen2":
        flags.pop("attention_bias")  # Qwen2's q/k/v biases are fixed by the architecture
    for key, supported in flags.items():
        if hf.get(key, supported) != supported:
            raise PretrainedError(f"{source}: {key}={hf[key]!r} is not supported by rtc's transformer")


def model_config_from_hf(hf: dict, source: str = "config.json") -> tuple[ModelConfig, str]:
    """`(ModelConfig, family)` for a `config.json` dict; `source` names the file in errors."""
    family = family_of(hf, source)
    _check_unsupported(hf, family, source)
    embed_dim = int(_require(hf, "hidden_size", source))
    num_heads = int(_require(hf, "num_attention_heads", source))
    act_key = "hidden_activation" if hf.get("hidden_activation") else "hidden_act"
    activation = _ACTIVATIONS.get(hf.get(act_key, "gelu_pytorch_tanh" if family == "gemma" else "silu"))
    expected = "gelu_tanh" if family == "gemma" else "silu"
    if activation != expected:
        raise PretrainedError(
            f"{source}: {act_key}={hf.get(act_key)!r} is not the {family} family's MLP gate"
        )
    fields = dict(
        vocab_size=int(_require(hf, "vocab_size", source)),
        num_layers=int(_require(hf, "num_hidden_layers", source)),
        embed_dim=embed_dim,
        num_heads=num_heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
        head_dim=int(hf.get("head_dim") or embed_dim // num_heads),
        mlp_dim=int(_require(hf, "intermediate_size", source)),
        max_seq_len=int(_require(hf, "max_position_embeddings", source)),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", _TIED_BY_DEFAULT[family])),
        qkv_bias=family == "qwen2",
        activation=activation,
        **_rope_fields(hf, source),
    )
    if family == "gemma":
        fields.update(norm_offset=1.0, embed_scale=math.sqrt(embed_dim))
    try:
        return ModelConfig(**fields), family
    except ValueError as error:
        raise PretrainedError(f"{source}: {error}") from error


def infer_family(config: ModelConfig) -> str:
    """The HF family whose computation `config` is; an error when none is (e.g. a Gemma norm with SiLU)."""
    gemma = (config.norm_offset, config.activation, config.embed_scale) == (
        1.0,
        "gelu_tanh",
        math.sqrt(config.embed_dim),
    )
    plain = (config.norm_offset, config.activation, config.embed_scale) == (0.0, "silu", 1.0)
    if gemma and not config.qkv_bias and not config.rope_scaling:
        return "gemma"
    if plain and config.qkv_bias and not config.rope_scaling:
        return "qwen2"
    if plain and not config.qkv_bias:
        return "llama"
    raise PretrainedError(
        f"no Hugging Face family (llama, qwen2, gemma) computes this model config: {config}"
    )


def hf_config_from_model(config: ModelConfig, family: str, special_ids: dict[str, int] | None = None) -> dict:
    """The `config.json` dict of `config` as a `family` checkpoint (transformers 4 and 5 read it)."""
    rope_scaling = None
    if config.rope_scaling:
        rope_scaling = {"rope_type": config.rope_scaling, "factor": config.rope_scaling_factor}
        if config.rope_scaling == "llama3":
            rope_scaling.update(
                low_freq_factor=config.rope_low_freq_factor,
                high_freq_factor=config.rope_high_freq_factor,
                original_max_position_embeddings=config.rope_original_max_len,
            )
    hf = {
        "architectures": [_ARCHITECTURE_OF[family]],
        "model_type": family,
        "vocab_size": config.vocab_size,
        "hidden_size": config.embed_dim,
        "intermediate_size": config.mlp_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "gelu_pytorch_tanh" if family == "gemma" else "silu",
    }
    if family == "llama":
        hf.update(attention_bias=False, mlp_bias=False)
    if family == "qwen2":
        hf.update(use_sliding_window=False, sliding_window=None)
    for name, value in (special_ids or {}).items():
        hf[f"{name}_token_id"] = value
    return hf
