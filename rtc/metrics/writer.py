"""One metric writer per run: JSONL, TensorBoard events and a progress bar, on process 0 only.

Files in `workdir`: `metrics.jsonl` (one `{"step": ..., name: value}` object a
line, flushed at every write so a killed run keeps its lines), `tb/` (TensorBoard
scalar and text events) and `samples.txt` (sample traces from `write_text`).
A resumed run appends; steps logged after its last checkpoint then appear twice.
"""

import json
import os
import sys
from collections.abc import Mapping

import jax
import numpy as np
import tensorboardX
import tqdm

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.txt"
TB_DIR = "tb"


def _drop_partial_line(path: str):
    """Cuts a last line left unfinished by a killed run, so appended lines stay valid JSONL."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _to_json_value(value: np.ndarray) -> float | list:
    """A float for a scalar, a nested list for any other array."""
    return float(value) if value.ndim == 0 else value.tolist()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a `metrics.jsonl` file, or of the one in a workdir, in file order."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
    """Writes metrics of one run; a disabled writer (processes other than 0) does nothing.

    `progress` defaults to whether stderr is a terminal; `initial_step` starts the
    bar where a resumed run starts, so its ETA counts only the remaining steps.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        total_steps: int | None = None,
        enabled: bool | None = None,
        progress: bool | None = None,
        initial_step: int = 0,
    ):
        self.workdir = os.fspath(workdir)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = self._tb = self._bar = None
        if not self.enabled:
            return
        os.makedirs(self.workdir, exist_ok=True)
        jsonl_path = os.path.join(self.workdir, METRICS_FILE)
        _drop_partial_line(jsonl_path)
        self._jsonl = open(jsonl_path, "a")
        self._tb = tensorboardX.SummaryWriter(os.path.join(self.workdir, TB_DIR), flush_secs=30)
        if sys.stderr.isatty() if progress is None else progress:
            self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)

    def write(self, step: int, metrics: Mapping, prefix: str = ""):
        """Logs `metrics` (floats or arrays) at `step`, each name prefixed by `prefix`.

        Scalars go to JSONL and TensorBoard; other arrays go to JSONL as lists only.
        """
        if not self.enabled:
            return
        values = {prefix + name: np.asarray(v) for name, v in jax.device_get(dict(metrics)).items()}
        record = {"step": int(step)} | {name: _to_json_value(v) for name, v in values.items()}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for name, value in values.items():
            if value.ndim == 0:
                self._tb.add_scalar(name, float(value), int(step))
        if self._bar is not None and prefix + "loss" in values:
            self._bar.set_postfix(loss=f"{float(values[prefix + 'loss']):.4g}", refresh=False)

    def write_text(self, step: int, name: str, text: str):
        """Logs a text sample (e.g. a decoded reasoning trace) to TensorBoard and `samples.txt`."""
        if not self.enabled:
            return
        self._tb.add_text(name, text, int(step))
        with open(os.path.join(self.workdir, SAMPLES_FILE), "a") as f:
            f.write(f"=== step {int(step)} {name} ===\n{text}\n")

    def log(self, message: str):
        """Prints a line on process 0 without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def advance(self, n: int = 1):
        """Moves the progress bar `n` steps on."""
        if self._bar is not None:
            self._bar.update(n)

    def flush(self):
        """Pushes buffered TensorBoard events to disk."""
        if self._tb is not None:
            self._tb.flush()

    def close(self):
        """Flushes and closes every output; safe to call twice."""
        for output in (self._bar, self._tb, self._jsonl):
            if output is not None:
                output.close()
        self._jsonl = self._tb = self._bar = None
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
