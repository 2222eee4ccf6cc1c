"""The three steps of a search level, shared by every tree algorithm: generate, evaluate, select.

Each step sends ALL its prompts of the level to the engine in one call, so the scheduler sees
every branch at once (k samples of one prompt, or one prompt per new state).
"""

from __future__ import annotations

import statistics
from typing import Any

from seedtree.search.config import SearchConfig
from seedtree.search.engine import Engine
from seedtree.search.logprob import expected_value
from seedtree.search.tree import Node, Tree
from seedtree.tasks.base import Task


def _record(node: Node, key: str, results, method: str) -> None:
    node.stats["method"] = method
    node.stats[f"{key}_tokens"] = node.stats.get(f"{key}_tokens", 0) + sum(
        len(r.token_ids) or r.stats.new_tokens
        for r in results  # an endpoint sends no ids
    )
    node.stats[f"{key}_s"] = node.stats.get(f"{key}_s", 0.0) + max(
        (r.stats.wall_s for r in results), default=0.0
    )


def generate(
    tree: Tree, parents: list[Node], task: Task, example: Any, engine: Engine, cfg: SearchConfig
) -> list[Node]:
    """k children per parent: k samples of the thought prompt, or k lines of one proposal."""
    mode = cfg.generation or task.generation
    level = parents[0].depth + 1
    steps = [tree.steps(p) for p in parents]
    if mode == "sample":
        prompts = [task.thought_prompt(example, s) for s in steps]
        outputs = engine.run(prompts, n=cfg.k, phase="generate", level=level)
        thoughts = [
            [task.parse_thought(example, s, r.text) for r in rs]
            for s, rs in zip(steps, outputs, strict=True)
        ]
    else:
        prompts = [task.propose_prompt(example, s, cfg.k) for s in steps]
        outputs = engine.run(prompts, n=1, phase="generate", level=level)
        thoughts = [
            task.parse_proposals(example, s, rs[0].text, cfg.k)
            for s, rs in zip(steps, outputs, strict=True)
        ]
    children = []
    for parent, s, rs, ts in zip(parents, steps, outputs, thoughts, strict=True):
        for j, thought in enumerate(ts):
            child = tree.add(parent, thought, task.state_text(example, (*s, thought)))
            child.terminal = task.is_terminal(example, (*s, thought))
            _record(child, "thought", rs[j : j + 1] if mode == "sample" else rs, engine.method)
            children.append(child)
    return children


def evaluate(
    tree: Tree, nodes: list[Node], task: Task, example: Any, engine: Engine, cfg: SearchConfig
) -> None:
    """Set each node's value: the mean of n_evaluate parsed values (unparseable -> 0, counted),
    its share of n_evaluate votes among the nodes (ToT's vote), scaled to 0-10, or the expected
    score of the task's value labels under the target's probabilities (logprob)."""
    if not nodes:
        return
    mode = cfg.evaluation or task.evaluation
    level = nodes[0].depth
    steps = [tree.steps(n) for n in nodes]
    if mode == "logprob":
        _evaluate_logprob(nodes, steps, task, example, engine, level)
        return
    if mode == "value":
        prompts = [task.value_prompt(example, s) for s in steps]
        outputs = engine.run(prompts, n=cfg.n_evaluate, phase="evaluate", level=level)
        for node, s, rs in zip(nodes, steps, outputs, strict=True):
            parsed = [task.parse_value(r.text) for r in rs]
            node.value_texts = [r.text for r in rs]
            node.unparsed = sum(v is None for v in parsed)
            value = statistics.mean(0.0 if v is None else v for v in parsed)
            node.value = task.adjust_value(example, s, value)
            _record(node, "eval", rs, engine.method)
        return
    [rs] = engine.run(
        [task.vote_prompt(example, steps)], n=cfg.n_evaluate, phase="evaluate", level=level
    )
    votes = [task.parse_vote(r.text, len(nodes)) for r in rs]
    for i, (node, s) in enumerate(zip(nodes, steps, strict=True)):
        share = 10.0 * sum(v == i for v in votes) / len(votes)  # on the 0-10 value scale
        node.value = task.adjust_value(example, s, share)
        node.value_texts = [r.text for r in rs]
        _record(node, "eval", rs, engine.method)
    nodes[0].unparsed = sum(v is None for v in votes)  # counted once for the vote


def _evaluate_logprob(
    nodes: list[Node], steps: list, task: Task, example: Any, engine: Engine, level: int
) -> None:
    """One forward per value prompt (`search.logprob`); labels holding no mass -> 0, counted."""
    scores = task.value_labels()
    prompts = [task.value_prompt(example, s) for s in steps]
    masses = engine.score(prompts, list(scores), level)
    for node, s, probabilities in zip(nodes, steps, masses, strict=True):
        value = expected_value(probabilities, scores)
        node.value_texts = [" ".join(f"{k}:{p:.4g}" for k, p in probabilities.items())]
        node.unparsed = int(value is None)
        node.value = task.adjust_value(example, s, 0.0 if value is None else value)
        node.stats["method"] = engine.method


def select(candidates: list[Node], b: int) -> list[Node]:
    """The b best by value (ties: the earlier node), marked selected."""
    ranked = sorted(candidates, key=lambda n: (-(n.value or 0.0), n.id))[:b]
    for node in ranked:
        node.selected = True
    return ranked
