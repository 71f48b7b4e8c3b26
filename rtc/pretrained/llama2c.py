"""llama2.c legacy (version 0) `.bin` checkpoints (Karpathy, llama2.c `export.py legacy_export`, `run.c`).

Layout, little-endian: a header of seven int32 `dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len` (a negative vocab_size: the classifier is not tied and `wcls` ends the file),
then float32 tensors, row-major, each stacked over layers, `nn.Linear` weights as `[out, in]`:
token embedding, attention norms, wq, wk, wv, wo, ffn norms, w1 (gate), w2 (down), w3 (up), final
norm, the rotary cos and sin tables (unused), optional wcls. q/k rows are in Meta's interleaved rotary
order, which is rtc's. The file is memory-mapped, so one layer's tensor is read at a time.
"""

from pathlib import Path

import numpy as np

from rtc.errors import PretrainedError
from rtc.model.config import ModelConfig
from rtc.pretrained.layout import to_rtc
from rtc.pretrained.params import ShardingSpec, check_complete, place, unflatten

HEADER_BYTES = 7 * 4
_VERSIONED_MAGIC = 0x616B3432  # "ak42": llama2.c's versioned exports (export.py --version 1, 2)
_HEADER_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def read_header(path: str | Path) -> dict[str, int]:
    """The seven header fields; a versioned export or impossible values are an error naming them."""
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise PretrainedError(f"{path} is truncated: {len(raw)} bytes, shorter than the 28-byte header")
    if int(np.frombuffer(raw[:4], "<u4")[0]) == _VERSIONED_MAGIC:
        raise PretrainedError(
            f"{path} is a versioned llama2.c export (magic ak42); rtc reads the legacy format "
            f"(llama2.c export.py --version 0)"
        )
    header = dict(zip(_HEADER_FIELDS, np.frombuffer(raw, "<i4").tolist()))
    for name, value in header.items():
        if value == 0 or (value < 0 and name != "vocab_size"):
            raise PretrainedError(f"{path}: header field {name}={value} must be positive")
    if header["dim"] % header["n_heads"] or header["n_heads"] % header["n_kv_heads"]:
        raise PretrainedError(
            f"{path}: header dim={header['dim']}, n_heads={header['n_heads']}, "
            f"n_kv_heads={header['n_kv_heads']} do not divide into heads"
        )
    return header


def model_config(header: dict[str, int]) -> ModelConfig:
    """rtc's config for a llama2.c model: rotary base 10000, RMSNorm eps 1e-5 (run.c)."""
    return ModelConfig(
        vocab_size=abs(header["vocab_size"]),
        num_layers=header["n_layers"],
        embed_dim=header["dim"],
        num_heads=header["n_heads"],
        num_kv_heads=header["n_kv_heads"],
        head_dim=header["dim"] // header["n_heads"],
        mlp_dim=header["hidden_dim"],
        max_seq_len=header["seq_len"],
        rope_theta=10000.0,
        norm_eps=1e-5,
        tie_embeddings=header["vocab_size"] > 0,
    )


def tensor_table(header: dict[str, int]) -> list[tuple[str, str | None, tuple[int, ...]]]:
    """`(llama2.c name, rtc leaf or None if unused, shape)` in file order; layered tensors lead with L."""
    c = model_config(header)
    e, f, n_layers, v = c.embed_dim, c.mlp_dim, c.num_layers, c.vocab_size
    kv, half = c.num_kv_heads * c.head_dim, c.head_dim // 2
    table = [
        ("token_embedding_table", "embedding", (v, e)),
        ("rms_att_weight", "attn_norm", (n_layers, e)),
        ("wq", "w_q", (n_layers, e, e)),
        ("wk", "w_k", (n_layers, kv, e)),
        ("wv", "w_v", (n_layers, kv, e)),
        ("wo", "w_o", (n_layers, e, e)),
        ("rms_ffn_weight", "mlp_norm", (n_layers, e)),
        ("w1", "w_gate", (n_layers, f, e)),
        ("w2", "w_down", (n_layers, e, f)),
        ("w3", "w_up", (n_layers, f, e)),
        ("rms_final_weight", "final_norm", (e,)),
        ("freq_cis_real", None, (c.max_seq_len, half)),
        ("freq_cis_imag", None, (c.max_seq_len, half)),
    ]
    if not c.tie_embeddings:
        table.append(("wcls", "lm_head", (v, e)))
    return table


def load(path: str | Path, dtype=np.float32, sharding: ShardingSpec = None) -> tuple[ModelConfig, dict]:
    """`(config, params)` of a legacy llama2.c checkpoint, tensor by tensor onto `sharding`.

    A file shorter than its header promises is an error naming the first tensor it cuts; a longer
    one is an error too (not a legacy v0 file).
    """
    header = read_header(path)
    config = model_config(header)
    table = tensor_table(header)
    size = Path(path).stat().st_size
    offset, extents = HEADER_BYTES, []
    for name, leaf, shape in table:
        end = offset + 4 * int(np.prod(shape))
        if end > size:
            raise PretrainedError(
                f"{path} is truncated: tensor {name} {shape} needs bytes {offset}..{end}, the file has {size}"
            )
        extents.append((offset, name, leaf, shape))
        offset = end
    if offset != size:
        raise PretrainedError(
            f"{path} has {size - offset} bytes after its last tensor: not a legacy llama2.c checkpoint "
            f"with header {header}"
        )
    flat = {}
    for start, _, leaf, shape in extents:
        if leaf is None:
            continue
        data = np.memmap(path, dtype="<f4", mode="r", offset=start, shape=shape)
        if len(shape) == 3 or leaf in ("attn_norm", "mlp_norm"):
            for i in range(config.num_layers):
                rtc = to_rtc(leaf, data[i], config, rotate_half=False)
                flat[f"layer_{i}/{leaf}"] = place(f"layer_{i}/{leaf}", rtc, dtype, sharding)
        else:
            flat[leaf] = place(leaf, to_rtc(leaf, data, config), dtype, sharding)
        del data
    params = unflatten(flat)
    check_complete(params, config, str(path))
    return config, params
