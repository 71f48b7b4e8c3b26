"""Bytes per chip from the shardings, checked by hand on a model small enough to count."""

import pytest

from rtc.errors import ConfigError
from rtc.model.config import ModelConfig, model_config
from rtc.analysis import memory
from rtc.parallel import config_mesh

# V=16, E=8, H=2, Hkv=1, D=4, F=16, one layer, tied embeddings: 728 params (ModelConfig.num_params).
TINY = ModelConfig(
    vocab_size=16, num_layers=1, embed_dim=8, num_heads=2, num_kv_heads=1, head_dim=4, mlp_dim=16
)


def test_tiny_model_under_fsdp_by_hand():
    mesh = config_mesh.abstract_mesh({"fsdp": 4}, 4)
    got = memory.memory_per_chip(TINY, mesh, "fsdp", batch_size=8, seq_len=4)
    # Shards under fsdp=4 (largest dimension divisible by 4), in floats:
    #   embedding [16, 8] -> [4, 8] = 32       w_q [8, 2, 4] -> [2, 2, 4] = 16
    #   w_k, w_v [8, 1, 4] -> [2, 1, 4] = 8 + 8 w_o [2, 4, 8] -> [2, 4, 2] = 16 (8 > 4)
    #   w_gate, w_up [8, 16] -> [8, 4] = 32 + 32 w_down [16, 8] -> [4, 8] = 32
    #   attn_norm, mlp_norm, final_norm [8]: replicated = 24
    # = 200 floats = 800 bytes (704 matrix params / 4 + 24).
    assert got.params == 800
    assert got.grads == 800
    # AdamW: mu and nu like the params (2 x 800) + Adam's count and the schedule's count (int32).
    assert got.optimizer == 2 * 800 + 4 + 4
    # Activations, 8 rows / (data 1 x fsdp 4) = 2 rows x 4 tokens = 8 tokens, float32 (a = 4):
    #   per layer: 4 * (4*8 + 2*(2+1)*4 + 3*16) + 2 heads * 4 keys * 4 bytes = 416 + 32 = 448
    #   head:      4 * 8 + 2 * 4 * 16 = 160
    # = 8 * (448 + 160) = 4864 bytes.
    assert got.activations == 4864
    assert got.total == 800 + 800 + 1608 + 4864


def test_activation_estimate_by_hand():
    bf16 = ModelConfig(**{**TINY.__dict__, "dtype": "bfloat16"})
    # a = 2: per layer 2 * 104 + 2 * 4 * (4 + 2) = 256 (the f32 probabilities and their bf16 cast);
    # head 2 * 8 + 128 = 144; 8 tokens * 400.
    assert memory.activation_bytes(bf16, rows=2, seq_len=4) == 3200
    # tensor = 2 splits H (2 -> 1), F (16 -> 8), V (16 -> 8) but not Hkv = 1:
    # per layer 4 * (32 + 2*(1+1)*4 + 3*8) + 1 * 4 * 4 = 304; head 32 + 8 * 8 = 96; 16 tokens * 400.
    assert memory.activation_bytes(TINY, rows=4, seq_len=4, tensor=2) == 6400


def test_params_per_chip_match_the_parameter_count():
    c = model_config("125m")
    dp = memory.memory_per_chip(c, config_mesh.abstract_mesh({"data": -1}, 8), "dp", 8, 16)
    fsdp = memory.memory_per_chip(c, config_mesh.abstract_mesh({"fsdp": 8}, 8), "fsdp", 8, 16)
    assert dp.params == 4 * c.num_params
    vectors = 4 * (2 * c.num_layers + 1) * c.embed_dim  # norms stay whole on every chip
    assert fsdp.params == (dp.params - vectors) // 8 + vectors
    assert fsdp.optimizer == 2 * fsdp.params + 8


def test_compiled_activations_are_measured():
    measured = memory.compiled_activation_bytes(TINY, rows=2, seq_len=4)
    assert 0 < measured < 1 << 20
    with pytest.raises(ConfigError, match="tensor=1"):
        memory.memory_per_chip(TINY, config_mesh.abstract_mesh({"tensor": 2}, 2), "tp", 2, 4, compiled=True)


def test_cli_prints_a_table(capsys):
    argv = ["--preset", "1b", "--mesh", "data=-1,fsdp=8", "--devices", "16", "--batch", "64", "--seq", "1024"]
    assert memory.main(argv) == 0
    out = capsys.readouterr().out
    assert "mesh data=2,fsdp=8,tensor=1 on 16 chips, rules fsdp, batch 64 (4 per chip)" in out
    for row in ("params (f32)", "grads (f32)", "AdamW state", "activations (est.)", "total", "v5e (16 GiB)"):
        assert row in out
    assert memory.main(["--mesh", "data=3", "--devices", "8"]) == 2
    assert "has 3 devices but 8 are used" in capsys.readouterr().err


def test_kv_cache_bytes_by_hand():
    c = model_config("test-tiny")  # 2 layers, 2 kv heads of 16: 2 * 2 * 16 * 4 = 256 bytes a slot and layer
    assert memory.kv_bytes(c, rows=4, prompt_len=8, new_tokens=8) == 4 * 16 * 2 * 256
    # paged, pages of 4: the prompt's 2 pages once, each row 8 / 4 + 1 pages; plus one layer's gathered rows
    assert memory.kv_bytes(c, 4, 8, 8, page_size=4) == (2 + 4 * 3) * 4 * 2 * 256 + 4 * 16 * 256
    budget = memory.kv_bytes(c, 10, 8, 8, page_size=4)
    assert memory.largest_rows(c, budget, 8, 8, page_size=4) == 10
    assert memory.largest_rows(c, budget - 1, 8, 8, page_size=4) == 9


def test_decode_table_reports_the_largest_branch_count(capsys):
    assert memory.main(["--preset", "1b", "--branches", "16", "--prompt", "2048", "--page-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "largest N on v5e (16 GiB)" in out and "KV cache dense / paged at N=16" in out
