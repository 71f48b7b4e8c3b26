"""Where each rtc parameter lives in a Hugging Face checkpoint, and how its layout differs.

HF (and llama2.c) store `nn.Linear` weights as `[out, in]`; rtc stores `[in, *out]` with heads split
(`w_q: [E, H, D]`, `w_o: [H, D, E]`). Rotary embeddings: rtc rotates interleaved pairs `(2j, 2j+1)`
(RoFormer; Meta's and llama2.c's layout), HF rotates halves `(j, j + D/2)` (`rotate_half`), because
the HF conversion script permutes the q/k output rows of Meta's checkpoints
(transformers `convert_llama_weights_to_hf.py`, `permute`). Loading undoes that permutation on the
q/k rows (and Qwen2's q/k biases); q and k move together, so attention scores are unchanged.
"""

import numpy as np

from rtc.model.config import ModelConfig

_LAYER_TENSORS = {
    "w_q": "self_attn.q_proj.weight",
    "w_k": "self_attn.k_proj.weight",
    "w_v": "self_attn.v_proj.weight",
    "w_o": "self_attn.o_proj.weight",
    "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight",
    "w_down": "mlp.down_proj.weight",
    "attn_norm": "input_layernorm.weight",
    "mlp_norm": "post_attention_layernorm.weight",
}
_BIASES = {"b_q": "self_attn.q_proj.bias", "b_k": "self_attn.k_proj.bias", "b_v": "self_attn.v_proj.bias"}
# An rtc scalar head (critic / PRM) travels in exported checkpoints under these names.
VALUE_HEAD = {"value_head": "value_head.weight", "value_bias": "value_head.bias"}
# Tensors some checkpoints carry that the computation does not read (old HF Llama exports).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def hf_names(config: ModelConfig) -> dict[str, str]:
    """`{rtc path: HF tensor name}` for every parameter, e.g. `"layer_0/w_q"` ->
    `"model.layers.0.self_attn.q_proj.weight"`; paths join nested dict keys with "/"."""
    names = {"embedding": "model.embed_tokens.weight"}
    layer_tensors = {**_LAYER_TENSORS, **(_BIASES if config.qkv_bias else {})}
    for i in range(config.num_layers):
        names.update({f"layer_{i}/{leaf}": f"model.layers.{i}.{hf}" for leaf, hf in layer_tensors.items()})
    names["final_norm"] = "model.norm.weight"
    if not config.tie_embeddings:
        names["lm_head"] = "lm_head.weight"
    if config.scalar_head:
        names.update(VALUE_HEAD)
    return names


def rope_permutation(head_dim: int) -> np.ndarray:
    """i32[D]: rtc's slot `i` holds HF's slot `perm[i]`: `[0, D/2, 1, D/2 + 1, ...]`."""
    half = head_dim // 2
    return np.stack([np.arange(half), np.arange(half) + half], axis=-1).reshape(-1)


def hf_shape(leaf: str, config: ModelConfig) -> tuple[int, ...]:
    """The shape of an rtc leaf's tensor in the HF (`[out, in]`) layout."""
    e, h, k, d, f = config.embed_dim, config.num_heads, config.num_kv_heads, config.head_dim, config.mlp_dim
    return {
        "embedding": (config.vocab_size, e),
        "lm_head": (config.vocab_size, e),
        "w_q": (h * d, e),
        "w_k": (k * d, e),
        "w_v": (k * d, e),
        "w_o": (e, h * d),
        "w_gate": (f, e),
        "w_up": (f, e),
        "w_down": (e, f),
        "b_q": (h * d,),
        "b_k": (k * d,),
        "b_v": (k * d,),
        "value_head": (1, e),
        "value_bias": (1,),
    }.get(leaf, (e,))


def to_rtc(leaf: str, x: np.ndarray, config: ModelConfig, rotate_half: bool = True) -> np.ndarray:
    """An HF-layout tensor (`hf_shape`) in rtc's layout; `rotate_half=False` for llama2.c's
    already-interleaved q/k rows."""
    e, h, k, d = config.embed_dim, config.num_heads, config.num_kv_heads, config.head_dim
    perm = rope_permutation(d) if rotate_half else np.arange(d)
    heads = {"w_q": h, "w_k": k, "w_v": k, "b_q": h, "b_k": k, "b_v": k}
    if leaf in ("w_q", "w_k", "w_v"):
        x = x.T.reshape(e, heads[leaf], d)  # [E, H, D]
        return x if leaf == "w_v" else x[..., perm]
    if leaf in ("b_q", "b_k", "b_v"):
        x = x.reshape(heads[leaf], d)
        return x if leaf == "b_v" else x[..., perm]
    if leaf == "w_o":
        return x.T.reshape(h, d, e)
    if leaf in ("w_gate", "w_up", "w_down", "lm_head"):
        return x.T
    if leaf in ("value_head", "value_bias"):
        return x.reshape(-1) if leaf == "value_head" else x.reshape(())
    return x


def to_hf(leaf: str, x: np.ndarray, config: ModelConfig) -> np.ndarray:
    """The inverse of `to_rtc` (HF's rotate-half layout)."""
    e, d = config.embed_dim, config.head_dim
    inverse = np.argsort(rope_permutation(d))
    if leaf in ("w_q", "w_k"):
        x = x[..., inverse]
    if leaf in ("w_q", "w_k", "w_v"):
        return x.reshape(e, -1).T
    if leaf in ("b_q", "b_k"):
        return x[..., inverse].reshape(-1)
    if leaf == "b_v":
        return x.reshape(-1)
    if leaf == "w_o":
        return x.reshape(-1, e).T
    if leaf in ("w_gate", "w_up", "w_down", "lm_head"):
        return x.T
    if leaf in ("value_head", "value_bias"):
        return x.reshape(hf_shape(leaf, config))
    return x
