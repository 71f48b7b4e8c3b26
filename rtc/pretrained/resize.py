"""Fitting a loaded model to its run: more vocabulary rows, a fresh scalar head.

New token rows start at the mean of the existing embeddings (Hewitt 2021, "Initializing New Word
Embeddings for Pretrained Language Models"): the model's distribution barely moves, whereas random
rows can dominate the softmax. The added tokens are the reasoning markers `rtc.tokenizer.hf` appends
when a vocabulary lacks them.
"""

import dataclasses

import jax.numpy as jnp

from rtc.model.config import ModelConfig


def grow_vocab(config: ModelConfig, params: dict, vocab_size: int) -> tuple[ModelConfig, dict]:
    """`(config, params)` with at least `vocab_size` rows (`embedding: [V, E]`, `lm_head: [E, V]`)."""
    extra = vocab_size - config.vocab_size
    if extra <= 0:
        return config, params
    params = dict(params)
    embedding = params["embedding"]  # [V, E]
    mean_row = jnp.mean(embedding, axis=0, keepdims=True)  # [1, E]
    params["embedding"] = jnp.concatenate([embedding, jnp.repeat(mean_row, extra, axis=0)], axis=0)
    if "lm_head" in params:
        head = params["lm_head"]  # [E, V]
        mean_col = jnp.mean(head, axis=1, keepdims=True)
        params["lm_head"] = jnp.concatenate([head, jnp.repeat(mean_col, extra, axis=1)], axis=1)
    return dataclasses.replace(config, vocab_size=vocab_size), params


def add_scalar_head(config: ModelConfig, params: dict) -> tuple[ModelConfig, dict]:
    """`(config, params)` with a zero value head (`value_head: [E]`, `value_bias: []`) if it has none,
    the initialisation `init_params` gives it, so a critic or PRM starts at a score of 0."""
    if "value_head" in params:
        return dataclasses.replace(config, scalar_head=True), params
    dtype = params["final_norm"].dtype
    heads = {"value_head": jnp.zeros((config.embed_dim,), dtype), "value_bias": jnp.zeros((), dtype)}
    return dataclasses.replace(config, scalar_head=True), {**params, **heads}
