"""`seedtree run --ray`: one dataset slice solved by N Ray actors.

Vocabulary: a *replica* is one Ray actor that loads the model pair once (`load_replica`: the
CLI's own loading code, from settings) and builds up to `RayConfig.trees` trees at a time on its
one engine (a threaded actor; each call exactly as `run_in_folder` does: `solve`, then
`record_of`); a *slot* is room for one tree on a replica; the *driver* is this process: it holds
the results folder, hands each free slot the next problem, and appends each record as it
arrives.

    1) connect to Ray (or keep this process's connection); start N replicas, each loads its pair
    2) a replica that is loaded has `trees` slots; a free slot takes the next problem;
       `ray.wait` on all in flight
    3) a record arrives: appended whole (`RunFolder.append`), the bar moves, its slot is free
    4) a replica is lost (its actor, worker or node died): it is killed and replaced once, and
       each of its problems goes back to the head of the queue; after MAX_TRIES a problem gets
       an error record (`search.run.error_record`) instead
    5) the end, Ctrl-C or an error: every replica is killed; the summary is written as
       `run_in_folder` writes it (not after an error, as there)

At T = 0 (and at T > 0 with coupled sampling) the records equal `run_in_folder`'s but for their
timing fields; only their order in the file follows completion. Each problem is recorded once:
a problem is in flight on one replica at a time, and only a finished call yields a record.
"""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from seedtree.decoding import SpecConfig
from seedtree.distributed.cluster import (
    RayConfig,
    check_device,
    check_fits,
    connect,
    first_line,
    import_ray,
    load_replica,
)
from seedtree.engine import LLMEngine
from seedtree.errors import SeedtreeError
from seedtree.llm import ModelSettings
from seedtree.progress import progress_bar
from seedtree.search import EngineConfig, SearchConfig, Tree, solve
from seedtree.search.results import RunFolder
from seedtree.search.run import RunSummary, error_record, record_of, summarize
from seedtree.tasks.base import Task

MAX_TRIES = 3  # a problem whose replica is lost runs at most this often, then is an error record
# Ray's errors for a call whose replica (actor, worker process, node) or result is gone
LOST = (
    "RayActorError",  # ActorDiedError, ActorUnavailableError
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "ActorUnschedulableError",
    "ObjectLostError",  # OwnerDiedError
)


@dataclass(frozen=True)
class Work:
    """What every replica is given once: settings, never models. `trees`: also return each
    whole tree (`seedtree run --trees`)."""

    models: ModelSettings
    task: Task
    search: SearchConfig
    engine: EngineConfig
    spec: SpecConfig | None
    threads: int
    trees: bool = False


@dataclass(frozen=True)
class Loaded:
    node: str  # the replica's node address (`ray.util.get_node_ip_address`)
    error: str | None = None  # one line naming the node, when the pair did not load


@dataclass(frozen=True)
class Solved:
    record: dict  # `record_of(tree, index)`, as `run_in_folder` appends it
    tree: dict | None = None  # `Tree.to_dict()` when `Work.trees`


class Replica:
    """One Ray actor (`ray.remote(Replica)`): a pair loaded once, then one tree per call
    (calls run side by side in a threaded actor; their requests share the one engine)."""

    def __init__(self, work: Work) -> None:
        self.work, self.engine = work, None  # THE engine of this replica, once loaded

    def load(self) -> Loaded:
        try:
            llm, node = load_replica(self.work.models, self.work.threads)
        except SeedtreeError as exc:
            return Loaded(node="", error=str(exc))
        w = self.work
        self.engine = LLMEngine(llm.models, w.engine.method, w.spec)
        return Loaded(node)

    def solve(self, example: Any) -> Solved:
        w = self.work
        tree = solve(self.engine, w.task, example, w.search, w.engine)
        return Solved(record_of(tree, example.index), tree.to_dict() if w.trees else None)


@dataclass(eq=False)
class _Handle:
    actor: Any  # the Ray actor handle
    node: str = "?"  # known once loaded
    lost: bool = False  # killed (its other calls in flight fail as they are waited on)


@dataclass
class RayRun:
    """What `run_on_ray` did: replicas started and lost (each lost one was replaced), the
    problems sent again after their replica was lost (an id per retry), the nodes replicas
    loaded on, and the folder's summary."""

    started: int = 0
    lost: int = 0
    retried: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    summary: RunSummary | None = None


class _Pool:
    """The replicas and the queue: which call is in flight on which replica, who is free."""

    def __init__(self, ray, work: Work, config: RayConfig, todo: list[Any]) -> None:
        self.ray, self.work, self.config = ray, work, config
        self.remote = ray.remote(Replica).options(**config.actor_options())
        self.todo = deque(todo)  # problems not handed out yet, next first
        self.tries: dict[str, int] = {}  # problem id -> times handed out
        self.pending: dict[Any, tuple[_Handle, Any]] = {}  # call -> (replica, problem | None)
        self.free: deque[_Handle] = deque()  # a replica per free slot (loaded, room for a tree)
        self.handles: list[_Handle] = []  # every replica started (all killed at the end)
        self.lost_loading = 0
        self.run = RayRun()

    def start(self) -> None:
        handle = _Handle(self.remote.remote(self.work))
        self.handles.append(handle)
        self.pending[handle.actor.load.remote()] = (handle, None)
        self.run.started += 1

    def hand_out(self) -> None:
        while self.free and self.todo:
            handle, example = self.free.popleft(), self.todo.popleft()  # a free slot
            key = str(example.id)
            self.tries[key] = self.tries.get(key, 0) + 1
            self.pending[handle.actor.solve.remote(example)] = (handle, example)

    def release(self, handle: _Handle, loaded: bool) -> None:
        """A replica has loaded (all its slots are free) or finished a tree (one slot is)."""
        if not handle.lost:
            self.free.extend([handle] * (self.config.trees if loaded else 1))

    def solving(self) -> bool:
        return any(example is not None for _, example in self.pending.values())

    def lose(self, handle: _Handle, example: Any, reason: str, method: str) -> dict | None:
        """`handle` is gone: kill it; queue its problem again at the head or, after MAX_TRIES,
        return the problem's error record; start a replica in its place while work is queued
        (bounded: a problem has MAX_TRIES, a loading replica MAX_TRIES per replica asked for).
        A replica with several trees in flight is lost once: its other calls only requeue."""
        first, handle.lost = not handle.lost, True
        self.free = deque(h for h in self.free if h is not handle)
        if first:
            self.run.lost += 1
            with contextlib.suppress(Exception):
                self.ray.kill(handle.actor)
        record = None
        if example is None:
            self.lost_loading += 1
            replace = self.lost_loading <= self.config.replicas * MAX_TRIES
        else:
            record, replace = self._again(handle, example, reason, method), first
        if replace and self.todo:
            self.start()
        return record

    def _again(self, handle: _Handle, example: Any, reason: str, method: str) -> dict | None:
        key, tries = str(example.id), self.tries[str(example.id)]
        where = f"warning: replica on node {handle.node} lost ({reason})"
        if tries >= MAX_TRIES:
            tqdm.write(f"{where}: {key} is recorded as an error", file=sys.stderr)
            error = f"its replica was lost at each of {tries} tries; last: {reason}"
            return error_record(example, self.work.task.name, method, error)
        tqdm.write(f"{where}: {key} runs again (try {tries + 1} of {MAX_TRIES})", file=sys.stderr)
        self.run.retried.append(key)
        self.todo.appendleft(example)
        return None

    def kill_all(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(Exception):
                self.ray.kill(handle.actor)


def run_on_ray(
    models: ModelSettings,
    task: Task,
    examples: list[Any],
    folder: RunFolder,
    search: SearchConfig,
    engine: EngineConfig,
    spec: SpecConfig | None = None,
    config: RayConfig | None = None,
    progress: bool = True,
    on_tree: Callable[[Tree], None] | None = None,
    on_record: Callable[[dict, Any], None] | None = None,
) -> RayRun:
    """`run_in_folder` on `config.replicas` Ray replicas: solve the `examples` not yet in
    `folder` (opened and locked by `open_run`), appending each record as it arrives. `on_tree`
    as in `run_in_folder`; `on_record(record, actor)` is told of each appended record and the
    Ray actor that solved it."""
    config = config or RayConfig()
    ray = import_ray()
    check_device(models, config)
    finished = {r["id"] for r in folder.records}
    todo = [e for e in examples if str(e.id) not in finished]
    run = RayRun()
    interrupted = False
    if todo:
        connected = connect(ray, config.address)
        try:
            work = Work(models, task, search, engine, spec, config.cpus, on_tree is not None)
            run, interrupted = drive(ray, work, config, todo, folder, progress, on_tree, on_record)
        finally:
            if connected:
                ray.shutdown()
    run.summary = summarize(task.name, engine.method, folder.records, interrupted)
    folder.write_summary(run.summary.__dict__)
    return run


def drive(
    ray,
    work: Work,
    config: RayConfig,
    todo: list[Any],
    folder: RunFolder,
    progress: bool = True,
    on_tree: Callable[[Tree], None] | None = None,
    on_record: Callable[[dict, Any], None] | None = None,
) -> tuple[RayRun, bool]:
    """Steps 1-5 of the module docstring on a connected `ray` (the module; tests pass a fake):
    (what happened, whether Ctrl-C stopped it). The summary is the caller's."""
    lost_errors = tuple(getattr(ray.exceptions, n) for n in LOST if hasattr(ray.exceptions, n))
    check_fits(ray, config)
    method = work.engine.method
    pool = _Pool(ray, work, config, todo)
    desc = f"{work.task.name} {method} x{config.replicas}"
    if config.trees > 1:
        desc += f" ({config.trees} trees each)"
    bar = None  # shown once a replica has loaded (a replica that cannot load is one line)
    try:
        for _ in range(config.replicas):  # 1) start; each loads its pair
            pool.start()
        while pool.todo or pool.solving():
            pool.hand_out()  # 2) every free slot takes the next problem
            if not pool.pending:
                raise SeedtreeError(
                    f"every replica was lost while loading ({pool.run.lost} in all): finished "
                    "problems are saved; check the cluster and rerun with --resume"
                )
            [ref], _ = ray.wait(list(pool.pending), num_returns=1)
            handle, example = pool.pending.pop(ref)
            try:
                result = ray.get(ref)
            except lost_errors as exc:  # 4) the replica is gone
                record = pool.lose(handle, example, first_line(exc), method)
                if record is not None:
                    folder.append(record)
                    bar.update(1)
                continue
            except ray.exceptions.RayTaskError as exc:  # solve raised: as it would in-process
                raise _unwrapped(exc) from None
            if example is None:  # 1) loaded, or one line naming the node
                if result.error:
                    raise SeedtreeError(result.error)
                handle.node = result.node
                pool.run.nodes.append(result.node)
                if bar is None:
                    bar = progress_bar(
                        total=len(todo), desc=desc, disable=not progress, unit="problem"
                    )
            else:  # 3) a record
                folder.append(result.record)
                if on_tree is not None:
                    on_tree(Tree.from_dict(result.tree))
                if on_record is not None:
                    on_record(result.record, handle.actor)
                bar.update(1)
                correct = sum(r["correct"] for r in folder.records)
                bar.set_postfix(correct=correct, seen=len(folder.records), lost=pool.run.lost)
            pool.release(handle, loaded=example is None)
    except KeyboardInterrupt:
        return pool.run, True
    finally:  # 5)
        if bar is not None:
            bar.close()
        pool.kill_all()
    return pool.run, False


def _unwrapped(exc: BaseException) -> BaseException:
    """A task's `SeedtreeError` as its own one line; anything else as Ray raised it."""
    cause = getattr(exc, "cause", None)
    return SeedtreeError(str(cause)) if isinstance(cause, SeedtreeError) else exc
