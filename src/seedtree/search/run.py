"""A dataset slice, one example after another: one JSONL record per finished example, appended
whole as it completes (Ctrl-C or a kill loses nothing finished), `resume` skips ids already in the
file, and a summary (score, time, tokens/s, unparsed values) at the end. The folder itself (lock,
settings, partial lines) is `search.results`. A problem that could not be solved at all (its Ray
replica died at every try: `distributed.ray_run`) has an error record: `error_record`."""

from __future__ import annotations

import itertools
import statistics
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedtree.decoding import SpecConfig
from seedtree.engine import LLMEngine
from seedtree.models.loader import ModelPair
from seedtree.progress import progress_bar
from seedtree.search import EngineConfig, SearchConfig, solve
from seedtree.search.remote import METHOD, Endpoint, connect
from seedtree.search.results import RunFolder, open_run, run_settings
from seedtree.tasks.base import Task
from seedtree.validate import check_int

MAX_CONCURRENCY = 64  # trees in flight at most (each holds its level's requests in the engine)


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
    errors: int = 0  # error records (counted as examples, not correct)
    interrupted: bool = False
    ids: list[str] = field(default_factory=list)


TIMING = ("wall_s", "generate_s", "evaluate_s")  # the record fields that vary from run to run


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


def error_record(example: Any, task: str, method: str, error: str) -> dict:
    """The record of a problem that has no tree: not correct, score 0, nothing generated, and
    `error` says why. Only such records have an `error` field, so files written before it
    existed read the same; `--resume` skips them like any finished problem."""
    return {
        "id": str(example.id),
        "index": example.index,
        "task": task,
        "method": method,
        "answer": None,
        "metrics": {},
        "correct": False,
        "score": 0.0,
        "wall_s": 0.0,
        "generate_s": 0.0,
        "evaluate_s": 0.0,
        "new_tokens": 0,
        "nodes": 0,
        "unparsed_values": 0,
        "signature": None,
        "error": error,
    }


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
        errors=sum(1 for r in records if r.get("error")),
        interrupted=interrupted,
        ids=[r["id"] for r in records],
    )


def run_dataset(
    models: ModelPair | LLMEngine | None,
    task: Task,
    examples: list[Any],
    out: Path,
    search: SearchConfig,
    engine: EngineConfig,
    spec: SpecConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    on_tree=None,
    settings: dict | None = None,
    allow_mixed: bool = False,
    endpoint: Endpoint | None = None,
    concurrency: int = 1,
) -> RunSummary:
    """Solve `examples`, up to `concurrency` trees at a time on one engine; append each record
    to `out/results.jsonl` as its tree finishes. Without `resume`, an existing non-empty results
    file is an error (nothing is overwritten); with it, the run's `settings` (default:
    `run_settings` of these configs and the pair, or of `endpoint`) must equal those the folder
    was started with, unless `allow_mixed`. See `search.results`. `endpoint`: solve on an
    OpenAI-compatible server (`models` None)."""
    if endpoint is not None and endpoint.chat is None:
        endpoint = connect(endpoint)  # once, and recorded settled
    if settings is None and endpoint is not None:
        settings = run_settings(
            task.name, endpoint.model, None, engine, search, spec, None, endpoint
        )
    elif settings is None:
        pair = models.pair if isinstance(models, LLMEngine) else models
        dtype = str(pair.dtype).removeprefix("torch.")
        settings = run_settings(task.name, pair.name, dtype, engine, search, spec)
    with open_run(out, settings, resume, allow_mixed) as folder:
        return run_in_folder(
            models, task, examples, folder, search, engine, spec, progress, on_tree, endpoint,
            concurrency,
        )  # fmt: skip


def run_in_folder(
    models: ModelPair | LLMEngine | None,
    task: Task,
    examples: list[Any],
    folder: RunFolder,
    search: SearchConfig,
    engine: EngineConfig,
    spec: SpecConfig | None = None,
    progress: bool = True,
    on_tree=None,
    endpoint: Endpoint | None = None,
    concurrency: int = 1,
) -> RunSummary:
    """`run_dataset` in a folder already opened (and locked) by `open_run`. `models`: THE
    engine of the process, or a pair (a one-off engine of `engine.method` and `spec`)."""
    check_int("concurrency", concurrency, 1, MAX_CONCURRENCY)
    if endpoint is not None and endpoint.chat is None:
        endpoint = connect(endpoint)
    method = METHOD if endpoint is not None else engine.method
    finished = {r["id"] for r in folder.records}
    todo = [e for e in examples if str(e.id) not in finished]
    bar = progress_bar(
        total=len(todo), desc=f"{task.name} {method}", disable=not progress, unit="problem"
    )
    owned = isinstance(models, ModelPair)
    llm = LLMEngine(models, engine.method, spec) if owned else models
    trees, interrupted = Trees(llm, task, search, engine, endpoint, concurrency), False
    try:
        with closing(trees.solve(todo)) as finished:  # closed: the trees in flight stop
            for example, tree in finished:
                folder.append(record_of(tree, example.index))
                if on_tree is not None:
                    on_tree(tree)
                correct = sum(r["correct"] for r in folder.records)
                bar.set_postfix(correct=correct, seen=len(folder.records))
                bar.update()
    except KeyboardInterrupt:  # Ctrl-C here, or in a tree (its thread hands it on)
        interrupted = True
    finally:
        bar.close()
        if owned:
            llm.close()
    summary = summarize(task.name, method, folder.records, interrupted)
    folder.write_summary(summary.__dict__)
    return summary


class Trees:
    """Up to `concurrency` trees at a time on one engine (each in a thread of its own; their
    requests join the engine's running batch as they come), yielded as each finishes; the next
    problem starts at once. Closing the generator, or an exception (Ctrl-C) while it waits,
    stops the trees in flight (their requests aborted); what finished was yielded."""

    def __init__(self, llm, task, search, engine, endpoint, concurrency: int) -> None:
        self.llm, self.task, self.search, self.engine = llm, task, search, engine
        self.endpoint, self.concurrency = endpoint, concurrency
        self.stop = threading.Event()

    def _solve(self, example):
        return solve(
            self.llm, self.task, example, self.search, self.engine, endpoint=self.endpoint,
            stop=self.stop,
        )  # fmt: skip

    def solve(self, examples: list[Any]):
        todo = iter(examples)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="seedtree-tree") as pool:
            running = {
                pool.submit(self._solve, e): e for e in itertools.islice(todo, self.concurrency)
            }
            try:
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: running[f].index):
                        example = running.pop(future)
                        tree = future.result()
                        nxt = next(todo, None)
                        if nxt is not None:
                            running[pool.submit(self._solve, nxt)] = nxt
                        yield example, tree
            except BaseException:  # Ctrl-C, an error, or the consumer closing the generator
                self._stop(running)
                raise

    def _stop(self, running: dict) -> None:
        """Trees in flight end at their next call; their requests now in the engine leave."""
        self.stop.set()
        for future in running:
            future.cancel()
        if isinstance(self.llm, LLMEngine):
            self.llm.abort_all()
