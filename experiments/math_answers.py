"""MATH answer checking: rtc's rule-based normaliser against math-verify, on a pair table and MATH-500.

Usage:  python -m experiments.math_answers [--data_dir=DIR]
Prints (a) how many of the equivalent pairs below each checker accepts and how many of the wrong pairs
it rejects, (b) on MATH-500 (`math500/test.jsonl` under the data root), gold against itself, the last
`\\boxed{}` of the gold solution against the gold answer, and another problem's answer against the gold
answer (a control: these should be rejected), (c) milliseconds per check. `math_equal` is math-verify
with the normaliser as fallback; the copy in `results/math_answers.txt` was made on a 2-core CPU.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from rtc.data import answers, math500, math_verify_check, paths

# (predicted, gold) pairs a MATH grader should accept
EQUIVALENT = [
    ("0.5", "\\frac12"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("\\tfrac{1}{3}", "\\frac13"),
    ("\\frac34", "0.75"),
    ("3.5", "\\frac72"),
    ("x=5", "5"),
    ("5", "x = 5"),
    ("C", "\\text{(C)}"),
    ("\\textbf{(B)}", "B"),
    ("90", "90^\\circ"),
    ("10^{\\circ}", "10"),
    ("864", "864 \\mbox{ inches}^2"),
    ("6", "6\\mbox{ cm}^2"),
    ("12\\text{ cm}", "12"),
    ("[2,5)", "[2, 5)"),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(-\\infty,0)\\cup(1,\\infty)"),
    ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\dfrac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("sqrt(2)/2", "\\frac{\\sqrt{2}}{2}"),
    ("\\pi/2", "\\frac{\\pi}{2}"),
    ("0.5\\pi", "\\frac{\\pi}{2}"),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}"),
    ("1,000,000", "1000000"),
    ("10{,}000", "10000"),
    ("50\\%", "50"),
    ("-3", "-3.0"),
    ("-\\frac{1}{3}", "-1/3"),
    ("1.5 \\times 10^{3}", "1500"),
    ("\\$18.90", "18.90"),
    ("2x+1", "1+2x"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("Evelyn", "\\text{Evelyn}"),
    ("5.", "5"),
]

# (predicted, gold) pairs a MATH grader should reject: near misses and prefixes of right answers
WRONG = [
    ("17", "18"),
    ("-5", "5"),
    ("0.51", "\\frac12"),
    ("1.0001", "1"),
    ("x=6", "5"),
    ("B", "\\text{(C)}"),
    ("180", "90^\\circ"),
    ("[2,5]", "[2,5)"),
    ("\\infty", "-\\infty"),
    ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\sqrt{3}", "\\sqrt{2}"),
    ("2\\sqrt{2}", "2"),
    ("\\pi", "3.14"),
    ("\\{1,2\\}", "\\{1,2,3\\}"),
    ("1, 2", "1, 3"),
    ("1,2", "12"),
    ("5", "50\\%"),
    ("1.5\\times10^4", "1500"),
    ("100", "10^{3}"),
    ("2x-1", "2x+1"),
    ("Eve", "\\text{Evelyn}"),
]

CHECKERS = {
    "normaliser": answers.normalized_equal,
    "math-verify": lambda predicted, gold: math_verify_check.equivalent(predicted, gold) is True,
    "math_equal": answers.math_equal,
}


def pair_table() -> list[str]:
    """Markdown rows: equivalent pairs accepted and wrong pairs rejected, per checker."""
    rows = ["| checker | equivalent pairs accepted | wrong pairs rejected |", "|---|---|---|"]
    for name, check in CHECKERS.items():
        accepted = sum(check(predicted, gold) for predicted, gold in EQUIVALENT)
        rejected = sum(not check(predicted, gold) for predicted, gold in WRONG)
        rows.append(f"| {name} | {accepted}/{len(EQUIVALENT)} | {rejected}/{len(WRONG)} |")
    return rows


def math500_routes(records: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """{route: [(predicted, gold)]}: the gold itself, the solution's boxed answer, the next problem's answer."""
    routes = {
        "gold vs gold": [(r["answer"], r["answer"]) for r in records],
        "boxed vs gold": [(math500.extract_boxed(r["solution"]), r["answer"]) for r in records],
    }
    shifted = zip(records, records[1:] + records[:1])
    routes["next problem's answer vs gold (reject)"] = [
        (other["answer"], r["answer"])
        for r, other in shifted
        if other["answer"].strip() != r["answer"].strip()
    ]
    return routes


def timed(check, pairs: list[tuple[str, str]]) -> tuple[int, list[float]]:
    """(accepted count, milliseconds per check)."""
    accepted, times = 0, []
    for predicted, gold in pairs:
        start = time.perf_counter()
        accepted += bool(check(predicted, gold))
        times.append(1e3 * (time.perf_counter() - start))
    return accepted, times


def math500_table(records: list[dict]) -> tuple[list[str], list[str]]:
    """Markdown rows of acceptance counts and of ms per check (mean, median, max), per checker."""
    counts = ["| route | pairs | " + " | ".join(CHECKERS) + " |", "|---|---|" + "---|" * len(CHECKERS)]
    speed = ["| checker | route | mean ms | median ms | max ms |", "|---|---|---|---|---|"]
    for route, pairs in math500_routes(records).items():
        cells = []
        for name, check in CHECKERS.items():
            if math_verify_check.available():
                math_verify_check.clear_cache()  # first sight of each gold is timed
            accepted, times = timed(check, pairs)
            cells.append(str(accepted))
            speed.append(
                f"| {name} | {route} | {statistics.mean(times):.3f} | {statistics.median(times):.3f} | {max(times):.1f} |"
            )
        counts.append(f"| {route} | {len(pairs)} | " + " | ".join(cells) + " |")
    return counts, speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="folder holding math500/ (default: the data root)")
    args = parser.parse_args()
    root = Path(args.data_dir) if args.data_dir else paths.data_root()
    records = [json.loads(line) for line in (root / "math500" / "test.jsonl").open()]
    print(f"math-verify installed: {math_verify_check.available()}\n")
    print("(a) pair table\n\n" + "\n".join(pair_table()) + "\n")
    counts, speed = math500_table(records)
    print(f"(b) MATH-500, {len(records)} records, pairs accepted\n\n" + "\n".join(counts) + "\n")
    control = math500_routes(records)["next problem's answer vs gold (reject)"]
    accepted = [
        f"{predicted!r} vs {gold!r}" for predicted, gold in control if answers.math_equal(predicted, gold)
    ]
    print("control pairs math_equal accepts: " + ("; ".join(accepted) or "none") + "\n")
    print("(c) time per check (gold parses not cached at the start of each route)\n\n" + "\n".join(speed))


if __name__ == "__main__":
    main()
