"""The Colab notebook runs top to bottom (shrunk: the tiny config, a few steps, a temp workdir)."""

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "colab" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(NOTEBOOK.parents[1])
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    shrink = {
        "quickstart.get_config()": "quickstart.get_config('tiny')",
        "num_steps = 300": "num_steps = 4",
        "/tmp/rtc_colab": str(tmp_path),
    }
    for old in shrink:
        assert any(old in source for source in code), f"the notebook no longer contains {old!r}"
    namespace = {}
    for source in code:
        for old, new in shrink.items():
            source = source.replace(old, new)
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # the notebook's own cells, not model output
    out = capsys.readouterr().out
    assert "Held-out accuracy" in out
    assert namespace["out"].tokens.shape[0] == 1  # the budget cell sampled a completion
