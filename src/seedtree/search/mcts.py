"""Monte Carlo tree search in the RAP style (Hao et al. 2023, "Reasoning with Language Model is
Planning with World Model"), over the same levels as BFS.

Each of `iterations` iterations:
1) selection: from the root, the child maximising UCT = Q + c * sqrt(ln N(parent) / N(child))
   (Q = mean reward, N = visits, c = `exploration`; an unvisited child first), down to a state
   not expanded yet; ties go to the lower node id;
2) expansion: k thoughts of that state (one engine call), all valued (one engine call), unless
   it is terminal, a dead end or at the depth limit; the best-valued new state is the one
   simulated;
3) simulation: `rollout="value"`: the reward is that state's value; `"greedy"`: expand the
   best-valued child again and again to a terminal state (or the depth limit), and the reward
   is the value of the state reached (the nodes of the rollout join the tree);
4) backpropagation: every state on the path gets one visit and the reward (value / 10, in [0, 1]).
The answer follows the most visited child from the root (ties: higher Q, then the lower id).
Nothing is random: at T > 0 the thoughts are the engine's seeded samples, so the tree is a
function of the seed, the same for every method. Visits and rewards live in `node.stats`.
"""

from __future__ import annotations

import math
from typing import Any

from seedtree.search.config import SearchConfig
from seedtree.search.engine import Engine
from seedtree.search.level import evaluate, generate
from seedtree.search.tree import Node, Tree
from seedtree.tasks.base import Task


def visits(node: Node) -> int:
    return node.stats.get("visits", 0)


def q(node: Node) -> float:
    """The mean reward of the node's visits (0 unvisited)."""
    n = visits(node)
    return node.stats.get("reward", 0.0) / n if n else 0.0


def uct(node: Node, parent_visits: int, exploration: float) -> float:
    n = visits(node)
    if n == 0:
        return math.inf
    return q(node) + exploration * math.sqrt(math.log(max(parent_visits, 1)) / n)


def uct_child(tree: Tree, node: Node, exploration: float) -> Node:
    """The child with the highest UCT score; ties: the lower node id."""
    children = [tree.nodes[i] for i in node.children]
    return max(children, key=lambda c: (uct(c, visits(node), exploration), -c.id))


def backpropagate(path: list[Node], reward: float) -> None:
    for node in path:
        node.stats["visits"] = visits(node) + 1
        node.stats["reward"] = node.stats.get("reward", 0.0) + reward


def _best_valued(nodes: list[Node]) -> Node:
    return min(nodes, key=lambda n: (-(n.value or 0.0), n.id))


def _expand(tree, node, task, example, engine, cfg, depth) -> Node | None:
    """k valued children of `node` and the best-valued one; None when it cannot be expanded
    (terminal, a dead end, at the depth limit, or no readable thought: then a dead end)."""
    if node.terminal or node.stats.get("dead") or node.depth >= depth or node.children:
        return None
    children = generate(tree, [node], task, example, engine, cfg)
    if not children:
        node.stats["dead"] = True
        return None
    evaluate(tree, children, task, example, engine, cfg)
    return _best_valued(children)


def _iterate(tree, task, example, engine, cfg, depth) -> None:
    # 1) selection
    path = [tree.nodes[0]]
    while path[-1].children:
        path.append(uct_child(tree, path[-1], cfg.exploration))
    # 2) expansion
    child = _expand(tree, path[-1], task, example, engine, cfg, depth)
    if child is not None:
        path.append(child)
        # 3) simulation: greedy rollout to a terminal state
        while cfg.rollout == "greedy" and child is not None:
            child = _expand(tree, path[-1], task, example, engine, cfg, depth)
            if child is not None:
                path.append(child)
    # 4) backpropagation
    backpropagate(path, (path[-1].value or 0.0) / 10.0)


def most_visited_path(tree: Tree) -> list[Node]:
    path = [tree.nodes[0]]
    while path[-1].children:
        children = [tree.nodes[i] for i in path[-1].children]
        path.append(max(children, key=lambda c: (visits(c), q(c), -c.id)))
    return path


def mcts(
    tree: Tree, task: Task, example: Any, engine: Engine, cfg: SearchConfig, depth: int
) -> Node:
    """Build the tree from its root; returns the chosen node."""
    for _ in range(cfg.iterations):
        _iterate(tree, task, example, engine, cfg, depth)
    path = most_visited_path(tree)
    for node in path[1:]:
        node.selected = True
    return path[-1]
