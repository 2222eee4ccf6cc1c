"""The tree in the terminal: one line per node, values, the chosen path marked with '*'."""

from __future__ import annotations

from seedtree.search.tree import Node, Tree


def _line(node: Node, chosen: set[int], width: int) -> str:
    mark = "*" if node.id in chosen else " "
    value = "  -  " if node.value is None else f"{node.value:5.1f}"
    flags = "".join(
        f" [{name}]" for name, on in (("terminal", node.terminal), ("pruned", node.pruned)) if on
    )
    thought = " ".join(node.thought.split()) or "(empty)"
    if len(thought) > width:
        thought = thought[: width - 1] + "\u2026"
    return f"{mark} {value} {'  ' * (node.depth - 1)}{thought}{flags}"


def format_tree(tree: Tree, width: int = 100) -> str:
    chosen = {n.id for n in tree.chosen_path()}
    lines = [f"{tree.task} {tree.example_id} [{tree.method}]", tree.question, "", "  value thought"]
    order = [tree.nodes[0]]
    while order:
        node = order.pop()
        if node.parent is not None:
            lines.append(_line(node, chosen, width))
        order.extend(tree.nodes[c] for c in reversed(node.children))
    metrics = {k: v for k, v in tree.metrics.items() if k not in ("correct", "score")}
    lines += [
        "",
        f"answer: {tree.answer}",
        f"correct: {tree.metrics.get('correct')}  score: {tree.metrics.get('score')}  "
        + "  ".join(f"{k}: {v}" for k, v in metrics.items()),
        f"time: {tree.wall_s:.1f} s (generate {tree.phase_wall('generate'):.1f} s, evaluate "
        f"{tree.phase_wall('evaluate'):.1f} s)  tokens: {tree.new_tokens}  "
        f"unparsed values: {tree.unparsed_values}",
    ]
    return "\n".join(lines)
