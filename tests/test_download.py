"""The data registry and downloader: files served from 127.0.0.1 (the shipped `tests/data`), checked by size
and sha256, renamed into place only when they match; local copies checked, never overwritten."""

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from rtc.data import download, gsm8k, paths
from rtc.data.download import ChecksumError, DataUnavailableError, Source

SHIPPED = Path(__file__).parent / "data"
# The shipped 40-line prefixes (tests/data/README.md), registered as if they were the published files.
GSM8K_TEST = Source(
    "test.jsonl",
    "https://example.invalid/gsm8k/test.jsonl",
    21743,
    "303c16daf3330e259e3d27cc03487e0dfdca1dd79685001a92f6ce9dfafb779a",
)
MATH500_TEST = Source(
    "test.jsonl",
    "https://example.invalid/math500/test.jsonl",
    33680,
    "85a9a1ce1b2fa7f3ccd76963964ff3d7269db3c4ec77d2265de4521b3d0f5f8e",
)
REGISTRY = {"gsm8k": (GSM8K_TEST,), "math500": (MATH500_TEST,)}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(folder: Path):
    """`(base_url, server)`: an HTTP server on 127.0.0.1 serving `folder`, in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


@pytest.fixture
def mirror():
    """A local mirror serving the shipped `tests/data` tree."""
    url, server = _serve(SHIPPED)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def corrupted_mirror(tmp_path):
    """`(url, bytes)`: a mirror whose `gsm8k/test.jsonl` has its 100th byte changed."""
    folder = tmp_path / "served"
    (folder / "gsm8k").mkdir(parents=True)
    data = bytearray((SHIPPED / "gsm8k" / "test.jsonl").read_bytes())
    data[100] ^= 1
    (folder / "gsm8k" / "test.jsonl").write_bytes(bytes(data))
    url, server = _serve(folder)
    yield url, bytes(data)
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the download is refused at once, as offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_missing_file_is_downloaded_checked_and_put_in_place(tmp_path, mirror):
    folder = download.ensure("gsm8k", root=tmp_path, mirror=mirror, registry=REGISTRY)
    assert folder == tmp_path / "gsm8k"
    assert (folder / "test.jsonl").read_bytes() == (SHIPPED / "gsm8k" / "test.jsonl").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["test.jsonl"]  # no temporary file left
    # Present now: read from disk, no network (this mirror refuses every connection).
    offline = _closed_port_url()
    assert download.ensure("gsm8k", root=tmp_path, mirror=offline, registry=REGISTRY) == folder


def test_corrupted_download_is_an_error_and_leaves_nothing(tmp_path, corrupted_mirror):
    url, served = corrupted_mirror
    actual = hashlib.sha256(served).hexdigest()
    with pytest.raises(ChecksumError) as error:
        download.ensure("gsm8k", root=tmp_path, mirror=url, registry=REGISTRY)
    message = str(error.value)
    assert f"{url}/gsm8k/test.jsonl" in message
    assert f"expected 21743 bytes with sha256 {GSM8K_TEST.sha256}" in message
    assert f"got 21743 bytes with sha256 {actual}" in message
    assert list((tmp_path / "gsm8k").iterdir()) == []


def test_truncated_download_is_an_error(tmp_path, mirror):
    longer = Source("test.jsonl", None, GSM8K_TEST.size + 1, GSM8K_TEST.sha256)
    with pytest.raises(ChecksumError, match="expected 21744 bytes .* got 21743 bytes"):
        download.fetch(f"{mirror}/gsm8k/test.jsonl", tmp_path / "test.jsonl", longer)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_source_is_one_line_naming_file_folder_url_and_variable(tmp_path):
    offline = _closed_port_url()
    with pytest.raises(DataUnavailableError) as error:
        download.ensure_file("math500", "test.jsonl", tmp_path, offline, REGISTRY)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"math500/test.jsonl is not in {tmp_path / 'math500'}")
    assert f"{offline}/math500/test.jsonl" in message and "$RTC_DATA_DIR" in message
    assert isinstance(error.value, FileNotFoundError)
    assert list((tmp_path / "math500").iterdir()) == []


def test_missing_file_on_the_mirror_is_unavailable(tmp_path, mirror):
    registry = {"gsm8k": (Source("absent.jsonl", "https://example.invalid/absent.jsonl", 1, "0" * 64),)}
    with pytest.raises(DataUnavailableError, match=rf"{mirror}/gsm8k/absent.jsonl failed \(HTTP Error 404"):
        download.ensure("gsm8k", root=tmp_path, mirror=mirror, registry=registry)
    assert list((tmp_path / "gsm8k").iterdir()) == []


def test_wrong_local_copy_is_an_error_and_is_kept(tmp_path, mirror):
    local = tmp_path / "gsm8k" / "test.jsonl"
    local.parent.mkdir()
    local.write_bytes((SHIPPED / "gsm8k" / "test.jsonl").read_bytes()[:-1] + b"X")
    with pytest.raises(ChecksumError, match=rf"{local} is not the registered file: expected sha256 303c16da"):
        download.ensure("gsm8k", root=tmp_path, mirror=mirror, registry=REGISTRY)
    local.write_bytes(b"short")
    with pytest.raises(ChecksumError, match="expected 21743 bytes, got 5; delete it"):
        download.ensure("gsm8k", root=tmp_path, mirror=mirror, registry=REGISTRY)
    assert local.read_bytes() == b"short"


def test_a_local_copy_is_hashed_once(tmp_path):
    local = tmp_path / "test.jsonl"
    shutil.copyfile(SHIPPED / "gsm8k" / "test.jsonl", local)
    download._digest.cache_clear()
    download.verify(local, GSM8K_TEST)
    download.verify(local, GSM8K_TEST)
    info = download._digest.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_reader_downloads_into_the_data_root(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    monkeypatch.setenv(download.MIRROR_ENV_VAR, mirror)
    monkeypatch.setitem(download.DATASETS, "gsm8k", REGISTRY["gsm8k"])
    records = list(gsm8k.generate("test"))
    assert len(records) == 40 and records[0]["answer"] == "18"
    assert (tmp_path / "gsm8k" / "test.jsonl").stat().st_size == 21743


def test_urls_and_mirror(monkeypatch):
    train = download.source_of("gsm8k", "train.jsonl")
    monkeypatch.delenv(download.MIRROR_ENV_VAR, raising=False)
    assert download.url_of("gsm8k", train) == (
        "https://raw.githubusercontent.com/openai/grade-school-math/"
        "3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/train.jsonl"
    )
    assert download.url_of("gsm8k", train, "http://m/") == "http://m/gsm8k/train.jsonl"
    monkeypatch.setenv(download.MIRROR_ENV_VAR, "file:///srv/rtc")
    assert download.url_of("math500", download.source_of("math500", "test.jsonl")) == (
        "file:///srv/rtc/math500/test.jsonl"
    )
    assert download.url_of("stories260K", download.source_of("stories260K", "tok512.model")) is None
    with pytest.raises(KeyError, match="no registered data file gsm8k/dev.jsonl; known: gsm8k/train.jsonl"):
        download.source_of("gsm8k", "dev.jsonl")


def test_registry_sizes_and_hashes():
    sizes = {f"{d}/{s.name}": s.size for d, sources in download.DATASETS.items() for s in sources}
    assert sizes == {
        "gsm8k/train.jsonl": 4166206,
        "gsm8k/test.jsonl": 749738,
        "gsm8k/LICENSE": 1062,
        "math500/test.jsonl": 446564,
        "math500/LICENSE": 1062,
        "prm800k/phase1_test.jsonl": 829105,
        "prm800k/phase2_test.jsonl": 12240719,
        "prm800k/LICENSE": 1062,
        "stories260K/stories260K.bin": 1056540,
        "stories260K/tok512.model": 7522,
        "stories260K/LICENSE": 1063,
    }
    # The math500 and prm800k files come from one pinned commit of openai/prm800k, LFS objects by the media host.
    lfs = [s.url for d in ("math500", "prm800k") for s in download.DATASETS[d] if s.name != "LICENSE"]
    assert all(
        url.startswith(
            "https://media.githubusercontent.com/media/openai/prm800k/7ecc794703b2877f63226f2477a49b34f9b25163/"
        )
        for url in lfs
    )


def test_stories260k_is_the_shipped_copy(tmp_path):
    assert download.shipped_root() == SHIPPED.resolve()
    assert download.ensure("stories260K", root=tmp_path) == SHIPPED.resolve() / "stories260K"
    (tmp_path / "stories260K").mkdir()
    for name in ("stories260K.bin", "tok512.model", "LICENSE"):
        shutil.copyfile(SHIPPED / "stories260K" / name, tmp_path / "stories260K" / name)
    assert download.ensure("stories260K", root=tmp_path) == tmp_path / "stories260K"


@pytest.mark.parametrize("dataset", ["gsm8k", "math500", "prm800k"])
def test_full_data_matches_the_registry(full_data, dataset):
    folder = full_data(dataset, *(s.name for s in download.DATASETS[dataset] if s.name != "LICENSE"))
    for source in download.DATASETS[dataset]:
        if (folder / source.name).exists():
            assert download.verify(folder / source.name, source) == folder / source.name
