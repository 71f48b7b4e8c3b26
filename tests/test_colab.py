"""The Colab notebooks run top to bottom in a Jupyter kernel (nbclient), shrunk through their `parameters` cell.

Each test inserts a cell after the notebook's `parameters` cell (papermill's convention) with TINY = True, a
temp workdir and a few steps, then executes every cell in this interpreter's `python3` kernel from the repo
root, as a user running the notebook locally would. A cell that raises fails the test.
"""

import sys
from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]


def execute(name: str, **parameters) -> tuple[str, int]:
    """Runs `colab/<name>.ipynb` with `parameters` injected; returns (its stdout, its number of PNG outputs)."""
    nb = nbformat.read(REPO / "colab" / f"{name}.ipynb", as_version=4)
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
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stdout = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return stdout, images


def test_quickstart(tmp_path):
    stdout, images = execute("quickstart", TINY=True, WORKDIR=str(tmp_path), NUM_STEPS=4)
    assert "Held-out accuracy on 8 arithmetic problems (step 4)" in stdout
    assert "final train loss" in stdout
    assert "thinking... " in stdout
    for knob in ("budget_tokens=2", "budget_tokens=8", "reasoning_effort=low", "reasoning_effort=high"):
        assert knob in stdout
    assert images >= 1  # loss, token accuracy and held-out accuracy


def test_test_time_scaling(tmp_path):
    stdout, images = execute(
        "test_time_scaling",
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
        "grpo_walkthrough", TINY=True, WORKDIR=str(tmp_path), SFT_STEPS=20, GRPO_STEPS=3, GROUP_SIZE=4
    )
    assert "step 20/20  loss" in stdout  # the cold start
    assert stdout.count("advantage ") == 4  # one line per completion of the group
    assert "2 updates on one group" in stdout
    assert "step 3/3" in stdout
    assert "Held-out accuracy" in stdout
    assert images >= 2  # surrogate and KL; reward, KL and self-correction over steps
