"""Task records as model text: the prompt, and the completion in the rtc reasoning format.

`prompt_tokens` is the one prompt builder: SFT, RL, evaluation and search all condition on it, so a
model is trained and queried with the same framing, the tokenizer's own (rtc's plain `question\\n`,
or a pretrained checkpoint's chat template).
"""

from rtc.data.special import ANSWER_END, ANSWER_START, STEP_DELIMITER, THINK_END, THINK_START


def prompt_text(example: dict) -> str:
    """The question followed by the step delimiter: rtc's plain prompt (what its tokenizer is built on)."""
    return example["question"] + STEP_DELIMITER


def completion_text(example: dict) -> str:
    """`<think>step 1\\nstep 2\\n</think><answer>42</answer>`: every step ends with the delimiter."""
    thinking = STEP_DELIMITER.join(example["steps"]) + STEP_DELIMITER
    return THINK_START + thinking + THINK_END + ANSWER_START + example["answer"] + ANSWER_END


def prompt_tokens(tokenizer, example: dict) -> list[int]:
    """The token ids the model conditions on: `[bos]` (when `tokenizer.template.bos`) and
    `tokenizer.prompt(question, system)`, the question framed by the tokenizer's template; an
    example's optional "system" entry is the system message. rtc's tokenizer gives
    `[bos] + encode(prompt_text(example))`."""
    bos = [tokenizer.bos_id] if tokenizer.template.bos else []
    return bos + tokenizer.encode(tokenizer.prompt(example["question"], example.get("system", "")))
