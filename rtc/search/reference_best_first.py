"""Plain-Python reference of `best_first.search_best_first`, built from `rtc.search.reference`'s pieces.

Each problem keeps a list of N slots, each a `Beam` or EMPTY; every iteration pops the best open slot,
re-reads its whole prefix to write one step in M copies (`reference.write_step`), re-scores them from
scratch (`reference.rescore`) and inserts them with `frontier_insert`. It shares no code with the compiled
frontier and checks it (tests/test_search_best_first.py). Randomness as in `rtc.search.reference`: the M
children of each problem are drawn over `R = B * M` rows, iteration `i` keyed by `fold_in(rng, i)`.
"""

import jax
import numpy as np

from rtc.search.config import SearchConfig
from rtc.search.reference import (
    Beam,
    Models,
    empty_output,
    opens_thinking,
    rescore,
    write_problem,
    write_step,
)
from rtc.search.tree_search import SearchOutput

EMPTY = Beam(duplicate=True)  # an empty slot: never popped, never chosen, blank in the output


def priorities(beams: list[Beam]) -> list[float]:
    """Each slot's priority: the path's score (float32), -inf where empty."""
    return [-np.inf if beam.duplicate else float(np.float32(beam.score)) for beam in beams]


def frontier_insert(priority: list[float], children: list[float]) -> tuple[list[bool], list[int]]:
    """(kept: each slot keeps its path, dest: each child's slot, F where dropped): the F best of the
    frontier's paths and the children survive (ties: a slot before a child, then the lower index); the kept
    children fill the slots left free in slot order. -inf: empty."""
    f, both = len(priority), priority + children
    ranked = sorted(range(len(both)), key=lambda i: -both[i])[:f]  # stable: ties keep index order
    kept = {i for i in ranked if both[i] > -np.inf}
    free = [s for s in range(f) if s not in kept]
    dest = [f] * len(children)
    for j, slot in zip([j for j in range(len(children)) if f + j in kept], free):
        dest[j] = slot
    return [s in kept for s in range(f)], dest


def best_first_problem(models: Models, prompt: list[int], b: int, rng, cfg: SearchConfig):
    """One problem's best-first search: (frontier, iterations run, generated tokens, verifier tokens,
    non-finite readings). Iteration `i` pops the best open slot (the lowest among equals) and writes one
    step in M copies of it with `fold_in(rng, i)`; it stops when the best slot is finished or none is open."""
    frontier = [Beam(thinking=opens_thinking(prompt, cfg.budget))] + [EMPTY] * (cfg.n - 1)
    generated, verified, nan = 0, len(prompt) if models.verifier is not None else 0, 0
    step = 0
    while step < cfg.depth:
        priority = priorities(frontier)
        open_ = [-np.inf if beam.finished else p for beam, p in zip(frontier, priority)]
        if frontier[int(np.argmax(priority))].finished or max(open_) == -np.inf:
            break
        popped = int(np.argmax(open_))
        parent, frontier[popped] = frontier[popped], EMPTY
        step_key = jax.random.fold_in(rng, step)
        children, lengths = write_step(models, prompt, [parent] * cfg.m, b * cfg.m, step_key, cfg.rule, cfg)
        children = rescore(models, prompt, children, lengths, cfg)
        generated += sum(lengths)
        verified += sum(lengths) if models.verifier is not None else 0
        nan += sum(child.nan - parent.nan for child in children)
        kept, dest = frontier_insert(priorities(frontier), priorities(children))
        frontier = [beam if keep else EMPTY for beam, keep in zip(frontier, kept)]
        for child, slot in zip(children, dest):
            if slot < cfg.n:
                frontier[slot] = child
        step += 1
    return frontier, step, generated, verified, nan


def reference_best_first(
    policy, params, verifier, verifier_params, prompt_tokens, prompt_lengths, rng, cfg: SearchConfig
) -> SearchOutput:
    """`best_first.search_best_first`'s result, every prefix re-read at every step; numpy fields."""
    prompt_tokens, prompt_lengths = np.asarray(prompt_tokens), np.asarray(prompt_lengths)
    b_count = prompt_tokens.shape[0]
    width = prompt_tokens.shape[1] + cfg.max_path_tokens
    models = Models(policy, params, verifier, verifier_params, b_count * cfg.m, width)
    out = empty_output(b_count, cfg)
    steps = 0
    for b in range(b_count):
        prompt = prompt_tokens[b, : prompt_lengths[b]].tolist()
        frontier, steps_b, *counts = best_first_problem(models, prompt, b, rng, cfg)
        for name, count in zip(("generated_tokens", "verifier_tokens", "verifier_nan"), counts):
            out[name][b] = count
        steps = max(steps, steps_b)
        write_problem(out, b, frontier)
    return SearchOutput(steps=np.int32(steps), **out)
