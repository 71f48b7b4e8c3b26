"""GSM8K (Cobbe et al. 2021) on the CPU: SFT of a small model, GRPO after it, and test-time search.

Command:   python -m rtc.main --config=experiments/configs/gsm8k.py --workdir=/tmp/rtc_gsm8k
           (variants, joined by `_`: `grpo` GRPO after an SFT cold start of the default's length, which
           `--config.policy_workdir=DIR` of a finished SFT run skips; `search` best-of-N, voting, beam
           search, DVTS and MCTS scored by an outcome reward model (ORM: a PRM needs step labels, which
           GSM8K does not have), trained first with its policy unless `--config.prm_workdir` and
           `--config.policy_workdir` name finished runs; `tiny` shrinks any of them to check a setup in
           seconds)
Data:      `gsm8k/{train,test}.jsonl` under the data root ($RTC_DATA_DIR, else the user cache, where they are
           downloaded on first use); `--config.task.source_dir=DIR` reads `DIR/gsm8k/` as it is instead.
           `task.num_train` / `task.num_test`: at most that many problems of each split (0: all 7,473 / 1,319).
Hardware:  2 CPU cores.
Runtime and result: experiments/README.md, "GSM8K" (measured).

The model is `cpu-small` (4 layers, 256 wide) from random weights with rtc's own tokenizer, whose
vocabulary was trained on GSM8K's train split among other texts: 2.4 bytes of GSM8K per token and 0.14% of
tokens byte-fallback pieces, against 1.5 bytes and 2.5% with llama2.c's stories260K tokenizer (whose model
has 260K parameters and 512 positions, pretrained on children's stories, not on arithmetic). Rows of 704
tokens hold the longest train example (700 tokens); the context of 768 holds the longest test prompt (283)
plus `eval.max_new_tokens` = 320 (99% of the reference solutions take at most 298). A model this size is
not expected to solve many GSM8K problems: the run is a scale model of the real-data pipeline.
"""

import ml_collections

from experiments.configs import common, grpo, search


def lengths(c: ml_collections.ConfigDict, seq_len: int, context: int, new_tokens: int | None) -> None:
    """Rows of `seq_len` tokens, a context of `context`, and `new_tokens` per sampled solution (None: keep
    the config's), in every block the config has."""
    c.model.max_seq_len = context
    c.sft.seq_len = seq_len
    if "rm" in c:
        c.rm.seq_len = context  # [bos] + a train prompt + a sampled solution
    if new_tokens is not None:
        c.eval.max_new_tokens = new_tokens
        if "rl" in c:
            c.rl.max_new_tokens = new_tokens


def search_blocks(c: ml_collections.ConfigDict, tiny: bool) -> None:
    """An ORM (labels from the verifier) instead of a PRM, and steps of GSM8K's size (a line of ~25 tokens)."""
    c.search.verifier_kind = "orm"
    c.rm_data.labels = "verifier"
    if not tiny:
        c.search.update(num_problems=100, budgets=(4, 8, 16), large_n=16, step_tokens=32, depth=10)


def real_data(arg: str, name: str, seq_len: int, context: int, new_tokens: int, num_test: int = 0):
    """The config of `arg` (variants `grpo`, `search`, `tiny`) for the file task `name`."""
    parts = common.variants(arg, {"tiny", "grpo", "search"}, name)
    if {"grpo", "search"} <= parts:
        raise ValueError(f"{name} variants grpo and search are separate runs; choose one")
    tiny = "tiny" in parts
    if "grpo" in parts:
        c = grpo.get_config("tiny" if tiny else "")
        c.rl.level_weights = ""  # the problems have no difficulty levels
        if not tiny:
            c.rl.update(prompts_per_step=8, group_size=8)
    elif "search" in parts:
        c = search.get_config("tiny" if tiny else "")
        search_blocks(c, tiny)
    else:
        c = common.base("sft")
        c.sft = common.sft()
        if tiny:
            common.shrink(c)
    c.task = common.task(name, num_test=num_test)
    if tiny:
        c.task.update(num_train=64, num_test=16)
    else:
        c.model.preset = "cpu-small"
        c.sft.update(batch_size=16, num_steps=1000, learning_rate=1e-3, warmup_steps=100)
        c.sft.update(log_every=50, checkpoint_every=250)
        c.eval.update(num_examples=256, batch_size=64)
    lengths(c, seq_len, context, None if tiny else new_tokens)
    return c


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return real_data(arg, "gsm8k", seq_len=704, context=768, new_tokens=320)
