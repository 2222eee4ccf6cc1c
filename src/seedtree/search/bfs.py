"""Breadth-first ToT search (Yao et al. 2023, as SEED runs it): per level, generate k thoughts
for every frontier state, evaluate all new states, keep the b best."""

from __future__ import annotations

from typing import Any

from seedtree.search.config import SearchConfig
from seedtree.search.engine import Engine
from seedtree.search.level import evaluate, generate, select
from seedtree.search.tree import Node, Tree
from seedtree.tasks.base import Task


def bfs(
    tree: Tree, task: Task, example: Any, engine: Engine, cfg: SearchConfig, depth: int
) -> Node:
    """Build the tree from its root; returns the chosen node."""
    frontier = [tree.nodes[0]]
    for _ in range(depth):
        open_ = [n for n in frontier if not n.terminal]
        if not open_:
            break
        # generation: k thoughts per open state, one engine call for the level
        children = generate(tree, open_, task, example, engine, cfg)
        if not children:  # e.g. a proposal with no readable line: keep the frontier
            break
        # evaluation: every new state, one engine call for the level
        evaluate(tree, children, task, example, engine, cfg)
        # selection: the b best among the new states and the finished ones carried along
        frontier = select(children + [n for n in frontier if n.terminal], cfg.b)
    return frontier[0]
