"""Streaming: print a completion while the compiled sampler produces it (the "thinking..." display)."""

import sys
from typing import Callable, TextIO

import numpy as np


class StreamPrinter:
    """A sampler `stream` callback that prints one row's text as its tokens arrive.

    Tokens are placed by their step (callbacks may arrive out of order); the whole prefix is decoded
    each time and only new characters are printed, so characters spanning tokens come out whole.
    Reuse one instance (call `reset()` between prompts): a new callback recompiles the sampler.
    """

    def __init__(self, decode: Callable[[list[int]], str], row: int = 0, out: TextIO = sys.stdout):
        self.decode, self.row, self.out = decode, row, out
        self.reset()

    def reset(self):
        self.tokens: list[int] = []
        self.pending: dict[int, int] = {}
        self.printed = ""

    def __call__(self, step, tokens, live):
        if not np.asarray(live)[self.row]:
            return
        self.pending[int(step)] = int(np.asarray(tokens)[self.row])
        while len(self.tokens) in self.pending:
            self.tokens.append(self.pending.pop(len(self.tokens)))
        text = self.decode(self.tokens).rstrip("\ufffd")  # hold back a character still incomplete
        if text.startswith(self.printed):
            self.out.write(text[len(self.printed) :])
            self.out.flush()
            self.printed = text
