"""rtc: Reasoning & Test-time Compute, a JAX codebase for reasoning models."""
import setuptools

setuptools.setup(
    name="rtc",
    version="0.1.0",
    description="Reasoning models and test-time compute in JAX: SFT, GRPO, PRMs, compiled tree search.",
    packages=setuptools.find_packages(include=["rtc", "rtc.*"]),
    package_data={"rtc.tokenizer": ["assets/*.model"]},
    python_requires=">=3.11",
    install_requires=[
        "jax==0.10.2",
        "jaxlib==0.10.2",
        "flax==0.12.8",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        "chex==0.1.92",
        "tensorflow-datasets==4.9.10",
        "array-record==0.8.6",
        "sentencepiece==0.2.3",
        "ml-collections==1.1.0",
        "absl-py==2.5.1",
        "numpy==2.4.6",
        "tensorboardX==2.6.5",
        "tqdm==4.70.1",
        "matplotlib==3.11.2",
        "safetensors==0.8.0",
        "tokenizers==0.23.3",
    ],
    extras_require={
        # torch + transformers: the reference implementations the parity tests compare against;
        # nbclient + nbformat + ipykernel: the tests execute the colab/ notebooks in a python3 kernel.
        "test": [
            "pytest==9.2.0",
            "hypothesis==6.170.17",
            "torch==2.13.0",
            "transformers==5.24.0",
            "nbclient==0.11.0",
            "nbformat==5.11.1",
            "ipykernel==7.4.0",
        ],
        "bench": ["torch==2.13.0", "transformers==5.24.0"],
    },
)
