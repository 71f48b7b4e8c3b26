"""Model hyper-parameters and named size presets.

A config names a size (`model.preset = "cpu-small"`), not twelve numbers; any field can still be
overridden (`--config.model.num_layers=2`).
"""

import dataclasses
from rtc.errors import ConfigError

ACTIVATIONS = ("silu", "gelu_tanh")
ROPE_SCALINGS = ("", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer in the Llama family (RMSNorm, RoPE, GQA, SwiGLU).

    The fields after `dtype` cover the pretrained families (`rtc.pretrained`); their defaults are the
    Llama architecture. Qwen2 adds q/k/v biases; Gemma scales embeddings by sqrt(embed_dim), uses
    `(1 + w)` norm scales and a GELU-tanh gated MLP; Llama 3.x stretches long rotary wavelengths.
    """

    vocab_size: int = 1024
    num_layers: int = 2
    embed_dim: int = 64
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    mlp_dim: int = 172
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    scalar_head: bool = False
    dtype: str = "float32"
    qkv_bias: bool = False  # Qwen2: biases on the q, k and v projections
    norm_offset: float = 0.0  # Gemma: RMSNorm multiplies by (norm_offset + w)
    embed_scale: float = 1.0  # Gemma: sqrt(embed_dim), applied to the looked-up embeddings
    activation: str = "silu"  # gate of the gated MLP: "silu" (SwiGLU) or "gelu_tanh" (GeGLU, Gemma)
    rope_scaling: str = ""  # "": none; "linear" (position interpolation); "llama3"
    rope_scaling_factor: float = 1.0
    rope_low_freq_factor: float = 1.0  # llama3 scaling only
    rope_high_freq_factor: float = 4.0  # llama3 scaling only
    rope_original_max_len: int = 8192  # llama3 scaling: the context the model was pretrained at
    # Decoding only: 0 keeps one dense KV cache row per sequence; > 0 pages the cache in pages of this many
    # slots, so a prompt's samples and a search's branches share their prefix (`rtc.model.paged_cache`).
    kv_page_size: int = 0

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary positions")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation={self.activation!r} is not one of {ACTIVATIONS}")
        if self.kv_page_size < 0:
            raise ConfigError(f"kv_page_size must be >= 0 (0: a dense cache), got {self.kv_page_size}")
        if self.rope_scaling not in ROPE_SCALINGS:
            raise ConfigError(f"rope_scaling={self.rope_scaling!r} is not one of {ROPE_SCALINGS}")

    @property
    def num_params(self) -> int:
        """Parameter count (embeddings included once when tied)."""
        e, h, k, d, f = self.embed_dim, self.num_heads, self.num_kv_heads, self.head_dim, self.mlp_dim
        per_layer = e * (h + 2 * k) * d + h * d * e + 3 * e * f + 2 * e
        per_layer += (h + 2 * k) * d if self.qkv_bias else 0
        head = 0 if self.tie_embeddings else e * self.vocab_size
        return self.vocab_size * e + self.num_layers * per_layer + e + head + (e if self.scalar_head else 0)

    def flops_per_token(self, context: int) -> float:
        """Forward FLOPs per token: 2 per matmul weight plus attention over `context` keys (PaLM, App. B)."""
        # The embedding lookup is not a matmul; the output projection is, tied or not.
        matmul = self.num_params - (0 if self.tie_embeddings else self.vocab_size * self.embed_dim)
        attention = 2 * 2 * self.num_layers * self.num_heads * self.head_dim * context
        return 2.0 * matmul + attention


PRESETS = {
    # Unit tests: compiles in seconds.
    "test-tiny": dict(
        num_layers=2, embed_dim=64, num_heads=4, num_kv_heads=2, head_dim=16, mlp_dim=172, max_seq_len=256
    ),
    # Unit tests of a reward model whose shape and context differ from its policy's (test-tiny).
    "test-tiny-wide": dict(
        num_layers=3, embed_dim=96, num_heads=6, num_kv_heads=3, head_dim=16, mlp_dim=256, max_seq_len=192
    ),
    # The CPU quickstart and benchmarks (the benchmarks' demo shape: 4 layers, 256 wide, 4 heads).
    "cpu-small": dict(
        num_layers=4, embed_dim=256, num_heads=4, num_kv_heads=4, head_dim=64, mlp_dim=768, max_seq_len=512
    ),
    "cpu-medium": dict(
        num_layers=6, embed_dim=384, num_heads=6, num_kv_heads=2, head_dim=64, mlp_dim=1024, max_seq_len=1024
    ),
    # TPU sizes.
    "125m": dict(
        num_layers=12,
        embed_dim=768,
        num_heads=12,
        num_kv_heads=4,
        head_dim=64,
        mlp_dim=2816,
        max_seq_len=2048,
        vocab_size=32000,
    ),
    "1b": dict(
        num_layers=16,
        embed_dim=2048,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        mlp_dim=8192,
        max_seq_len=4096,
        vocab_size=32000,
    ),
}


def model_config(preset: str, **overrides) -> ModelConfig:
    """The preset named `preset` with `overrides` applied; unknown names or fields raise."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; known: {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"unknown model config keys {sorted(unknown)}; known: {sorted(fields)}")
    return ModelConfig(**{**PRESETS[preset], **overrides})
