"""Model hyper-parameters and named size presets.

A config names a size (`model.preset = "cpu-small"`), not twelve numbers; any field can still be
overridden (`--config.model.num_layers=2`).
"""

import dataclasses
from rtc.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer in the Llama family (RMSNorm, RoPE, GQA, SwiGLU)."""

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

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary positions")

    @property
    def num_params(self) -> int:
        """Parameter count (embeddings included once when tied)."""
        e, h, k, d, f = self.embed_dim, self.num_heads, self.num_kv_heads, self.head_dim, self.mlp_dim
        per_layer = e * (h + 2 * k) * d + h * d * e + 3 * e * f + 2 * e
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
    # The CPU quickstart and benchmarks (the design brief's demo shape: 4 layers, 256 wide, 4 heads).
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
