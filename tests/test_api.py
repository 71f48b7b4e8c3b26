"""`rtc.load`, `Reasoner.generate` and `Reasoner.search` as a user calls them from Python."""

from pathlib import Path

import numpy as np
import pytest

import rtc
from experiments.configs import export as export_config
from rtc import api
from rtc.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = ["Compute 7+2.", "Compute 3+5."]


@pytest.fixture(scope="module")
def thinker(tmp_path_factory, data_dir):
    """A tiny model trained long enough (160 SFT steps on level-1 problems) to open and close its
    thinking block: the budget tests need thinking to cap."""
    from helpers import quickstart_config

    from rtc import recipes

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    config.task.levels = (1,)
    config.sft.update(num_steps=160, checkpoint_every=160, log_every=160)
    workdir = tmp_path_factory.mktemp("thinker")
    recipes.sft_recipe(config, workdir)
    return rtc.load(workdir)


def readme_example() -> str:
    """The Python block of the README's "From Python" section, as a user copies it."""
    section = (REPO / "README.md").read_text().split("## From Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_example(sft_run, capsys):
    code = readme_example()
    assert 'rtc.load("workdir/quickstart")' in code and len(code.strip().splitlines()) <= 10
    namespace = {}
    # the README's own text (not model output), pointed at the session's tiny run instead of the quickstart's
    exec(compile(code.replace('"workdir/quickstart"', repr(str(sft_run))), "README.md", "exec"), namespace)
    results, reasoner = namespace["results"], namespace["reasoner"]

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines[:4]] == ["thinking", "answer", "thinking", "answer"]
    for r in results:
        assert r.thinking_tokens <= 32
        assert r.text == reasoner.tokenizer.decode(r.samples[0].tokens)
        assert len(r.samples) == 1 and r.num_tokens >= r.thinking_tokens + r.answer_tokens


def test_generation_reads_thinking_answer_and_counts(thinker):
    r = thinker.generate("Compute 7+2.")
    tok = thinker.tokenizer
    ids = list(r.samples[0].tokens)
    assert ids[0] == tok.think_start_id and ids[-1] in thinker.stop_ids and r.finished
    end = ids.index(tok.think_end_id)
    assert r.thinking_tokens == end - 1  # every token between <think> and </think>
    assert r.answer_tokens == len(ids) - end - 1
    assert r.text == tok.decode(ids)
    assert r.thinking == tok.decode(ids[1:end]) and r.text.startswith("<think>" + r.thinking + "</think>")
    assert r.answer == r.text.split("<answer>")[1].split("</answer>")[0].strip()


def test_budget_tokens_caps_thinking(thinker):
    free = thinker.generate(QUESTIONS)
    assert min(r.thinking_tokens for r in free) > 2  # unbudgeted, it thinks for more than 2 tokens
    tok = thinker.tokenizer
    for r in thinker.generate(QUESTIONS, budget_tokens=2):
        assert r.thinking_tokens == 2
        assert r.samples[0].tokens[0] == tok.think_start_id and r.samples[0].tokens[3] == tok.think_end_id
    sampled = thinker.generate(QUESTIONS, budget_tokens=2, n=3, temperature=1.0)
    assert [len(r.samples) for r in sampled] == [3, 3]
    assert max(s.thinking_tokens for r in sampled for s in r.samples) <= 2


def test_reasoning_effort_low_thinks_less_than_high(thinker):
    # max_new_tokens=24: low caps thinking at int(0.25 * (24 - 16)) = 2 tokens, high at 8.
    free = thinker.generate("Compute 7+2.", max_new_tokens=24)
    low = thinker.generate("Compute 7+2.", max_new_tokens=24, reasoning_effort="low")
    high = thinker.generate("Compute 7+2.", max_new_tokens=24, reasoning_effort="high")
    assert low.thinking_tokens == 2
    assert high.thinking_tokens == min(free.thinking_tokens, 8) > low.thinking_tokens


def test_stream_receives_the_first_sample_as_it_is_generated(thinker):
    pieces = []
    r = thinker.generate(QUESTIONS, temperature=0.7, seed=3, stream=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == r[0].text


def test_search_with_a_prm_returns_scored_candidates_and_the_argmax(reward_model_runs):
    root = reward_model_runs[0]
    reasoner = rtc.load(root / "prm")  # a reward-model run loads the policy it judged
    results = reasoner.search(
        QUESTIONS, verifier=root / "prm", strategy="beam", n=4, max_new_tokens=32, step_tokens=8
    )
    assert [r.prompt for r in results] == QUESTIONS
    for r in results:
        assert len(r.candidates) == 4 and len(r.scores) == 4
        scores = np.array(r.scores)
        assert np.all((scores >= 0) & (scores <= 1))
        finished = np.array([c.finished for c in r.candidates])
        rank = np.where(np.array(r.duplicate), -np.inf, scores + 2.0 * finished)
        assert r.best == int(np.argmax(rank)) and r.answer == r.candidates[r.best].answer


def test_majority_search_votes_over_samples(thinker):
    r = thinker.search("Compute 7+2.", strategy="majority", n=8, temperature=1.0, seed=1)
    answers = [c.answer for c in r.candidates]
    assert len(answers) == 8
    for answer, share in zip(answers, r.scores):
        assert share == (0.0 if answer is None else answers.count(answer) / 8)
    top = max(r.scores)
    assert r.best == r.scores.index(top) and r.answer == answers[r.best]


def test_search_with_the_policy_checking_itself(thinker):
    """`verifier="self"`: beam search scored by the policy's own token probabilities (no second model)."""
    r = thinker.search(
        "Compute 7+2*3.", verifier="self", strategy="beam", n=4, max_new_tokens=32, step_tokens=8
    )
    scores = np.array(r.scores)
    assert len(r.candidates) == 4 and np.all((scores > 0) & (scores <= 1))
    finished = np.array([c.finished for c in r.candidates])
    rank = np.where(np.array(r.duplicate), -np.inf, scores + 2.0 * finished)
    assert r.best == int(np.argmax(rank))


@pytest.fixture(scope="module")
def exported(thinker, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    config = export_config.get_config()
    config.out_dir = str(out)
    api.export_run(config, thinker.source)
    return out


def test_an_exported_folder_generates_the_same_greedy_text(thinker, exported):
    again = rtc.load(exported)
    assert [r.text for r in again.generate(QUESTIONS)] == [r.text for r in thinker.generate(QUESTIONS)]


def test_a_hub_id_is_downloaded_with_snapshot_download(thinker, exported, monkeypatch):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo_id: asked.append(repo_id) or exported
    )
    reasoner = rtc.load("someone/tiny-reasoner")
    assert asked == ["someone/tiny-reasoner"]
    assert reasoner.generate("Compute 7+2.").text == thinker.generate("Compute 7+2.").text


def test_a_hub_download_failure_is_one_clear_error(monkeypatch):
    import huggingface_hub

    def offline(repo_id):
        raise OSError("no internet")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        ConfigError, match="someone/missing is not a local path, and downloading it from the "
    ):
        rtc.load("someone/missing")
    with pytest.raises(ConfigError, match="no/such/path does not exist"):
        rtc.load("no/such/path")


def test_bad_input_is_a_clear_error(thinker):
    with pytest.raises(ConfigError, match="texts must be a non-empty list of strings"):
        thinker.generate([])
    too_long = "Compute " + "+".join(["1"] * 200) + "."
    with pytest.raises(ConfigError, match=r"text 1 is \d+ tokens as a prompt, .* context of 256 tokens"):
        thinker.generate(["Compute 1+1.", too_long])
    with pytest.raises(ConfigError, match="exceeds the model's context of 256 tokens"):
        thinker.generate("Compute 1+1.", max_new_tokens=250)
    with pytest.raises(ConfigError, match="needs a verifier"):
        thinker.search("Compute 1+1.", strategy="beam")
    with pytest.raises(ConfigError, match="unknown search strategy 'greedy'"):
        thinker.search("Compute 1+1.", strategy="greedy")


def test_confidence_strategies_vote_by_trace_confidence_without_a_verifier(thinker):
    r = thinker.search("Compute 7+2.", strategy="confidence_weighted", n=8, max_new_tokens=48, seed=1)
    assert len(r.candidates) == 8 and all(s > 0 for s in r.scores)  # C = -mean top-k log-prob > 0
    totals = {}  # the confidence-weighted vote, by hand: each finished answer's summed confidence
    for c, s in zip(r.candidates, r.scores):
        if c.finished and c.answer is not None:
            totals[c.answer] = totals.get(c.answer, 0.0) + s
    assert totals and r.answer == max(totals, key=totals.get)
    # consensus with tau = 0.01: the first round of 4 traces already agrees, so only 4 of 8 are drawn
    c = thinker.search(QUESTIONS, strategy="consensus", n=8, tau=0.01, max_new_tokens=48, seed=1)
    assert [len(x.candidates) for x in c] == [4, 4] and [x.prompt for x in c] == QUESTIONS
    d = thinker.search("Compute 3+5.", strategy="deepconf_low", n=8, max_new_tokens=48, seed=1)
    assert len(d.candidates) == 8 and d.answer == d.chosen.answer
    with pytest.raises(ConfigError, match="deepconf_high votes by the model's own confidence"):
        thinker.search("Compute 1+1.", strategy="deepconf_high", verifier="runs/prm")
