"""Search configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from seedtree.errors import SeedtreeError
from seedtree.validate import MAX_DEPTH, MAX_FANOUT, check_int, check_real

ALGORITHMS = ("bfs", "dfs")


@dataclass(frozen=True)
class SearchConfig:
    """k thoughts per expanded state, b states kept per level (BFS), `depth` levels at most
    (None = the task's default). `generation`/`evaluation` None = the task's own mode.
    `n_evaluate`: value samples per state (their mean) or votes per level.
    DFS: children valued below `threshold` are pruned; at most `max_expansions` expansions."""

    k: int = 3
    b: int = 1
    depth: int | None = None
    algorithm: str = "bfs"
    generation: str | None = None  # "sample" | "propose"
    evaluation: str | None = None  # "value" | "vote"
    n_evaluate: int = 1
    threshold: float = 5.0
    max_expansions: int = 8

    def __post_init__(self) -> None:
        for name in ("k", "b", "n_evaluate"):
            check_int(name, getattr(self, name), 1, MAX_FANOUT)
        check_int("max_expansions", self.max_expansions, 1, MAX_DEPTH)
        if self.depth is not None:
            check_int("depth", self.depth, 1, MAX_DEPTH)
        check_real("threshold", self.threshold)
        if self.algorithm not in ALGORITHMS:
            raise SeedtreeError(
                f"unknown algorithm '{self.algorithm}': choose one of {', '.join(ALGORITHMS)}"
            )
        if self.generation not in (None, "sample", "propose"):
            raise SeedtreeError(f"unknown generation '{self.generation}': use sample or propose")
        if self.evaluation not in (None, "value", "vote"):
            raise SeedtreeError(f"unknown evaluation '{self.evaluation}': use value or vote")
