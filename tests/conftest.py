"""Shared fixtures: small models that compile in seconds, and the expensive runs, made once per session
(one prepared copy of each tiny dataset, one tiny SFT policy with an ORM and a PRM trained on it)."""

import gc
import os
import tempfile

import jax
import pytest

from rtc.model import Model, model_config


def pytest_configure(config):
    """One persistent XLA compilation cache for the session, shared with every subprocess a test starts
    (the CLI, fake devices, several processes): the tiny programs compile once, not once per test, and a
    program `release_compiled_programs` dropped is read back, not compiled again.
    `RTC_TEST_COMPILATION_CACHE=0` turns it off; a directory given in `JAX_COMPILATION_CACHE_DIR` is used."""
    if os.environ.get("RTC_TEST_COMPILATION_CACHE", "1") == "0":
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="rtc-test-xla-cache-"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )
    jax.config.update(
        "jax_persistent_cache_min_entry_size_bytes",
        int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
    )


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    """Drops JAX's compiled programs after each test module. XLA:CPU maps every executable's code into
    memory; one process running the whole suite keeps hundreds of search and sampler programs (one beam
    search test alone holds about 1,200 mappings), and past the kernel's limit (`vm.max_map_count`, 65,530
    by default) the next compilation dies in a segmentation fault."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def tiny_model():
    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=128))
    return model, model.init_params(jax.random.key(0))


@pytest.fixture(scope="module")
def tokenizer():
    from rtc.tokenizer.tokenizer import Tokenizer

    return Tokenizer.load()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One prepared copy of each tiny dataset for the whole session (each config has its own folder)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def sft_run(tmp_path_factory, data_dir):
    """A finished tiny SFT run (`quickstart.py:tiny`, evaluated): a policy to start RL or analysis from."""
    from experiments.configs import quickstart
    from rtc import recipes

    config = quickstart.get_config("tiny")
    config.data_dir = str(data_dir)
    workdir = tmp_path_factory.mktemp("sft_run")
    recipes.sft_recipe(config, workdir)
    return workdir


@pytest.fixture(scope="session")
def reward_model_runs(tmp_path_factory, data_dir):
    """`(root, orm results, prm results)`: a tiny ORM run (training its own SFT policy into
    `root/orm/policy`), then a tiny PRM run on that policy that compares itself with the ORM."""
    from experiments.configs import orm, prm
    from rtc import recipes

    root = tmp_path_factory.mktemp("rm_runs")
    orm_config = orm.get_config("tiny")
    orm_config.data_dir = str(data_dir)
    orm_results = recipes.reward_model_recipe(orm_config, root / "orm")
    prm_config = prm.get_config("tiny")
    prm_config.data_dir = str(data_dir)
    prm_config.policy_workdir = str(root / "orm" / "policy")
    prm_config.eval_rm.compare_workdir = str(root / "orm")
    prm_results = recipes.reward_model_recipe(prm_config, root / "prm")
    return root, orm_results, prm_results


@pytest.fixture
def tiny_config(data_dir):
    from helpers import quickstart_config

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    return config


@pytest.fixture(scope="module")
def model(tokenizer):
    from helpers import quickstart_config
    from rtc.pretrained.run_model import build_model

    return build_model(quickstart_config("tiny"), tokenizer.vocab_size)


@pytest.fixture
def full_data():
    """`require(dataset, *names) -> folder`: the data root's checked copy of a full dataset's files (all
    registered ones when no name is given). The test is skipped, never downloading, when one is absent:
    set `$RTC_DATA_DIR` to a folder holding them (or fetch them once with `rtc.data.download.ensure`)."""
    from rtc.data import download, paths

    def require(dataset: str, *names: str):
        root = paths.data_root()
        names = names or tuple(source.name for source in download.DATASETS[dataset])
        missing = [name for name in names if not (root / dataset / name).is_file()]
        if missing:
            pytest.skip(
                f"needs the full {dataset} data ({', '.join(missing)}) under the data root {root}: "
                f"set ${paths.ENV_VAR} to a folder holding {dataset}/"
            )
        return download.ensure(dataset, names, root)

    return require
