"""A dataset slice, one example after another: one JSONL record per finished example, appended
as it completes (Ctrl-C loses nothing finished), `resume` skips ids already in the file, and a
summary (score, time, tokens/s, unparsed values) at the end."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from seedtree.decoding import SpecConfig
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair
from seedtree.search import EngineConfig, SearchConfig, solve
from seedtree.tasks.base import Task


@dataclass
class RunSummary:
    task: str
    method: str
    examples: int  # in the results file (resumed ones included)
    correct: int
    accuracy: float
    mean_score: float
    wall_s: float
    new_tokens: int
    tokens_per_s: float
    unparsed_values: int
    interrupted: bool = False
    ids: list[str] = field(default_factory=list)


def record_of(tree, index: int) -> dict:
    return {
        "id": tree.example_id,
        "index": index,
        "task": tree.task,
        "method": tree.method,
        "answer": tree.answer,
        "metrics": tree.metrics,
        "correct": bool(tree.metrics.get("correct")),
        "score": float(tree.metrics.get("score") or 0.0),
        "wall_s": tree.wall_s,
        "generate_s": tree.phase_wall("generate"),
        "evaluate_s": tree.phase_wall("evaluate"),
        "new_tokens": tree.new_tokens,
        "nodes": len(tree.nodes),
        "unparsed_values": tree.unparsed_values,
        "signature": tree.signature(),
    }


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write: that example runs again
    return records


def summarize(task: str, method: str, records: list[dict], interrupted=False) -> RunSummary:
    wall = sum(r["wall_s"] for r in records)
    tokens = sum(r["new_tokens"] for r in records)
    correct = sum(r["correct"] for r in records)
    return RunSummary(
        task=task,
        method=method,
        examples=len(records),
        correct=correct,
        accuracy=correct / len(records) if records else 0.0,
        mean_score=statistics.mean(r["score"] for r in records) if records else 0.0,
        wall_s=wall,
        new_tokens=tokens,
        tokens_per_s=tokens / wall if wall else 0.0,
        unparsed_values=sum(r["unparsed_values"] for r in records),
        interrupted=interrupted,
        ids=[r["id"] for r in records],
    )


def run_dataset(
    pair: ModelPair,
    task: Task,
    examples: list[Any],
    out: Path,
    search: SearchConfig,
    engine: EngineConfig,
    spec: SpecConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    on_tree=None,
) -> RunSummary:
    """Solve `examples` in order; append each record to `out/results.jsonl` as it finishes.
    Without `resume`, an existing non-empty results file is an error (nothing is overwritten)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.jsonl"
    done = read_results(path)
    if done and not resume:
        raise SeedtreeError(
            f"{path} already holds {len(done)} results: pass --resume to continue it, "
            "or choose another --out"
        )
    finished = {r["id"] for r in done}
    todo = [e for e in examples if str(e.id) not in finished]
    interrupted = False
    bar = tqdm(todo, desc=f"{task.name} {engine.method}", disable=not progress, unit="problem")
    try:
        with path.open("a") as f:
            for example in bar:
                tree = solve(pair, task, example, search, engine, spec)
                record = record_of(tree, example.index)
                f.write(json.dumps(record) + "\n")
                f.flush()
                done.append(record)
                if on_tree is not None:
                    on_tree(tree)
                bar.set_postfix(correct=sum(r["correct"] for r in done), seen=len(done))
    except KeyboardInterrupt:
        interrupted = True
    summary = summarize(task.name, engine.method, done, interrupted)
    (out / "summary.json").write_text(json.dumps(summary.__dict__, indent=1))
    return summary
