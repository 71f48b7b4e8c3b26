"""The public data files rtc reads, where to fetch each one, and its size and sha256.

`ensure(dataset)` returns the dataset's folder under the data root (`rtc.data.paths.data_root()`): a file
already there is checked against its sha256 (once per process), a missing one is downloaded. A download
streams to a temporary file beside its destination, is checked (size and sha256) and only then renamed
into place, so a failed or corrupted download leaves nothing behind. `$RTC_DATA_MIRROR` (or `mirror=`)
replaces every URL by `<mirror>/<dataset>/<file>`: an offline mirror, or a local server in tests.

Git LFS files of GitHub repositories (MATH-500 and PRM800K) are fetched from `media.githubusercontent.com`
at a pinned commit, whose bytes are the LFS object named by the pointer's sha256.
"""

import dataclasses
import functools
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from rtc.data import paths

MIRROR_ENV_VAR = "RTC_DATA_MIRROR"
TIMEOUT_S = 60
_CHUNK = 1 << 20
_GSM8K = "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c"
_PRM800K_RAW = "https://raw.githubusercontent.com/openai/prm800k/7ecc794703b2877f63226f2477a49b34f9b25163"
_PRM800K_LFS = (
    "https://media.githubusercontent.com/media/openai/prm800k/7ecc794703b2877f63226f2477a49b34f9b25163"
)


class DataUnavailableError(FileNotFoundError):
    """A data file is neither under the data root nor downloadable; the message says where it looked."""


class ChecksumError(ValueError):
    """A file's size or sha256 is not the registered one; the message names the file or URL and both hashes."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One file: `name` inside its dataset's folder, where to fetch it (None: shipped with the
    repository in `tests/data`, never downloaded), its size in bytes and sha256."""

    name: str
    url: str | None
    size: int
    sha256: str


# MATH-500: the Hugging Face hub copy (HuggingFaceH4/MATH-500 `test.jsonl`) is another serialisation of the
# same 500 problems, with other bytes; the source is openai/prm800k's `math_splits/test.jsonl`, whose LFS
# oid is the sha256 below. stories260K (karpathy/tinyllamas on the hub) is pinned to the copy shipped in
# the repository, whose sha256 is known; the hub file is not fetched.
DATASETS: dict[str, tuple[Source, ...]] = {
    "gsm8k": (
        Source(
            "train.jsonl",
            f"{_GSM8K}/grade_school_math/data/train.jsonl",
            4166206,
            "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
        ),
        Source(
            "test.jsonl",
            f"{_GSM8K}/grade_school_math/data/test.jsonl",
            749738,
            "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        ),
        Source(
            "LICENSE",
            f"{_GSM8K}/LICENSE",
            1062,
            "86bbb73e855821d7c401912fd4bf82e34313e6e3b6fd6f909f2b6cc9e209a53b",
        ),
    ),
    "math500": (
        Source(
            "test.jsonl",
            f"{_PRM800K_LFS}/prm800k/math_splits/test.jsonl",
            446564,
            "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
        ),
        Source(
            "LICENSE",
            f"{_PRM800K_RAW}/LICENSE",
            1062,
            "22d61a2226e035da51c56149c3358c36d1f61716435866bc6e6fe0e54c7270db",
        ),
    ),
    "prm800k": (
        Source(
            "phase1_test.jsonl",
            f"{_PRM800K_LFS}/prm800k/data/phase1_test.jsonl",
            829105,
            "f4b3bc5b095e45c816453dc4d748b755c680d61d55f9895d929a335b487c727d",
        ),
        Source(
            "phase2_test.jsonl",
            f"{_PRM800K_LFS}/prm800k/data/phase2_test.jsonl",
            12240719,
            "6b172efa884ac8341a946dd82e06947c135b7254109fb3f7aa907c715d98aaad",
        ),
        Source(
            "LICENSE",
            f"{_PRM800K_RAW}/LICENSE",
            1062,
            "22d61a2226e035da51c56149c3358c36d1f61716435866bc6e6fe0e54c7270db",
        ),
    ),
    "stories260K": (
        Source(
            "stories260K.bin",
            None,
            1056540,
            "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
        ),
        Source(
            "tok512.model", None, 7522, "fec6aa960a1fb3ebf71d26f9b0e486afcbd76c34cf0fbfb93e21126ca9f778d3"
        ),
        Source("LICENSE", None, 1063, "e87b912002f04cdfa837eaf7f70548ab79b9cb62a285495edf575f3da875aec4"),
    ),
}


def shipped_root() -> Path | None:
    """`tests/data` of the source checkout this package runs from, or None (an installed package)."""
    root = Path(__file__).resolve().parents[2] / "tests" / "data"
    return root if root.is_dir() else None


def source_of(dataset: str, name: str, registry: dict | None = None) -> Source:
    """The registered `Source` of `dataset/name`; `KeyError` listing the known ones otherwise."""
    registry = DATASETS if registry is None else registry
    for source in registry.get(dataset, ()):
        if source.name == name:
            return source
    known = ", ".join(f"{d}/{s.name}" for d, sources in registry.items() for s in sources)
    raise KeyError(f"no registered data file {dataset}/{name}; known: {known}")


def url_of(dataset: str, source: Source, mirror: str | None = None) -> str | None:
    """`<mirror>/<dataset>/<name>` when a mirror is given (argument, else `$RTC_DATA_MIRROR`), else the URL."""
    mirror = mirror or os.environ.get(MIRROR_ENV_VAR)
    if mirror and source.url is not None:
        return f"{mirror.rstrip('/')}/{dataset}/{source.name}"
    return source.url


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process hashes each file once."""
    sha = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def verify(path: Path, source: Source) -> Path:
    """`path` if its size and sha256 are the registered ones, else `ChecksumError`."""
    stat = path.stat()
    if stat.st_size != source.size:
        raise ChecksumError(
            f"{path} is not the registered file: expected {source.size} bytes, got {stat.st_size}; "
            "delete it to download it again"
        )
    actual = _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if actual != source.sha256:
        raise ChecksumError(
            f"{path} is not the registered file: expected sha256 {source.sha256}, got {actual}; "
            "delete it to download it again"
        )
    return path


def fetch(url: str, destination: Path, source: Source) -> Path:
    """Downloads `url` to `destination` if its size and sha256 match `source`; else `ChecksumError` and no
    file is left (the bytes go to a temporary file in the same folder, renamed only once checked)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
    )
    try:
        sha, size = hashlib.sha256(), 0
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if (size, sha.hexdigest()) != (source.size, source.sha256):
            raise ChecksumError(
                f"download from {url} failed its check: expected {source.size} bytes with sha256 "
                f"{source.sha256}, got {size} bytes with sha256 {sha.hexdigest()}; nothing written to {destination}"
            )
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination


def ensure_file(
    dataset: str, name: str, root: Path | None = None, mirror: str | None = None, registry=None
) -> Path:
    """The checked local path of `dataset/name` under `root` (default: the data root), downloaded if missing.

    A missing file that cannot be downloaded raises `DataUnavailableError`, one line naming the file, the
    folder, the URL and `$RTC_DATA_DIR`."""
    source = source_of(dataset, name, registry)
    root = Path(root) if root is not None else paths.data_root()
    local = root / dataset / name
    if local.is_file():
        return verify(local, source)
    url = url_of(dataset, source, mirror)
    if url is None:
        raise DataUnavailableError(
            f"{dataset}/{name} is not in {root / dataset} (${paths.ENV_VAR}) and has no download URL: "
            f"it ships in the repository's tests/data/{dataset}; copy it there"
        )
    logging.getLogger(__name__).info("downloading %s to %s (%d bytes)", url, local, source.size)
    try:
        return fetch(url, local, source)
    except (OSError, urllib.error.URLError, http.client.HTTPException) as error:  # incl. a cut-off body
        raise DataUnavailableError(
            f"{dataset}/{name} is not in {root / dataset} and its download from {url} failed ({error}); "
            f"download it there by hand, or set ${paths.ENV_VAR} to a folder holding {dataset}/{name}"
        ) from error


def ensure(
    dataset: str,
    names: tuple[str, ...] | None = None,
    root: Path | None = None,
    mirror: str | None = None,
    registry: dict | None = None,
) -> Path:
    """The local folder of `dataset` holding its files `names` (default: all registered), each checked
    and downloaded if missing. A dataset without download URLs (stories260K) that is incomplete under the
    data root comes from the copy shipped in the repository's `tests/data`, when there is one."""
    registry = DATASETS if registry is None else registry
    names = names if names is not None else tuple(s.name for s in registry.get(dataset, ()))
    root = Path(root) if root is not None else paths.data_root()
    sources = [source_of(dataset, name, registry) for name in names]
    shipped = shipped_root()
    if all(s.url is None for s in sources) and shipped is not None:
        if not all((root / dataset / s.name).is_file() for s in sources):
            root = shipped
    for name in names:
        ensure_file(dataset, name, root, mirror, registry)
    return root / dataset
