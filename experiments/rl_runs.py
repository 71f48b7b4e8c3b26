"""GRPO vs PPO (seed 23.3), dynamic sampling on and off, and cold start vs RL from scratch (DeepSeek-R1).

Usage:  python -m experiments.rl_runs --workdir=DIR [--steps=60] [--scratch_steps=20] [--only=grpo,ppo]
Runs, each into DIR/NAME (a stopped run resumes; a finished one is only evaluated again):
  sft          the quickstart SFT (600 steps): the cold start and the KL reference;
  grpo         SFT then GRPO (`experiments/configs/grpo.py`: DAPO dynamic sampling, prompts of levels 2-4);
  grpo_static  the same without dynamic sampling (zero-variance groups masked, never replaced);
  ppo          SFT then PPO with a critic (`grpo.py:ppo`), same model, data, sampling and budget;
  scratch      GRPO from random weights (`grpo.py:scratch`): no cold start;
then writes DIR/rl_table.md (held-out accuracy, reward, KL, clipping, entropy, trained-state memory, peak
RSS, s/step) and DIR/rl_curves.png (training curves) with `experiments/summarize_rl.py`.
Measured results and runtimes: experiments/README.md ("Reinforcement learning on arithmetic").
"""

import argparse
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"


def commands(workdir: Path, steps: int, scratch_steps: int) -> dict[str, list[str]]:
    """{run name: rtc.main arguments}; the RL runs start from DIR/sft."""
    main = [sys.executable, "-m", "rtc.main"]
    sft = workdir / "sft"
    rl = [f"--config.policy_workdir={sft}", f"--config.rl.num_steps={steps}"]
    return {
        "sft": [*main, f"--config={CONFIGS / 'quickstart.py'}", f"--workdir={sft}"],
        "grpo": [*main, f"--config={CONFIGS / 'grpo.py'}", f"--workdir={workdir / 'grpo'}", *rl],
        "grpo_static": [
            *main,
            f"--config={CONFIGS / 'grpo.py'}",
            f"--workdir={workdir / 'grpo_static'}",
            *rl,
            "--config.rl.dynamic_sampling=False",
        ],
        "ppo": [*main, f"--config={CONFIGS / 'grpo.py'}:ppo", f"--workdir={workdir / 'ppo'}", *rl],
        "scratch": [
            *main,
            f"--config={CONFIGS / 'grpo.py'}:scratch",
            f"--workdir={workdir / 'scratch'}",
            f"--config.rl.num_steps={scratch_steps}",
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=60, help="RL steps of the GRPO and PPO runs")
    parser.add_argument(
        "--scratch_steps", type=int, default=20, help="RL steps of the run without cold start"
    )
    parser.add_argument(
        "--only", default="sft,grpo,grpo_static,ppo,scratch", help="comma-separated runs to do"
    )
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    wanted = args.only.split(",")
    all_commands = commands(workdir, args.steps, args.scratch_steps)
    unknown = set(wanted) - set(all_commands)
    if unknown:
        raise SystemExit(f"unknown runs {sorted(unknown)}; known: {', '.join(all_commands)}")
    for name in wanted:
        print(f"== {name}: {' '.join(all_commands[name][1:])}", flush=True)
        subprocess.run(all_commands[name], check=True)
    runs = [
        f"{name}={workdir / name}" for name in all_commands if (workdir / name / "metrics.jsonl").is_file()
    ]
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("summarize_rl.py")), f"--out={workdir}", *runs],
        check=True,
    )


if __name__ == "__main__":
    main()
