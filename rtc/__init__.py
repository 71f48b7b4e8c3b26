"""rtc: Reasoning & Test-time Compute.

    import rtc
    reasoner = rtc.load("WORKDIR")          # a run's workdir, a Hugging Face folder or hub id, a llama2.c .bin
    out = reasoner.generate(["Compute 7+2."], budget_tokens=32)

The API (`rtc.api`) is imported on first use, so `import rtc.data` and the other packages stay light.
"""

_API = ("load", "load_verifier", "Reasoner", "Verifier", "Generation", "Sample", "SearchResult")

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from rtc import api

        return getattr(api, name)
    raise AttributeError(f"module 'rtc' has no attribute {name!r}")
