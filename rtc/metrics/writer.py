"""One metric writer per run: JSONL, TensorBoard events and a progress bar, on process 0 only.

Files in `workdir`: `metrics.jsonl` (one `{"step": ..., name: value}` object a
line, flushed at every write so a killed run keeps its lines), `tb/` (TensorBoard
scalar and text events) and `samples.txt` (sample traces from `write_text`).
A resumed run appends; steps logged after its last checkpoint then appear twice.

`workdir` may be a URL (`gs://bucket/run`, `s3://...`, opened through `etils.epath`). Object stores
cannot append to a file, so such a run writes into a local staging folder and copies each file that
changed, whole, to the workdir: after a `write` or `write_text` when `push_every_s` (30 s) have passed
since the last copy, and on every `flush` (the training loop flushes at each checkpoint) and `close`.
Copies are whole files, so throttling keeps a long run's uploads from growing with the square of its
length. A resumed remote run first copies the workdir's `metrics.jsonl` and `samples.txt` down, so it
appends to them as a local run does; its TensorBoard events go to a new event file, as locally.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import tensorboardX
import tqdm
from etils import epath

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.txt"
TB_DIR = "tb"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL (`gs://...`, `s3://...`) rather than a local path."""
    return bool(_URL.match(os.fspath(path)))


def _drop_partial_line(path: Path):
    """Cuts a last line left unfinished by a killed run, so appended lines stay valid JSONL."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _to_json_value(value: np.ndarray) -> float | list:
    """A float for a scalar, a nested list for any other array."""
    return float(value) if value.ndim == 0 else value.tolist()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a `metrics.jsonl` file, or of the one in a workdir (local or a URL), in file order."""
    path = epath.Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pull(remote: epath.Path, local: Path, names: tuple[str, ...]) -> None:
    """Copies the files `names` that exist in `remote` into `local`."""
    for name in names:
        if (remote / name).exists():
            (local / name).write_bytes((remote / name).read_bytes())


def _push(local: Path, remote: epath.Path, pushed: dict) -> None:
    """Copies every file under `local` that changed since it was last pushed to the same place under
    `remote`, whole. `pushed`: {relative path: (size, mtime)} at the last copy, updated here."""
    for root, _, files in os.walk(local):
        for name in sorted(files):
            path = Path(root) / name
            stat = path.stat()
            relative = path.relative_to(local).as_posix()
            if pushed.get(relative) != (stat.st_size, stat.st_mtime_ns):
                target = remote / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
                pushed[relative] = (stat.st_size, stat.st_mtime_ns)


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
        push_every_s: float = 30.0,
    ):
        self.workdir = os.fspath(workdir)
        self._push_every_s, self._last_push = push_every_s, None
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = self._tb = self._bar = None
        self._remote, self._pushed = None, {}
        if not self.enabled:
            return
        if is_remote(self.workdir):  # files are written here, then copied whole to the workdir
            self._remote = epath.Path(self.workdir)
            self._local = Path(tempfile.mkdtemp(prefix="rtc-metrics-"))
            _pull(self._remote, self._local, (METRICS_FILE, SAMPLES_FILE))
        else:
            self._local = Path(self.workdir)
            self._local.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(self._local / METRICS_FILE)
        self._jsonl = open(self._local / METRICS_FILE, "a")
        # tensorboardX names its file by the second and the host, and truncates a file of that name: the
        # suffix keeps two writers opened within one second (training, then evaluation) from sharing one.
        suffix = f".{uuid.uuid4().hex[:8]}"
        self._tb = tensorboardX.SummaryWriter(
            str(self._local / TB_DIR), flush_secs=30, filename_suffix=suffix
        )
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
        self._push(throttled=True)

    def write_text(self, step: int, name: str, text: str):
        """Logs a text sample (e.g. a decoded reasoning trace) to TensorBoard and `samples.txt`."""
        if not self.enabled:
            return
        self._tb.add_text(name, text, int(step))
        with open(self._local / SAMPLES_FILE, "a") as f:
            f.write(f"=== step {int(step)} {name} ===\n{text}\n")
        self._push(throttled=True)

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
        """Pushes buffered TensorBoard events to disk (and a remote workdir's files to the workdir)."""
        if self._tb is not None:
            self._tb.flush()
            self._push()

    def close(self):
        """Flushes and closes every output, copying a remote workdir's files there; safe to call twice."""
        for output in (self._bar, self._tb, self._jsonl):
            if output is not None:
                output.close()
        if self._remote is not None:  # a failed copy raises and leaves the staging folder in place
            _push(self._local, self._remote, self._pushed)
            shutil.rmtree(self._local, ignore_errors=True)
        self._jsonl = self._tb = self._bar = self._remote = None
        self.enabled = False

    def _push(self, throttled: bool = False):
        """Copies the staged files that changed to a remote workdir (`throttled`: only when `push_every_s`
        have passed since the last copy; the first write always copies); nothing for a local one."""
        if self._remote is None:
            return
        now = time.monotonic()
        if throttled and self._last_push is not None and now - self._last_push < self._push_every_s:
            return
        _push(self._local, self._remote, self._pushed)
        self._last_push = now

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
