"""Serve a trained model behind an OpenAI-compatible API (`POST /v1/chat/completions`).

Command:   python -m rtc.main --config=experiments/configs/serve.py --workdir=RUN [--config.port=8000]
Hardware:  any; the CPU models answer in well under a second each.

RUN is any rtc run's workdir (its latest checkpoint) or, with `--config.model=PATH`, a pretrained
checkpoint folder or hub id (what `rtc.load` takes). Fields:
- `model`, `step`: what to serve (default: the workdir, its latest checkpoint); `model_name`: the id
  clients send as `model` (default: the folder's name; "default" is always accepted too);
- `host`, `port`: where to listen (127.0.0.1: this machine only);
- `max_batch`: the most rows (samples) decoded together, a power of two; `max_queue`: requests waiting
  beyond it get a 429; `batch_wait_ms`: a batch starts once no request has arrived for this long (at
  most 4x this; at once when it is full), so concurrent clients share one batch;
- `request_timeout_s`: a request still queued after this long gets a 504;
- `price_input_per_million`, `price_output_per_million`: US dollars per million prompt and
  completion tokens (reasoning included) for the `cost` estimate of each response;
- `job_ttl_s`: how long a finished background job's result is kept;
- `thinking_visibility`: visible (streamed as `reasoning_content`), hidden (only counted) or summary
  (the last `summary_steps` thinking steps); a request can pick its own with `reasoning_visibility`;
- `router`: `enabled` (the default for requests that do not say `router`), `predictor`
  (`prompt_length`; `learned`: the served policy's prompt states through the ridge head in `head`, a
  `difficulty_head.json` that `experiments/router.py` fitted for this policy; or `module:function`
  returning a predictor), `threshold` (difficulty below it is easy), `fast_path` (`low` effort or
  `no_thinking`), `length_scale` (prompt_length's tokens for difficulty 1);
- `log_level`: uvicorn's.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"the serve config takes no variant, got {arg!r}")
    c = ml_collections.ConfigDict()
    c.mode = "serve"
    c.model = placeholder(str)
    c.step = placeholder(int)
    c.model_name = placeholder(str)
    c.host = "127.0.0.1"
    c.port = 8000
    c.max_batch = 32
    c.max_queue = 256
    c.batch_wait_ms = 50.0
    c.request_timeout_s = 600.0
    c.price_input_per_million = 1.0
    c.price_output_per_million = 4.0
    c.job_ttl_s = 3600.0
    c.thinking_visibility = "visible"
    c.summary_steps = 2
    c.router = ml_collections.ConfigDict(
        {
            "enabled": False,
            "predictor": "prompt_length",
            "threshold": 0.5,
            "fast_path": "low",
            "length_scale": 32,
            "head": placeholder(str),
        }
    )
    c.log_level = "warning"
    return c
