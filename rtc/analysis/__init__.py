"""Analysis and reporting over trained runs: test-time scaling curves, compute-optimal strategy tables,
verifier studies as N grows, plots, and memory per chip."""
