"""The Colab notebooks: their install cell, their saved outputs, and a run top to bottom in a Jupyter kernel.

Each execution test inserts a cell after the notebook's `parameters` cell (papermill's convention) with TINY =
True, a temp workdir and a few steps, then executes every cell with nbclient in this interpreter's `python3`
kernel, from an empty folder outside the repository (as Colab runs it from /content with rtc installed: every
path comes from the installed packages). A cell that raises fails the test.

The install cell is executed as plain Python with Colab's module, the TPU and GPU signs and pip faked, so each
runtime's pip command is checked without installing anything.
"""

import glob
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("quickstart", "test_time_scaling", "grpo_walkthrough")
SOURCE = "git+https://example.org/rtc"


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "colab" / f"{name}.ipynb", as_version=4)


def execute(name: str, cwd: Path, **parameters) -> tuple[str, int]:
    """Runs `colab/<name>.ipynb` in `cwd` with `parameters` injected; returns (its stdout, its number of PNGs)."""
    nb = read(name)
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    defined = nb.cells[tagged[0]].source
    for key in parameters:
        assert f"\n{key} = " in f"\n{defined}", f"{name}: the parameters cell no longer defines {key}"
    lines = [f"{key} = {value!r}" for key, value in parameters.items()]
    # the kernel must be this interpreter (the venv running pytest), not another python3 kernelspec
    lines.append(f"import sys; assert sys.executable == {sys.executable!r}, sys.executable")
    injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, injected)
    cwd.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stdout = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return stdout, images


def test_quickstart(tmp_path):
    stdout, images = execute(
        "quickstart", tmp_path / "content", TINY=True, WORKDIR=str(tmp_path), NUM_STEPS=4
    )
    assert "Held-out accuracy on 8 arithmetic problems (step 4)" in stdout
    assert "final train loss" in stdout
    assert "thinking... " in stdout
    for knob in ("budget_tokens=2", "budget_tokens=8", "reasoning_effort=low", "reasoning_effort=high"):
        assert knob in stdout
    assert images >= 1  # loss, token accuracy and held-out accuracy


def test_test_time_scaling(tmp_path):
    stdout, images = execute(
        "test_time_scaling",
        tmp_path / "content",
        TINY=True,
        WORKDIR=str(tmp_path),
        NUM_PROBLEMS=4,
        BUDGETS=(2, 4),
        STRATEGIES=("best_of_n", "beam"),
        SHOW_STRATEGY="beam",
        SHOW_N=4,
    )
    assert "| beam | 4 |" in stdout  # the search's own table
    assert "beam: N=4, M=2" in stdout
    assert stdout.count("PRM score") == 4
    assert "PRM-weighted vote:" in stdout
    assert images >= 2  # accuracy vs N, accuracy vs generated tokens


def test_grpo_walkthrough(tmp_path):
    stdout, images = execute(
        "grpo_walkthrough",
        tmp_path / "content",
        TINY=True,
        WORKDIR=str(tmp_path),
        SFT_STEPS=20,
        GRPO_STEPS=3,
        GROUP_SIZE=4,
    )
    assert "step 20/20  loss" in stdout  # the cold start
    assert stdout.count("advantage ") == 4  # one line per completion of the group
    assert "2 updates on one group" in stdout
    assert "step 3/3" in stdout
    assert "Held-out accuracy" in stdout
    assert images >= 2  # surrogate and KL; reward, KL and self-correction over steps


# Machine-specific text that must not reach a saved output: home folders, checkouts, venvs, temp folders.
MACHINE_PATH = re.compile(r"/work/|/home/|/root/|/tmp/|site-packages|/content/")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saved_outputs_are_one_clean_run(name):
    nb = read(name)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))  # top to bottom, once
    assert not [cell for cell in code if "injected-parameters" in cell.metadata.get("tags", [])]
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2 - (name == "quickstart")
    texts = [o.get("text", "") for o in outputs] + [
        str(o.get("data", {}).get("text/plain", "")) for o in outputs
    ]
    assert not [text for text in texts if MACHINE_PATH.search(text)]


def install_cell(name: str) -> str:
    [source] = [cell.source for cell in read(name).cells if "RTC_SOURCE = " in cell.source]
    return source


def with_source(cell: str, rtc_source: str) -> str:
    """The install cell with `RTC_SOURCE` set to `rtc_source`, whatever its default."""
    cell, count = re.subn(r'^RTC_SOURCE = "[^"]*"', f"RTC_SOURCE = {rtc_source!r}", cell, flags=re.M)
    assert count == 1
    return cell


def test_every_notebook_has_the_same_install_cell():
    assert install_cell("test_time_scaling") == install_cell("quickstart")
    assert install_cell("grpo_walkthrough") == install_cell("quickstart")


def run_install_cell(
    monkeypatch, rtc_source=SOURCE, colab=True, env=(), modules=(), devices=(), checkout=False
):
    """Executes the install cell with rtc missing; returns the commands it ran (each a list of words).

    `env`: environment variables set; `modules`: the ones of rtc, libtpu, jax_cuda12_plugin and
    jax_cuda13_plugin that exist; `devices`: what `glob("/dev/accel*")` finds; `checkout`: whether
    /content/rtc/setup.py exists.
    """
    commands = []
    faked = {"rtc", "libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin"}
    find_spec, real_glob, isfile = importlib.util.find_spec, glob.glob, os.path.isfile
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda m, *a: (
            (types.SimpleNamespace(name=m) if m in modules else None) if m in faked else find_spec(m, *a)
        ),
    )
    monkeypatch.setattr(glob, "glob", lambda p: list(devices) if p == "/dev/accel*" else real_glob(p))
    monkeypatch.setattr(os.path, "isfile", lambda p: checkout if p == "/content/rtc/setup.py" else isfile(p))
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    for name in ("COLAB_TPU_ADDR", "TPU_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in dict(env).items():
        monkeypatch.setenv(name, value)
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(with_source(install_cell("quickstart"), rtc_source), {})
    return commands


PIP = [sys.executable, "-m", "pip", "install", "-q"]


@pytest.mark.parametrize(
    "runtime, expected",
    [
        ({}, []),  # CPU
        ({"env": {"COLAB_TPU_ADDR": "10.0.0.2:8470"}}, ["jax[tpu]"]),  # the TPU node runtime
        ({"env": {"TPU_NAME": "local"}}, ["jax[tpu]"]),
        ({"devices": ["/dev/accel0"]}, ["jax[tpu]"]),  # a TPU VM
        ({"modules": {"libtpu"}}, ["jax[tpu]"]),  # Colab's TPU runtime ships libtpu
        ({"modules": {"jax_cuda12_plugin"}}, ["jax[cuda12]"]),  # GPU: keep jax's CUDA plugin in step
        ({"modules": {"jax_cuda13_plugin"}}, ["jax[cuda13]"]),
    ],
)
def test_install_cell_installs_rtc_with_the_runtimes_jax(monkeypatch, runtime, expected):
    assert run_install_cell(monkeypatch, **runtime) == [PIP + [SOURCE, *expected]]


def test_install_cell_takes_a_clone_in_content_when_no_source_is_set(monkeypatch):
    assert run_install_cell(monkeypatch, rtc_source="", checkout=True) == [PIP + ["/content/rtc"]]
    with pytest.raises(RuntimeError, match="set RTC_SOURCE"):
        run_install_cell(monkeypatch, rtc_source="", checkout=False)


def test_install_cell_outside_colab_asks_for_make_setup(monkeypatch):
    with pytest.raises(RuntimeError, match="make setup"):
        run_install_cell(monkeypatch, colab=False)


def test_install_cell_does_nothing_where_rtc_is_installed(monkeypatch):
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(install_cell("quickstart"), {})
    assert commands == []


def test_install_cell_says_to_restart_when_pip_replaced_an_imported_package(monkeypatch, capsys):
    # numpy is imported (Colab imports it at start-up); `not_imported_yet` stands for jax, not imported yet
    versions = {"numpy": "2.0.2", "jax": "0.7.2"}
    owners = {"numpy": ["numpy"], "not_imported_yet": ["jax"]}
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: owners)
    monkeypatch.setattr(importlib.metadata, "version", lambda d: versions[d])
    monkeypatch.setitem(sys.modules, "numpy", sys.modules.get("numpy") or types.ModuleType("numpy"))
    monkeypatch.delitem(sys.modules, "not_imported_yet", raising=False)
    run_install_cell(monkeypatch)
    assert capsys.readouterr().out == ""  # pip replaced nothing
    monkeypatch.setattr(
        subprocess, "run", lambda command, check: versions.update(numpy="2.4.6", jax="0.10.2")
    )
    exec(with_source(install_cell("quickstart"), SOURCE), {})
    assert "pip replaced ['numpy'], already imported" in capsys.readouterr().out
