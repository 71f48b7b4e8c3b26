"""SFT from a pretrained checkpoint: llama2.c's stories260K (TinyStories) fine-tuned on multi-step arithmetic.

Command:   python -m rtc.main --config=experiments/configs/pretrained_sft.py --workdir=/tmp/rtc_pretrained_sft
           (any checkpoint: `--config.pretrained=/path/to/hf_model_dir` or a llama2.c `.bin`)
Hardware:  2 CPU cores.
Runtime:   5.4 min wall, measured 2026-11-29 with the 2 cores shared with other jobs (~6k row tokens/s;
           the unshared rate is ~12k): 600 SFT steps of the 260K-parameter model, then evaluation.
Expected:  held-out accuracy by difficulty, greedy / sampled (T=0.7), 512 problems: level 1 23.3% / 26.2%,
           level 2 5.8% / 4.9%, level 3 1.0% / 3.9%, level 4 1.0% / 0.0%, level 5 0.0% / 0.0%;
           all 6.2% / 7.0%. Final train loss 0.43, token accuracy 0.85. (The quickstart's 3M-parameter
           model trained from scratch reaches 38.7%: stories260K is 64 wide, a loading demo, not a
           strong starting point.)

The model config, tokenizer and initial weights come from `pretrained` (`rtc.pretrained.from_config`):
`model.preset` is ignored and only `model.dtype`, `model.max_seq_len`, `model.scalar_head` may be set.
stories260K's sentencepiece vocabulary (tok512) lacks the reasoning markers, so `<think>`, `</think>`,
`<answer>` and `</answer>` are added as tokens 512-515 with embeddings at the mean row. A relative
`pretrained` path is looked up under the data root ($RTC_DATA_DIR, else shared/data).
`:tiny` shrinks the run (a few steps, few eval problems) for the end-to-end test.
"""

import ml_collections

from experiments.configs import quickstart


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = quickstart.get_config("tiny" if arg == "tiny" else "")
    c.pretrained = "stories260K/stories260K.bin"
    c.pretrained_tokenizer = ""  # "": tok512.model beside the .bin (a HF directory: its own tokenizer)
    c.pretrained_template = ""  # "": the family's (plain for a base model); see rtc/tokenizer/templates.py
    c.model.preset = "pretrained"  # informational: the checkpoint defines the architecture
    c.train.update(seq_len=96, learning_rate=1e-3, warmup_steps=50)
    if arg == "tiny":
        c.train.update(num_steps=4, warmup_steps=1)
    elif arg:
        raise ValueError(f"unknown pretrained_sft variant {arg!r}; known: 'tiny'")
    return c
