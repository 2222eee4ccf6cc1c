"""Reasoning trees: search algorithms over a task (cot, cot-sc, BFS, DFS, beam, MCTS), every call
through an engine.

from seedtree.search import SearchConfig, EngineConfig, solve
tree = solve(pair, get_task("gsm8k"), example, SearchConfig(k=3, b=1, depth=2),
             EngineConfig(method="seed-batched"))
# the same search on an OpenAI-compatible server (no local models):
tree = solve(None, task, example, search, EngineConfig(temperature=0.7, seed=1),
             endpoint=Endpoint("http://127.0.0.1:8000/v1", "qwen2.5-coder"))
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from seedtree.decoding import SpecConfig
from seedtree.engine import LLMEngine
from seedtree.models.loader import ModelPair
from seedtree.search.beam import beam
from seedtree.search.bfs import bfs
from seedtree.search.config import ALGORITHMS, SearchConfig
from seedtree.search.cot import cot, cot_sc
from seedtree.search.dfs import dfs
from seedtree.search.engine import Engine, EngineConfig
from seedtree.search.mcts import mcts
from seedtree.search.remote import Endpoint
from seedtree.search.tree import Call, Node, Tree
from seedtree.tasks.base import Task

# name -> algorithm(tree, task, example, engine, search, depth) -> the chosen node
SEARCHES = {"cot": cot, "cot-sc": cot_sc, "bfs": bfs, "dfs": dfs, "beam": beam, "mcts": mcts}
assert tuple(SEARCHES) == ALGORITHMS


def solve(
    models: ModelPair | LLMEngine | None,
    task: Task,
    example: Any,
    search: SearchConfig | None = None,
    engine: EngineConfig | None = None,
    spec: SpecConfig | None = None,
    progress: Callable[[Call], None] | None = None,
    endpoint: Endpoint | None = None,
    stop: threading.Event | None = None,
) -> Tree:
    """Build the reasoning tree of one example and score its answer. `models`: THE engine of
    the process (`LLMEngine`; other trees may run on it at the same time; `spec` is then its
    own), or a model pair, for which a one-off engine of `engine.method` and `spec` is built.
    `progress(call)`: told as each engine call ends (see `progress_printer`).
    `endpoint`: build it through an OpenAI-compatible server instead (`models` None); the tree's
    method is then "openai" and its config records the endpoint (`search.remote`).
    `stop`: once set, the tree's next engine call raises `Stopped` (a run stopping its trees)."""
    search = search or SearchConfig()
    engine_config = engine or EngineConfig()
    if isinstance(models, ModelPair):
        one_off = LLMEngine(models, engine_config.method, spec)
        try:
            run = Engine(one_off, engine_config, progress, None, stop)
            return _build(task, example, search, run)
        finally:
            one_off.close()
    return _build(task, example, search, Engine(models, engine_config, progress, endpoint, stop))


def _build(task: Task, example: Any, search: SearchConfig, run: Engine) -> Tree:
    """The tree of `example` by `search.algorithm`, every call through `run`, scored."""
    engine_config = run.config
    depth = search.depth or task.depth(example)
    config = {"search": asdict(search) | {"depth": depth}, "engine": asdict(engine_config)}
    if run.endpoint is not None:
        config["endpoint"] = run.endpoint.settings() | {"model": run.endpoint.model}
    tree = Tree(
        task=task.name,
        example_id=str(example.id),
        question=task.question(example),
        method=run.method,
        config=config,
        calls=run.calls,
    )
    start = time.perf_counter()
    tree.add(None, "", task.state_text(example, ()))
    final = SEARCHES[search.algorithm](tree, task, example, run, search, depth)
    tree.final = final.id
    outcome = task.finish(example, tree.steps(final), run.ask)
    tree.answer, tree.metrics = outcome.answer, outcome.metrics
    tree.wall_s = time.perf_counter() - start
    return tree


def progress_printer(label: str = "", stream=None) -> Callable[[Call], None]:
    """A `progress` callback printing one line per engine call with the time since the first:
    `  [seed-batched] level 1 generate: 3 requests, 212 tokens in 8.1 s (elapsed 8.1 s)`."""
    start = time.perf_counter()
    stream = stream or sys.stderr
    prefix = f"  [{label}] " if label else "  "

    def show(call: Call) -> None:
        level = "answer" if call.level < 0 else f"level {call.level}"
        print(
            f"{prefix}{level} {call.phase}: {call.requests} requests, {call.new_tokens} tokens "
            f"in {call.wall_s:.1f} s (elapsed {time.perf_counter() - start:.1f} s)",
            file=stream,
            flush=True,
        )

    return show


__all__ = [
    "ALGORITHMS",
    "Call",
    "Endpoint",
    "EngineConfig",
    "Node",
    "SearchConfig",
    "Tree",
    "progress_printer",
    "solve",
]
