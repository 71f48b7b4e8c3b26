"""SFT from a pretrained checkpoint: llama2.c's stories260K (TinyStories) fine-tuned on multi-step arithmetic.

Command:   python -m rtc.main --config=experiments/configs/pretrained_sft.py --workdir=/tmp/rtc_pretrained_sft
           (`--config.pretrained=` any checkpoint: a Hugging Face model directory or a llama2.c `.bin`; a
           relative path is looked up under the data root, $RTC_DATA_DIR, then in the repository's
           `tests/data`, which ships the default `stories260K/stories260K.bin`)
Hardware:  2 CPU cores.
Runtime and result: experiments/README.md, "Pretrained start" (measured).

The model config, tokenizer and initial weights come from `pretrained` (`rtc.pretrained.from_config`):
`model.preset` is ignored and only `model.dtype`, `model.max_seq_len`, `model.scalar_head` may be set.
A vocabulary without `<think>`, `</think>`, `<answer>`, `</answer>` gets them as new tokens, with
embeddings at the mean row. `:tiny` shrinks the run to a few steps.
"""

from experiments.configs import common


def get_config(arg: str = ""):
    parts = common.variants(arg, {"tiny"}, "pretrained_sft")
    c = common.base("sft")
    c.pretrained = "stories260K/stories260K.bin"
    c.sft = common.sft()
    c.sft.update(seq_len=96, learning_rate=1e-3, warmup_steps=50)
    if "tiny" in parts:
        common.shrink(c)
        c.sft.update(seq_len=96)
    return c
