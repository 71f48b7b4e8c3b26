import io

import numpy as np

from rtc.sampling.stream import StreamPrinter
from rtc.tokenizer.tokenizer import Tokenizer


def test_stream_printer_prints_in_step_order_and_whole_characters():
    tokenizer = Tokenizer.load()
    text = "<think>7+8=15\n</think><answer>15 ✓</answer>"
    ids = tokenizer.encode(text)
    out = io.StringIO()
    printer = StreamPrinter(tokenizer.decode, row=1, out=out)
    order = list(range(len(ids)))
    order[2], order[3] = order[3], order[2]  # one callback arrives out of order
    for step in order:
        printer(step, np.array([0, ids[step]]), np.array([True, True]))
    printer(len(ids), np.array([0, 0]), np.array([True, False]))  # row done: ignored
    assert out.getvalue() == text
