"""GRPO training throughput: rtc against TRL's `GRPOTrainer` on the same model, prompts, group and lengths.

Run in the peers venv (bench/README.md; about 6-10 min on 2 CPU cores at load average 5-10, defaults):
    python -m venv bench/.peers && bench/.peers/bin/pip install -e . -r bench/requirements-peers.txt
    bench/.peers/bin/python bench/trl_grpo.py [--steps 3] [--prompts 16]
Prints one table (s/step, prompts/s, generated tokens/s; rtc's fused step, rtc's host-reward path and
TRL, and TRL's time over each rtc path's) and saves it to `bench/results/grpo_vs_trl.md`. Each side
runs one untimed step first (rtc's compile, TRL's first-step set-up); then the sides take turns, one
rtc step of each kind after each TRL step, so load from other jobs falls on both alike. TRL runs
once per torch thread count (`--torch-threads`, default 2 and 1, as bench/throughput.py does for
`generate`): torch's 2 OpenMP threads stall when another process holds a core.

The two sides, setting by setting (rtc: `bench/rl_throughput.setup`; TRL: `GRPOConfig` and trainer):
- model: `cpu-small` (4L x 256), vocab 1024, f32 = a `LlamaForCausalLM` of that shape, `bf16=False`,
  `use_cpu=True`, random init on both.
- prompts: the same P `rtc.data.arithmetic` train prompts every step = those P texts in order,
  `shuffle_dataset=False`; an adapter over rtc's tokenizer gives TRL the same ids (checked).
- group size G: `RLConfig.group_size` = `num_generations`.
- completions per step: P x G rows = `per_device_train_batch_size` = `generation_batch_size` = P x G,
  `gradient_accumulation_steps=1`.
- updates per batch: `RLConfig.mu = 1` = `num_iterations=1`.
- max new tokens: `RLConfig.max_new_tokens` = `max_completion_length`.
- sampling: temperature 1, no top-k/p, stop at `</answer>` or eos = temperature 1, `top_k=0`,
  `top_p=1`, the model's `generation_config.eos_token_id` set to the same two ids.
- reward: rtc's host `correct` + 0.1 `format` (`rtc.rewards.rule`) = the same two functions,
  `reward_weights=[1.0, 0.1]`.
- advantage: group mean and std (ddof 1), eps 1e-4 = `scale_rewards="group"`.
- loss: clip 0.2, `sequence_mean`, `kl_coef=0` = `epsilon=0.2`, `loss_type="grpo"`, `beta=0.0` (no
  reference model on either side).
- optimizer: AdamW lr 1e-5, b2 0.95, no decay, clip 1.0 = `learning_rate=1e-5`, `adam_beta2=0.95`,
  `weight_decay=0`, `max_grad_norm=1.0`, constant schedule.
At mu = 1 both sides skip the old-policy forward (its ratio is 1 by construction). One difference in
work remains: TRL projects to the vocabulary only at completion positions.
(rtc also masks zero-variance groups out of the loss, DAPO's dynamic sampling; that costs no work.)
With random weights nearly every completion runs to the cap, so both sides generate about the same
tokens; each side's count is its own (TRL's `completions/mean_length`).
"""

import argparse
import os
import time
from pathlib import Path

import jax
import numpy as np

try:
    from bench import rl_throughput, throughput
except ImportError:  # run as `python bench/trl_grpo.py`: bench/ itself is on sys.path
    import rl_throughput
    import throughput

from rtc.data.format import prompt_text, prompt_tokens
from rtc.data.tasks import get_task
from rtc.rewards import rule

RESULTS = Path(__file__).parent / "results" / "grpo_vs_trl.md"
WARMUP = 1  # untimed steps on each side; rl_throughput's timers compile in exactly one


def rtc_steppers(s: dict) -> dict:
    """`{label: call}`, each call one warmed-up rtc step returning `(seconds, generated tokens)`."""
    fused, split = rl_throughput.fused_stepper(s), rl_throughput.split_stepper(s)

    def timed_fused():
        start = time.perf_counter()
        tokens = fused()
        return time.perf_counter() - start, tokens

    def timed_split():
        seconds, tokens = split()
        return float(seconds.sum()), tokens

    return {"rtc fused step": timed_fused, "rtc rollout + host rewards + learn": timed_split}


def hf_tokenizer(tokenizer):
    """rtc's tokenizer as a transformers tokenizer: `[bos] + encode(text)` in, `decode(ids)` out."""
    import transformers

    processor = tokenizer._processor

    class RtcTokenizer(transformers.PreTrainedTokenizer):
        def __init__(self):
            super().__init__(
                bos_token=processor.id_to_piece(tokenizer.bos_id),
                eos_token=processor.id_to_piece(tokenizer.eos_id),
                pad_token=processor.id_to_piece(tokenizer.pad_id),
                special_tokens_pattern="bos",
                clean_up_tokenization_spaces=False,
            )

        @property
        def vocab_size(self):
            return tokenizer.vocab_size

        def get_vocab(self):
            return {processor.id_to_piece(i): i for i in range(tokenizer.vocab_size)}

        def _tokenize(self, text, **kwargs):
            return [processor.id_to_piece(i) for i in tokenizer.encode(text)]

        def _convert_token_to_id(self, token):
            return processor.piece_to_id(token)

        def _convert_id_to_token(self, index):
            return processor.id_to_piece(index)

        def _decode(self, token_ids, skip_special_tokens=False, **kwargs):
            return tokenizer.decode([token_ids] if isinstance(token_ids, int) else token_ids)

    return RtcTokenizer()


def llama(config):
    """A random-init `LlamaForCausalLM` of `config`'s shape, in training mode (`throughput.peer_model`)."""
    return throughput.peer_model(config).train()


def reward_fns(s: dict) -> list:
    """rtc's host reward functions as TRL's `fn(prompts, completions, completion_ids, index) -> [float]`."""
    fns = rule.make_reward_fns(get_task("arithmetic"), s["cfg"].max_new_tokens, 0)
    records = s["records"]

    def wrap(name):
        def reward(prompts, completions, completion_ids, index, **kwargs):
            return [
                fns[name](text, records[i], len(ids))
                for text, ids, i in zip(completions, completion_ids, index)
            ]

        reward.__name__ = name
        return reward

    return [wrap(name) for name, _ in rl_throughput.WEIGHTS]


def run_trl(s: dict, steps: int, results: dict, rtc: dict, threads: int):
    """Trains TRL's `GRPOTrainer` on `threads` torch threads for `WARMUP + steps` steps; after each timed
    one, runs each rtc step in `rtc` once. Appends `(seconds, generated tokens)` per step to
    `results[label]`.

    A TRL step is timed from `on_step_begin` to `on_step_end`: generation, rewards, loss, backward and
    the optimizer step, not the dataloader or the logging between steps."""
    import datasets
    import tempfile
    import torch
    import transformers
    import trl

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    label = trl_label(threads)
    tokenizer, cfg, records = s["tokenizer"], s["cfg"], s["records"]
    processing = hf_tokenizer(tokenizer)
    texts = [prompt_text(r) for r in records]
    if processing(text=texts)["input_ids"] != [prompt_tokens(tokenizer, r) for r in records]:
        raise RuntimeError("the TRL tokenizer adapter does not reproduce rtc's prompt tokens")
    model = llama(s["model"].config)
    model.generation_config.eos_token_id = [tokenizer.answer_end_id, tokenizer.eos_id]
    total = WARMUP + steps
    dataset = datasets.Dataset.from_dict({"prompt": texts * total, "index": list(range(len(texts))) * total})
    rows = len(records) * cfg.group_size
    args = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_grpo_"),
        use_cpu=True,
        bf16=False,
        use_vllm=False,
        per_device_train_batch_size=rows,
        gradient_accumulation_steps=1,
        generation_batch_size=rows,
        num_generations=cfg.group_size,
        num_iterations=cfg.mu,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=0,
        top_p=1.0,
        beta=cfg.loss.kl_coef,
        epsilon=cfg.loss.epsilon,
        loss_type="grpo",
        scale_rewards="group",
        reward_weights=[weight for _, weight in rl_throughput.WEIGHTS],
        learning_rate=1e-5,
        adam_beta2=0.95,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        max_steps=total,
        shuffle_dataset=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    begun, seconds = [], []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            begun.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            seconds.append(time.perf_counter() - begun[-1])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs and state.global_step > WARMUP:
                results.setdefault(label, []).append((seconds[-1], logs["completions/mean_length"] * rows))
                for name, call in rtc.items():
                    results[name].append(call())

    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=reward_fns(s),
        args=args,
        train_dataset=dataset,
        processing_class=processing,
        callbacks=[Clock()],
    )
    trainer.train()


def trl_label(threads: int) -> str:
    return f"TRL GRPOTrainer, {threads} torch thread{'s' if threads > 1 else ''}"


def peer_versions() -> str:
    """The peer's versions; "" when it is not installed."""
    try:
        import torch
        import transformers
        import trl
    except ImportError:
        return ""
    return f"trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}"


def table(results: dict, prompts: int, trl_errors: dict) -> list[str]:
    """Markdown lines, one row per side (means over its steps); `best TRL s / this s` is the faster
    TRL row's s/step over this row's."""
    means = {label: np.mean(steps, axis=0) for label, steps in results.items() if steps}
    trl_seconds = min((m[0] for label, m in means.items() if label.startswith("TRL")), default=None)
    lines = [
        "| side | steps | s/step | prompts/s | gen tokens/step | gen tokens/s | best TRL s / this s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, (seconds, tokens) in means.items():
        ratio = f"{trl_seconds / seconds:.2f}x" if trl_seconds else "-"
        lines.append(
            f"| {label} | {len(results[label])} | {seconds:.2f} | {prompts / seconds:.2f} | {tokens:,.0f} "
            f"| {tokens / seconds:,.0f} | {ratio} |"
        )
    for label, error in trl_errors.items():
        lines.append(f"| {label} | did not run: {error} | | | | | |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--torch-threads", default="2,1", help="TRL's torch thread counts, one TRL run each")
    args = parser.parse_args()
    s = rl_throughput.setup("grpo", args.preset, args.prompts, args.group, args.new_tokens)
    header = (
        f"GRPO, {args.preset} (vocab {s['model'].config.vocab_size}), {args.prompts} prompts "
        f"x G={args.group}, "
        f"up to {args.new_tokens} new tokens, mu=1, beta=0; mean of {args.steps} steps after {WARMUP} "
        f"warmup, the sides taking turns step by step; jax {jax.__version__} on {jax.device_count()} CPU "
        f"device(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(header + "\n", flush=True)
    rtc = rtc_steppers(s)
    results = {label: [] for label in rtc}
    trl_errors = {}
    versions = peer_versions()
    if not versions:
        trl_errors["TRL GRPOTrainer"] = "trl, transformers or torch is not installed here (bench/README.md)"
    for threads in map(int, args.torch_threads.split(",") if versions else ()):
        try:
            run_trl(s, args.steps, results, rtc, threads)
        except Exception as error:  # report why the peer failed instead of losing the rtc rows
            trl_errors[trl_label(threads)] = f"{type(error).__name__}: {error}"
    for label, call in rtc.items():  # alone when TRL did not run or stopped early
        while len(results[label]) < args.steps:
            results[label].append(call())
    lines = table(results, args.prompts, trl_errors)
    footer = f"Peer: {versions}. " if versions else ""
    footer += f"Load average at end {os.getloadavg()[0]:.2f}."
    print("\n".join(lines) + "\n\n" + footer)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join([header, "", *lines, "", footer]) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
