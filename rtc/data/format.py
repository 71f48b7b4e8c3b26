"""Task records as model text: the prompt, and the completion in the rtc reasoning format."""

from rtc.data.special import ANSWER_END, ANSWER_START, STEP_DELIMITER, THINK_END, THINK_START


def prompt_text(example: dict) -> str:
    """The question followed by the step delimiter."""
    return example["question"] + STEP_DELIMITER


def completion_text(example: dict) -> str:
    """`<think>step 1\\nstep 2\\n</think><answer>42</answer>`: every step ends with the delimiter."""
    thinking = STEP_DELIMITER.join(example["steps"]) + STEP_DELIMITER
    return THINK_START + thinking + THINK_END + ANSWER_START + example["answer"] + ANSWER_END


def prompt_tokens(tokenizer, example: dict) -> list[int]:
    """The token ids the model conditions on, `[bos] + prompt` (as in SFT)."""
    return [tokenizer.bos_id] + tokenizer.encode(prompt_text(example))
