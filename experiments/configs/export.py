"""Export a finished run as a Hugging Face folder (config.json, safetensors, tokenizer).

Command:   python -m rtc.main --config=experiments/configs/export.py --workdir=RUN [--config.out_dir=DIR]
Hardware:  any; seconds for the CPU models.

RUN is any rtc run's workdir (SFT, GRPO, PPO: the policy; ORM, PRM: the reward model, whose scalar head
is written as `value_head.*`, which transformers ignores). The folder loads with transformers'
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`, and with
`rtc.load(DIR)`. Fields:
- `out_dir`: where to write (default RUN/hf);
- `dtype`: float32, float16 or bfloat16;
- `step`: the checkpoint to export (default the latest);
- `max_shard_bytes`: the largest safetensors file.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"the export config takes no variant, got {arg!r}")
    c = ml_collections.ConfigDict()
    c.mode = "export"
    c.out_dir = placeholder(str)
    c.dtype = "float32"
    c.step = placeholder(int)
    c.max_shard_bytes = 2 << 30
    return c
