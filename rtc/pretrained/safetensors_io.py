"""Reading and writing safetensors checkpoints one tensor at a time (the `safetensors` library).

Format: https://huggingface.co/docs/safetensors (an 8-byte header length, a JSON header of dtype,
shape and byte range per tensor, then the raw bytes). A directory holds `model.safetensors` or, when
sharded, `model-0000i-of-0000n.safetensors` listed by `model.safetensors.index.json`'s `weight_map`.
Tensors are read through the library's `flax` framework because numpy has no bfloat16 (the dtype of
most published checkpoints); reads land on the host CPU device, never on an accelerator.
"""

import json
from pathlib import Path

import jax
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from rtc.errors import PretrainedError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


class SafetensorsReader:
    """The tensors of a checkpoint directory, as a context manager. Reading in file order
    (`weight_map`) keeps one memory-mapped shard open at a time."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._files: dict[str, object] = {}
        self.weight_map = self._weight_map()  # tensor name -> file name

    def _weight_map(self) -> dict[str, str]:
        index = self.directory / INDEX
        if index.exists():
            try:
                return dict(json.loads(index.read_text())["weight_map"])
            except (OSError, ValueError, KeyError) as error:
                raise PretrainedError(f"{index} is not a safetensors index: {error}") from error
        if not (self.directory / SINGLE).exists():
            raise PretrainedError(f"{self.directory} has neither {SINGLE} nor {INDEX}")
        return {name: SINGLE for name in self._open(SINGLE).keys()}

    def _open(self, file_name: str):
        """The open file `file_name`; others are closed, so one shard at a time is mapped."""
        if file_name not in self._files:
            self._files.clear()
            path = self.directory / file_name
            if not path.exists():
                raise PretrainedError(f"{path} (named by {INDEX}) does not exist")
            try:
                self._files[file_name] = safe_open(str(path), framework="flax")
            except SafetensorError as error:
                raise PretrainedError(f"{path} is truncated or not a safetensors file: {error}") from error
        return self._files[file_name]

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc) -> None:
        self._files.clear()

    def names(self) -> set[str]:
        return set(self.weight_map)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self.weight_map[name]).get_slice(name).get_shape())

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as a host numpy array (bfloat16 as `ml_dtypes.bfloat16`)."""
        handle = self._open(self.weight_map[name])
        try:
            with jax.default_device(jax.local_devices(backend="cpu")[0]):
                return np.asarray(handle.get_tensor(name))
        except SafetensorError as error:
            raise PretrainedError(
                f"cannot read tensor {name} from {self.weight_map[name]}: {error}"
            ) from error


def write_sharded(directory: Path, tensors, max_shard_bytes: int) -> list[str]:
    """Writes `(name, array)` pairs from the iterable `tensors` as safetensors files of at most
    `max_shard_bytes` each (a single tensor may exceed it), converting nothing ahead of the shard
    being written; with more than one file, also the index. Returns the file names."""
    shards: list[dict] = [{}]
    sizes = [0]
    written: list[str] = []
    weight_map: dict[str, int] = {}

    def flush():
        name = f"shard-{len(written)}"
        save_file(shards[-1], str(directory / name), metadata={"format": "pt"})
        written.append(name)
        shards[-1], sizes[-1] = {}, 0

    for name, array in tensors:
        if shards[-1] and sizes[-1] + array.nbytes > max_shard_bytes:
            flush()
        shards[-1][name] = array
        sizes[-1] += array.nbytes
        weight_map[name] = len(written)
    flush()
    n = len(written)
    final = [SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for temporary, name in zip(written, final):
        (directory / temporary).replace(directory / name)
    if n > 1:
        index = {"metadata": {}, "weight_map": {name: final[i] for name, i in weight_map.items()}}
        (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return final
