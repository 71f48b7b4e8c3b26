"""MATH-500 (Lightman et al. 2023; problems from Hendrycks et al. 2021) on the CPU: SFT, GRPO, test-time search.

Command:   python -m rtc.main --config=experiments/configs/math500.py --workdir=/tmp/rtc_math500
           (variants, joined by `_`, as in `gsm8k.py`: `grpo`, `search` (with an ORM), `tiny`)
Data:      `math500/test.jsonl` under the data root ($RTC_DATA_DIR, else the user cache, where it is
           downloaded on first use); `--config.task.source_dir=DIR` reads `DIR/math500/` as it is instead.
Hardware:  2 CPU cores.

MATH-500 publishes only its 500 test problems. `task.num_test` = 100 holds 100 of them out as the test
split, chosen by the sha256 of each question (the same 100 whatever the order of the file), and the other
400 form the train split (`rtc.data.tasks`); `--config.task.num_test=0` evaluates on all 500, the
benchmark (a policy trained elsewhere: `--config.sft.num_steps=0 --config.pretrained=...`).
The model and tokenizer are gsm8k.py's (rtc's tokenizer saw MATH-500's text: 1.9 bytes a token). Rows of
2,200 tokens hold the longest problem with its solution (2,195 tokens); the context of 2,304 holds the
longest prompt (1,185) plus 1,024 new tokens (99% of the reference solutions take at most 1,108). 400
problems are far too few to teach a model this size MATH: the run checks the pipeline on real
competition text (LaTeX answers checked by `rtc.data.answers.math_equal`), it does not aim at a score.
"""

import ml_collections

from experiments.configs import gsm8k


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    c = gsm8k.real_data(arg, "math500", seq_len=2200, context=2304, new_tokens=1024, num_test=100)
    if "tiny" not in arg.split("_"):
        c.sft.update(batch_size=8, num_steps=500, checkpoint_every=100)
        c.eval.update(num_examples=100, batch_size=50)
    return c
