"""Search configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from seedtree.errors import SeedtreeError
from seedtree.validate import MAX_DEPTH, MAX_FANOUT, check_int, check_real

# every search algorithm, by name (`search.solve` dispatches through one table of these)
ALGORITHMS = ("cot", "cot-sc", "bfs", "dfs", "beam", "mcts")
GENERATIONS = ("sample", "propose")
EVALUATIONS = ("value", "vote", "logprob")
ROLLOUTS = ("value", "greedy")
MAX_EXPLORATION = 100.0


def _choice(name: str, value, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        raise SeedtreeError(f"unknown {name} '{value}': choose {flag} {' | '.join(choices)}")


@dataclass(frozen=True)
class SearchConfig:
    """k thoughts per expanded state, b states kept per level (BFS) or beams (beam), `depth`
    levels at most (None = the task's default). `generation`/`evaluation` None = the task's own
    mode; `evaluation="logprob"` reads a state's value from the target's probabilities of the
    task's value labels (`search.logprob`). `n_evaluate`: value samples per state (their mean)
    or votes per level.
    cot: one whole solution; cot-sc: k whole solutions, the majority answer.
    DFS: children valued below `threshold` are pruned; at most `max_expansions` expansions.
    MCTS: `iterations` of select (UCT, constant `exploration`) / expand (k thoughts) / simulate
    (`rollout`: "value" = the new state's value is the reward, "greedy" = follow the best-valued
    child to a terminal state) / backpropagate."""

    k: int = 3
    b: int = 1
    depth: int | None = None
    algorithm: str = "bfs"
    generation: str | None = None  # "sample" | "propose"
    evaluation: str | None = None  # "value" | "vote" | "logprob"
    n_evaluate: int = 1
    threshold: float = 5.0
    max_expansions: int = 8
    iterations: int = 8
    exploration: float = 1.0
    rollout: str = "greedy"

    def __post_init__(self) -> None:
        for name in ("k", "b", "n_evaluate"):
            check_int(name, getattr(self, name), 1, MAX_FANOUT)
        check_int("max_expansions", self.max_expansions, 1, MAX_DEPTH)
        check_int("iterations", self.iterations, 1, MAX_DEPTH)
        if self.depth is not None:
            check_int("depth", self.depth, 1, MAX_DEPTH)
        check_real("threshold", self.threshold)
        check_real("exploration", self.exploration)
        if not 0 <= self.exploration <= MAX_EXPLORATION:
            raise SeedtreeError(
                f"exploration must be in [0, {MAX_EXPLORATION:g}] (UCT's constant), "
                f"got {self.exploration}"
            )
        _choice("algorithm", self.algorithm, ALGORITHMS, "--algorithm")
        _choice("rollout", self.rollout, ROLLOUTS, "--rollout")
        if self.generation is not None:
            _choice("generation", self.generation, GENERATIONS, "--generation")
        if self.evaluation is not None:
            _choice("evaluation", self.evaluation, EVALUATIONS, "--evaluation")
