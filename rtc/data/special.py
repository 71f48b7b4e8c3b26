"""The special strings of the reasoning format, shared by data formatting and the tokenizer.

A completion reads `<think>step 1\nstep 2\n</think><answer>42</answer>`: the thinking trace, one
reasoning step per line (the step delimiter is the newline), then the answer block.
"""

THINK_START = "<think>"
THINK_END = "</think>"
ANSWER_START = "<answer>"
ANSWER_END = "</answer>"
STEP_DELIMITER = "\n"

# Each is one token in the rtc tokenizer (sentencepiece user-defined symbols).
SPECIAL_SYMBOLS = (THINK_START, THINK_END, ANSWER_START, ANSWER_END, STEP_DELIMITER)
