"""`rtc serve`: an OpenAI-compatible endpoint for a reasoning model (`rtc.serve.app`).

protocol (request bodies and their checks) -> plan (static sampler settings, route) -> engine (queue,
batches, streaming into `split`) -> responses (OpenAI bodies, usage, cost); jobs keeps background
requests; router predicts which queries are easy.
"""
