"""Chain of thought and self-consistency (Wang et al. 2023): whole solutions, no search.

cot: one sample of the task's whole-solution prompt. cot-sc: k samples of it in one engine call,
and the majority answer (`Task.solution_answer`); a tie goes to the answer whose first sample
comes first. Each solution becomes a chain of nodes below the root (its steps as the task reads
them), so `finish` and the report see it like any other tree; the leaf's value is its answer's
share of the votes on the 0-10 scale.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from seedtree.search.config import SearchConfig
from seedtree.search.engine import Engine
from seedtree.search.tree import Node, Tree
from seedtree.tasks.base import Task


def majority(answers: list[str | None]) -> int:
    """The index of the first sample giving the most frequent answer (None does not vote; no
    answer at all -> 0). Ties: the answer seen first wins."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


def _chain(tree: Tree, task: Task, example: Any, text: str) -> Node:
    """The solution's steps as a chain below the root; returns its last node."""
    node = tree.nodes[0]
    steps = task.solution_steps(example, text)
    for i, thought in enumerate(steps):
        node = tree.add(node, thought, task.state_text(example, steps[: i + 1]))
    node.terminal = True
    return node


def sample_solutions(tree: Tree, task: Task, example: Any, engine: Engine, n: int) -> list[Node]:
    """n whole solutions, one engine call; their leaves."""
    [results] = engine.run([task.solution_prompt(example)], n=n, phase="generate", level=1)
    leaves = []
    for result in results:
        leaf = _chain(tree, task, example, result.text)
        leaf.stats |= {"method": engine.method, "thought_tokens": len(result.token_ids)}
        leaves.append(leaf)
    return leaves


def _choose(tree: Tree, task: Task, example: Any, leaves: list[Node]) -> Node:
    answers = [task.solution_answer(example, tree.steps(leaf)) for leaf in leaves]
    for leaf, answer in zip(leaves, answers, strict=True):
        votes = sum(a == answer for a in answers) if answer is not None else 0
        leaf.value = 10.0 * votes / len(leaves)
    chosen = leaves[majority(answers)]
    for node in tree.path(chosen)[1:]:
        node.selected = True
    return chosen


def cot(
    tree: Tree, task: Task, example: Any, engine: Engine, cfg: SearchConfig, depth: int
) -> Node:
    """One whole solution; returns its leaf."""
    return _choose(tree, task, example, sample_solutions(tree, task, example, engine, 1))


def cot_sc(
    tree: Tree, task: Task, example: Any, engine: Engine, cfg: SearchConfig, depth: int
) -> Node:
    """k whole solutions; returns the leaf of the first one giving the majority answer."""
    return _choose(tree, task, example, sample_solutions(tree, task, example, engine, cfg.k))
