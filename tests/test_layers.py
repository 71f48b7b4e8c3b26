"""The package map: every `rtc` package imports only from packages below it, and functions stay short."""

import ast
from pathlib import Path

RTC = Path(__file__).resolve().parents[1] / "rtc"

# Lowest first. A module may import its own package and any package of a lower layer, nothing else.
LAYERS = (
    ("errors",),
    ("parallel", "checkpoint", "metrics"),  # mesh and sharding, orbax, metric writers
    ("data", "model"),  # tasks and the reasoning format; the network and its KV cache
    ("tokenizer",),
    ("pretrained",),  # loading checkpoints of other codebases; the model a run uses
    ("train", "sampling"),  # the one loop and update step; the compiled sampler
    ("eval",),  # held-out accuracy, voting, traces
    ("rewards",),  # rule rewards, reward models and their training
    ("search",),  # the compiled tree search
    ("rl",),  # GRPO and PPO
    ("recipes",),  # the stages each mode chains
    ("analysis",),  # scaling curves, compute-optimal tables, verifier studies, plots
    ("api",),  # rtc.load, generate and search from Python; the export mode
    ("serve",),  # the OpenAI-compatible server
    ("main",),  # the command line
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
MAX_FUNCTION_LINES = 80


def package_of(path: Path) -> str:
    part = path.relative_to(RTC).parts[0]
    return part.removesuffix(".py")


def imported_packages(path: Path) -> set[str]:
    """The `rtc` packages a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rtc":
            parts = node.module.split(".")
            found.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("rtc."))
    return found


def modules():
    return sorted(p for p in RTC.rglob("*.py") if p.name != "__init__.py" or p.parent != RTC)


def test_every_package_has_a_layer():
    assert {package_of(p) for p in modules()} <= set(RANK)


def test_packages_import_only_downward():
    upward = []
    for path in modules():
        own = package_of(path)
        for other in imported_packages(path) - {own}:
            if RANK[other] >= RANK[own]:
                upward.append(f"{path.relative_to(RTC.parent)} imports rtc.{other}")
    assert not upward, "\n".join(upward)


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(RTC.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "\n".join(long)
