"""A copy of the repository in a fresh folder, as a user gets it (no data folder beside it, no `$RTC_DATA_DIR`,
an empty home): every test module collects, and the data tests run on the shipped `tests/data` or skip."""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_COLLECTED = re.compile(r"^(\d+) tests? collected", re.MULTILINE)


def _working_tree_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore: what a commit of this tree would hold."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to list the repository's files")
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return [name for name in out.stdout.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The working tree's files copied to `<tmp>/elsewhere/rtc`, with nothing beside it."""
    root = tmp_path_factory.mktemp("elsewhere") / "rtc"
    for name in _working_tree_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    assert sorted(p.name for p in root.parent.iterdir()) == ["rtc"]
    return root


@pytest.fixture(scope="module")
def user_env(clone, tmp_path_factory) -> dict:
    """The environment of a user: no data folder set, an empty home and cache, the clone on the path, and
    downloads pointed at a local port where nothing listens (they fail at once instead of going out)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("RTC_DATA_DIR", "RTC_DATA_MIRROR", "XDG_CACHE_HOME")
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{probe.getsockname()[1]}"
    home = tmp_path_factory.mktemp("home")
    return {**env, "HOME": str(home), "PYTHONPATH": str(clone), "RTC_DATA_MIRROR": offline}


def _pytest(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_clone_imports_itself(clone, user_env):
    out = subprocess.run(
        [sys.executable, "-c", "import rtc, experiments; print(rtc.__file__); print(experiments.__file__)"],
        cwd=clone,
        env=user_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [
        str(clone / "rtc" / "__init__.py"),
        str(clone / "experiments" / "__init__.py"),
    ]


def test_every_test_module_collects_in_a_clone_without_data(clone, user_env):
    here = _pytest(["--collect-only", "-q", "tests"], REPO, {**os.environ, "PYTHONPATH": str(REPO)})
    there = _pytest(["--collect-only", "-q", "tests"], clone, user_env)
    assert there.returncode == 0, there.stdout[-4000:] + there.stderr[-4000:]
    assert "error" not in there.stdout.splitlines()[-1]
    expected = int(_COLLECTED.search(here.stdout).group(1))
    assert expected > 0 and int(_COLLECTED.search(there.stdout).group(1)) == expected
    modules = {line.split("::")[0] for line in there.stdout.splitlines() if "::" in line}
    assert modules == {f"tests/{p.name}" for p in (clone / "tests").glob("test_*.py")}


def test_data_tests_use_the_shipped_files_or_skip_naming_the_variable(clone, user_env):
    out = _pytest(["-q", "-rs", "tests/test_data.py", "tests/test_download.py"], clone, user_env)
    assert out.returncode == 0, out.stdout[-4000:]
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("$RTC_DATA_DIR" in line for line in skips)
    assert not (Path(user_env["HOME"]) / ".cache").exists()  # nothing was downloaded or created
