"""The DeepConf experiment's points and outputs (`experiments/deepconf.py`): each rule's accuracy with its
bootstrap interval, tokens, seconds and FLOPs per problem, and the .md / .json / .png they are written to."""

import json
from pathlib import Path

import numpy as np

from rtc.analysis import confidence_curves
from rtc.eval import voting


def merged_points(path: Path, points: dict) -> tuple[dict, list]:
    """`points` over those already in the json at `path` (N keys back to ints), and every run's settings."""
    saved = json.loads(path.read_text())
    old = {m: {int(n): p for n, p in by_n.items()} for m, by_n in saved["points"].items()}
    runs = saved.get("runs", [saved.get("args", {})])
    return old | points, runs


def offline_points(pool: dict, grade, keys, budgets, args, np_rng, text_votes: bool) -> dict:
    """Every offline rule at each N from one pool of max(N) traces per problem (answers as texts), by
    subsampling; votes keyed by `keys` (`deepconf.VoteKeys`), and with `text_votes` also majority by the answers' text."""
    big = max(budgets)
    correct = grade(pool["answers"], keyed=False)  # bool[P, big]
    ids = voting.answer_ids([[keys(a) for a in row] for row in pool["answers"]])
    per_sample = float(pool["lengths"].mean())
    per_trace_flops = float(pool["flops"].sum(axis=1).mean() / big)
    offline = confidence_curves.offline_curves(correct, ids, pool["confidence"], budgets, args.draws, np_rng)
    if text_votes:
        text_ids = voting.answer_ids(pool["answers"])
        by_text = confidence_curves.offline_curves(
            correct, text_ids, pool["confidence"], budgets, args.draws, np_rng, etas=()
        )
        offline["majority(text)"] = by_text["majority"]
    print(f"pool: {len(correct)} problems x {big} traces, {pool['seconds']:.0f} s", flush=True)
    return {
        name: {
            k: confidence_curves.point(
                v, k * per_sample, pool["seconds"] * k / big, args.bootstrap, np_rng, k * per_trace_flops
            )
            for k, v in by_k.items()
        }
        for name, by_k in offline.items()
    }


def online_point(got: dict, grade, args, np_rng) -> dict:
    """A DeepConf-online or consensus point: the vote's accuracy, tokens, FLOPs, seconds, traces drawn and
    the share of them stopped early."""
    right = grade(got["answers"])[np.arange(len(got["best"])), got["best"]]
    flops = got["flops"].sum(axis=1).mean()
    p = confidence_curves.point(right, got["generated"].mean(), got["seconds"], args.bootstrap, np_rng, flops)
    p["stopped"] = float(got["stopped"].sum() / got["drawn"].sum())
    p["traces"] = float(got["drawn"].sum(axis=1).mean())
    return p


def write(out_dir: Path, stem: str, points: dict, runs: list[dict], name: str) -> None:
    """STEM.md (a header per run: its settings, minutes and note), STEM.json and STEM.png; with FLOPs
    (deepconf_flops) the table and plot are against FLOPs, and each larger-model point is set against the
    best small-model point that spends no more."""
    lines = [name + ".", ""]
    for r in runs:
        what = r.get("methods", "offline,deepconf_low,deepconf_high,consensus")
        lines.append(
            f"- {what}: window {r['window']}, k {r['confidence_k']}, tau {r.get('taus', r.get('tau'))}, "
            f"{r.get('minutes', '?')} min" + (f"; {r['note']}" if r.get("note") else "")
        )
    flops = stem == "deepconf_flops"
    if flops:
        text = (
            "\n".join(lines)
            + "\n\n"
            + confidence_curves.flops_table(points)
            + "\n\n"
            + confidence_curves.equal_flops_table(points)
        )
    else:
        text = "\n".join(lines) + "\n\n" + confidence_curves.table(points)
    (out_dir / f"{stem}.md").write_text(text + "\n")
    (out_dir / f"{stem}.json").write_text(json.dumps({"runs": runs, "points": points}, indent=1))
    title = name.split(",")[0]
    with (out_dir / f"{stem}.png").open("wb") as png:
        if flops:
            confidence_curves.plot_flops(points, png, f"{title}: accuracy vs forward FLOPs")
        else:
            confidence_curves.plot(points, png, f"{title}: accuracy vs generated tokens")
    print(text)
