"""Real-model test of the search algorithms: one Game of 24 puzzle and one GSM8K problem through
every algorithm on the default pair (bf16 1.5B target, int8 0.5B draft), seed-batched, with tiny
budgets (k=2, depth 2, 2 MCTS iterations, 40 new tokens per call at most), plus logprob values
on Game of 24. Marked `real_model`; it checks that each algorithm runs end to end on real text
(answers, scores, values in range), not accuracy."""

import os
import time

import pytest
import torch

from seedtree.llm import LLM
from seedtree.search import ALGORITHMS, EngineConfig, SearchConfig, solve
from seedtree.tasks import get_task

pytestmark = pytest.mark.real_model
BUDGET = {"k": 2, "b": 1, "depth": 2, "iterations": 2, "rollout": "value", "max_expansions": 2}


@pytest.fixture(scope="module")
def llm():
    previous = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield LLM("qwen2.5-coder", dtype="bfloat16", draft_dtype="int8", progress=False)
    torch.set_num_threads(previous)


@pytest.mark.parametrize("task_name", ["game24", "gsm8k"])
def test_every_algorithm_on_a_real_problem(llm, task_name):
    task = get_task(task_name)
    example = task.get(0)
    engine = EngineConfig(method="seed-batched", max_new_tokens=40)
    for algorithm in ALGORITHMS:
        start = time.perf_counter()
        tree = solve(llm.models, task, example, SearchConfig(algorithm=algorithm, **BUDGET), engine)
        print(
            f"{task_name} {algorithm}: {len(tree.nodes)} nodes, answer {tree.answer[:60]!r}, "
            f"correct {tree.metrics['correct']}, {time.perf_counter() - start:.1f} s"
        )
        assert tree.final is not None and len(tree.nodes) >= 2, algorithm
        assert isinstance(tree.metrics["correct"], bool) and tree.calls, algorithm
        assert all(0 <= n.value <= 10 for n in tree.nodes if n.value is not None), algorithm


def test_logprob_values_on_a_real_puzzle(llm):
    task = get_task("game24")
    search = SearchConfig(algorithm="beam", evaluation="logprob", **BUDGET)
    tree = solve(llm.models, task, task.get(0), search, EngineConfig(max_new_tokens=40))
    valued = [n for n in tree.nodes if n.value is not None]
    print([(n.thought, n.value, n.value_texts) for n in valued])
    assert valued and all(0 <= n.value <= 10 for n in valued)
    assert all(c.new_tokens == 0 for c in tree.calls if c.phase == "evaluate")
