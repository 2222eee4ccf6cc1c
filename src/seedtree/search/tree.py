"""The reasoning tree: nodes (thought, state, value, selected) and its JSON form.

A node's `steps` are the thoughts from the root down to it; node 0 is the root (no thought).
`signature()` is everything a lossless method must reproduce (thoughts, values, selection,
answer, score) and nothing it may change (timings, the method's name).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Node:
    id: int
    parent: int | None
    depth: int
    thought: str  # "" for the root
    state: str  # the state as text (the example and the thoughts so far)
    value: float | None = None
    value_texts: list[str] = field(default_factory=list)  # the model's raw evaluations
    unparsed: int = 0  # evaluations with no readable value (scored 0)
    selected: bool = False  # kept by the search at its level
    terminal: bool = False
    pruned: bool = False  # DFS: below the value threshold, not expanded
    stats: dict[str, Any] = field(default_factory=dict)  # tokens, wall time, method
    children: list[int] = field(default_factory=list)


@dataclass
class Call:
    """One `generate_many` run of the search: a level's thought generation or evaluation."""

    phase: str  # "generate" | "evaluate" | "finish"
    level: int
    requests: int
    new_tokens: int
    wall_s: float
    trace: dict  # Trace.to_dict()
    target_forwards: int = 0  # target forward passes (a batched forward counts once)
    drafted: int = 0
    accepted: int = 0
    prompt_ids: list[list[int]] = field(default_factory=list)  # per request
    output_ids: list[list[int]] = field(default_factory=list)  # per request
    rounds: int = 0  # verification rounds, summed over requests
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served by the prefix cache
    seeds: list[int] = field(default_factory=list)  # per request (coupled sampling's noise key)
    lookup_drafted: int = 0  # draft tokens only lookup drafting proposed (in `drafted`)
    lookup_accepted: int = 0  # of those, accepted (in `accepted`)
    copied_tokens: int = 0  # tokens of requests identical to one decoded (SpecConfig.dedup)
    copied_prompt_tokens: int = 0  # the prompt tokens of those requests (never prefilled)

    @property
    def prefix_hit_rate(self) -> float | None:
        """Prompt tokens served by the prefix cache, of the requests prefilled (not copies)."""
        prefilled = self.prompt_tokens - self.copied_prompt_tokens
        return self.cached_tokens / prefilled if prefilled else None

    @property
    def mean_draft_len(self) -> float | None:
        """Draft tokens per verification round (None: the method does not verify drafts)."""
        return self.drafted / self.rounds if self.rounds else None


@dataclass
class Tree:
    task: str
    example_id: str
    question: str
    method: str
    config: dict
    nodes: list[Node] = field(default_factory=list)
    final: int | None = None  # the chosen node
    answer: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    wall_s: float = 0.0

    # -- building --------------------------------------------------------------------------------
    def add(self, parent: Node | None, thought: str, state: str) -> Node:
        node = Node(
            len(self.nodes),
            None if parent is None else parent.id,
            0 if parent is None else parent.depth + 1,
            thought,
            state,
        )
        self.nodes.append(node)
        if parent is not None:
            parent.children.append(node.id)
        return node

    def steps(self, node: Node) -> tuple[str, ...]:
        """The thoughts from the root to `node`."""
        return tuple(n.thought for n in self.path(node)[1:])

    def path(self, node: Node) -> list[Node]:
        path = [node]
        while path[-1].parent is not None:
            path.append(self.nodes[path[-1].parent])
        return path[::-1]

    def chosen_path(self) -> list[Node]:
        return [] if self.final is None else self.path(self.nodes[self.final])

    # -- summaries -------------------------------------------------------------------------------
    @property
    def unparsed_values(self) -> int:
        return sum(n.unparsed for n in self.nodes)

    @property
    def new_tokens(self) -> int:
        return sum(c.new_tokens for c in self.calls)

    def phase_wall(self, phase: str) -> float:
        return sum(c.wall_s for c in self.calls if c.phase == phase)

    def signature(self) -> dict:
        """What must not depend on the (lossless) method: compare trees with this."""
        return {
            "nodes": [
                (n.id, n.parent, n.thought, n.value, n.selected, n.terminal, n.pruned)
                for n in self.nodes
            ],
            "final": self.final,
            "answer": self.answer,
            "metrics": self.metrics,
        }

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self) | {
            "new_tokens": self.new_tokens,
            "unparsed_values": self.unparsed_values,
            "generate_s": self.phase_wall("generate"),
            "evaluate_s": self.phase_wall("evaluate"),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Tree:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["nodes"] = [Node(**n) for n in data.get("nodes", [])]
        fields["calls"] = [Call(**c) for c in data.get("calls", [])]
        return cls(**fields)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> Tree:
        return cls.from_dict(json.loads(Path(path).read_text()))
