"""rtc: Reasoning & Test-time Compute, a JAX codebase for reasoning models.

Dependencies are ranges: the lower bound is the release the test suite passed with (constraints.txt holds
that exact set, `make setup` installs it), the upper bound the next release that may change the API (the next
major, or the next minor of the 0.x packages whose minors do). numpy's floor is jax's own, so that an install
into an environment that already imported numpy (a Colab runtime) keeps its numpy.
"""

from pathlib import Path

import setuptools

setuptools.setup(
    name="rtc",
    version="0.1.0",
    description="Reasoning models and test-time compute in JAX: SFT, GRPO, PRMs, compiled tree search.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    # experiments: the configs the CLI and the notebooks import (`experiments.configs.quickstart`) and the
    # experiment scripts, so that an installed rtc runs them from any folder.
    packages=setuptools.find_packages(include=["rtc", "rtc.*", "experiments", "experiments.*"]),
    package_data={"rtc.tokenizer": ["assets/*.model"]},
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10.2,<0.11",
        "jaxlib>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "tensorflow-datasets>=4.9.10,<5",
        "array-record>=0.8.6,<1",  # the file format of the prepared TFDS splits (rtc/data/tfds_builders.py)
        "etils[epath]>=1.15,<2",
        "sentencepiece>=0.2.3,<0.3",
        "tokenizers>=0.23.3,<0.24",
        "safetensors>=0.8.0,<0.9",
        "huggingface_hub>=2.4,<3",
        "jinja2>=3.1.6,<4",  # renders checkpoints' chat templates; older releases have sandbox escapes
        "math-verify[antlr4-13-2]>=0.9,<0.10",  # the ANTLR runtime its LaTeX parser was built for
        "ml-collections>=1.1.0,<2",
        "absl-py>=2.5.1,<3",
        "numpy>=2.0,<3",
        "tensorboardX>=2.6.5,<3",
        "tqdm>=4.70.1,<5",
        "matplotlib>=3.11.2,<4",
        "fastapi>=0.165,<0.166",  # `rtc serve`: the OpenAI-compatible endpoint (rtc/serve/)
        "uvicorn>=0.55,<0.56",
    ],
    extras_require={
        # torch + transformers: the reference implementations the parity tests compare against;
        # nbclient + nbformat + ipykernel: the tests execute the colab/ notebooks in a python3 kernel.
        "test": [
            "pytest>=9.2,<10",
            "hypothesis>=6.170,<7",
            "torch>=2.13,<3",
            "transformers>=5.24,<6",
            "nbclient>=0.11,<0.12",
            "nbformat>=5.11,<6",
            "ipykernel>=7.4,<8",
            "openai>=3.60,<4",  # the official client the serving tests drive the server with
        ],
        "bench": ["torch>=2.13,<3", "transformers>=5.24,<6"],
        # remote workdirs (--workdir=gs://... or s3://...): etils.epath reaches them through fsspec
        "gcs": ["gcsfs"],
        "s3": ["s3fs"],
    },
)
