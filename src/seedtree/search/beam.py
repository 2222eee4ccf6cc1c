"""Step-level beam search (as llm-reasoners' BeamSearch and search-and-learn's beam search define
it): b beams; each step every active beam is expanded into k thoughts, all new states are valued,
finished ones (terminal) leave the beam for the finished pool, and the b best unfinished states
are the next beams. It stops when b solutions are finished, no beam is left or at the depth
limit; the answer is the best-valued finished state (else the best beam left).

Unlike BFS, a finished state leaves the beam and frees its slot for an unfinished one."""

from __future__ import annotations

from typing import Any

from seedtree.search.config import SearchConfig
from seedtree.search.engine import Engine
from seedtree.search.level import evaluate, generate, select
from seedtree.search.tree import Node, Tree
from seedtree.tasks.base import Task


def _best(nodes: list[Node]) -> Node:
    return min(nodes, key=lambda n: (-(n.value or 0.0), n.id))


def beam(
    tree: Tree, task: Task, example: Any, engine: Engine, cfg: SearchConfig, depth: int
) -> Node:
    """Build the tree from its root; returns the chosen node."""
    beams, finished = [tree.nodes[0]], []
    for _ in range(depth):
        # generation: k thoughts per beam, one engine call for the step
        children = generate(tree, beams, task, example, engine, cfg)
        if not children:
            break
        # evaluation: every new state, one engine call for the step
        evaluate(tree, children, task, example, engine, cfg)
        # selection: finished states leave the beam; the b best unfinished ones stay
        finished += [n for n in children if n.terminal]
        beams = select([n for n in children if not n.terminal], cfg.b)
        if not beams or len(finished) >= cfg.b:
            break
    final = _best(finished) if finished else _best(beams or [tree.nodes[0]])
    final.selected = True
    return final
