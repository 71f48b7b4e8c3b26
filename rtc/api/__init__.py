"""The Python API: load a reasoning model from anywhere, generate with a thinking budget, search with a verifier.

    import rtc

    reasoner = rtc.load("runs/quickstart")            # a run's workdir, a checkpoint folder or a hub id
    out = reasoner.generate(["Compute 7+2."], budget_tokens=32)
    print(out[0].thinking, out[0].answer, out[0].thinking_tokens)
    best = reasoner.search(["Compute 7+2."], verifier="runs/prm", strategy="beam", n=8)

`generate` runs every text (times `n` samples) as one batch through the compiled sampler
(`rtc.sampling.sampler`): prompts are padded to a length bucket and the batch to a power of two, so
calls of similar size reuse one program. `search` runs the compiled search (`rtc.search.runner`:
best-of-N, PRM beam search, DVTS, MCTS), samples and takes the majority vote (`rtc.eval.voting`), or runs
a verifier-free confidence strategy (DeepConf, Fu et al. 2025: `rtc.search.config`).
"""

from pathlib import Path

from rtc import recipes
from rtc.errors import ConfigError
from rtc.pretrained.checkpoint import load_pretrained
from rtc.pretrained.export import export

from rtc.api.reasoner import DEFAULT_MAX_NEW_TOKENS, DEFAULT_STEP_TOKENS, SEARCH_STRATEGIES, Reasoner
from rtc.api.results import Generation, Sample, SearchResult, Verifier, load_verifier

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_STEP_TOKENS",
    "SEARCH_STRATEGIES",
    "Generation",
    "Reasoner",
    "Sample",
    "SearchResult",
    "Verifier",
    "export_run",
    "load",
    "load_verifier",
]


def _is_workdir(path: Path) -> bool:
    return path.is_dir() and (path / recipes.CONFIG_FILE).is_file() and (path / "checkpoints").is_dir()


def _download(hub_id: str) -> Path:
    """The local snapshot of a Hugging Face hub model `owner/name`."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=hub_id))
    except Exception as error:  # offline, unknown repo, gated: the hub raises many kinds
        raise ConfigError(
            f"{hub_id} is not a local path, and downloading it from the Hugging Face Hub failed: "
            f"{type(error).__name__}: {error}"
        ) from error


def load(source: str | Path, *, step: int | None = None) -> Reasoner:
    """A `Reasoner` from any of:

    - an rtc run's workdir, local or a URL such as `gs://bucket/run` (SFT, GRPO, PPO: its trained
      policy; ORM / PRM: the policy it judged), at checkpoint `step` (default the latest);
    - a pretrained checkpoint: a Hugging Face folder (config.json + safetensors, e.g. one written by
      the `export` mode) or a llama2.c `.bin` with its tokenizer beside it;
    - a Hugging Face hub id (`owner/name`), fetched with `huggingface_hub.snapshot_download`.
    """
    path = Path(source).expanduser()
    if "://" in str(source) or _is_workdir(path):  # a URL (gs://, s3://) is a workdir: recipes reads it
        run = str(source) if "://" in str(source) else path
        config = recipes.read_config(run)
        if config.mode in ("orm", "prm"):
            run = config.policy_workdir or f"{str(run).rstrip('/')}/policy"
        config, tokenizer, model, params = recipes.load_run(run, step)
        return Reasoner(model, params, tokenizer, config, str(source))
    if step is not None:
        raise ConfigError(f"step={step} applies to an rtc run's workdir; {source} is a checkpoint")
    if path.is_dir() and (path / recipes.CONFIG_FILE).is_file() and "mode" in recipes.read_config(path):
        raise ConfigError(f"{source} is an rtc run without checkpoints: it has not trained yet")
    if not path.exists():
        if path.is_absolute() or str(source).count("/") != 1:
            raise ConfigError(f"{source} does not exist (nor is it a hub id of the form owner/name)")
        path = _download(str(source))
    tokenizer, model, params = load_pretrained(path)
    return Reasoner(model, params, tokenizer, None, str(source))


def export_run(config, workdir: str | Path) -> Path:
    """CLI mode `export`: the run in `workdir` (its checkpoint `config.step`, default the latest) as a
    Hugging Face folder in `config.out_dir` (default WORKDIR/hf), tokenizer included."""
    out_dir = str(config.out_dir or f"{str(workdir).rstrip('/')}/hf")
    if "://" in out_dir:  # the safetensors writer and transformers read local folders
        raise ConfigError(f"export writes a local folder; {out_dir} is remote: set --config.out_dir=DIR")
    out_dir = Path(out_dir).expanduser()
    _, tokenizer, model, params = recipes.load_run(workdir, config.step)
    export(
        out_dir, model.config, params, tokenizer, dtype=config.dtype, max_shard_bytes=config.max_shard_bytes
    )
    print(
        f"exported {workdir} ({model.config.num_params / 1e6:.2f}M parameters, {config.dtype}) to {out_dir}"
    )
    return out_dir
