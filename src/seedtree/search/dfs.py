"""Depth-first ToT search with value pruning (ToT's crosswords DFS): expand the best child
first, prune children valued below the threshold, stop at the first leaf (terminal state or the
depth limit) or when the expansion budget is spent."""

from __future__ import annotations

from typing import Any

from seedtree.search.config import SearchConfig
from seedtree.search.engine import Engine
from seedtree.search.level import evaluate, generate
from seedtree.search.tree import Node, Tree
from seedtree.tasks.base import Task


def dfs(
    tree: Tree, task: Task, example: Any, engine: Engine, cfg: SearchConfig, depth: int
) -> Node:
    """Build the tree from its root; returns the chosen node (the first leaf reached, else the
    best-valued node seen)."""
    budget = [cfg.max_expansions]

    def visit(node: Node) -> Node | None:
        node.selected = True
        if node.terminal or node.depth >= depth:
            return node
        if budget[0] == 0:
            return None
        budget[0] -= 1
        children = generate(tree, [node], task, example, engine, cfg)
        evaluate(tree, children, task, example, engine, cfg)
        for child in sorted(children, key=lambda n: (-(n.value or 0.0), n.id)):
            if (child.value or 0.0) < cfg.threshold:
                child.pruned = True
                continue
            leaf = visit(child)
            if leaf is not None:
                return leaf
        return None

    leaf = visit(tree.nodes[0])
    if leaf is not None:
        return leaf
    valued = [n for n in tree.nodes if n.value is not None]
    return max(valued, key=lambda n: (n.value, -n.id)) if valued else tree.nodes[0]
