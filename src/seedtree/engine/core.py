"""THE engine object: one per process (or Ray replica), every front door its client.

    engine = LLMEngine(pair, "seed-batched", SpecConfig())   # method resolved once
    future = engine.submit(prompt_ids, params)                # any thread; -> GenerationResult
    engine.submit_jobs([Job(...), ...])                       # streaming: outputs to a sink
    engine.abort(request_id)                                  # any thread
    run = engine.generate(requests)                           # blocking: a ManyResult
    engine.close()                                            # drain, then stop the thread

It owns the model pair's step engine, THE prefix cache, the lookup index, the cost model
measured at start-up (`engine.costs`) and ONE thread that runs every torch op of the process
(see `run_off_main_thread`). Requests from any number of clients (a search's trees, HTTP
requests, `LLM.generate`) join the running batch as they arrive: continuous batching across
trees. It also holds the one rule each for encoding (chat template) and for sample seeds.

The thread: take new jobs and aborts (under a lock), one `StepEngine.step()`, hand every
`RequestOutput` to its job's sink; sleep on a condition while there is nothing to do. Methods that
do not run on the step engine run on the same thread: `ar` and `hf-assisted` request after
request. SEED's paper mode (`seed`, `mcsd-seed`) is a schedule of the step engine (FCFS rounds of
drafter threads, `scheduling.fcfs`). The engine knows nothing about HTTP, Ray, tasks or trees.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TypeVar

from seedtree.decoding.adaptive import CostModel
from seedtree.decoding.ar import generate_ar
from seedtree.decoding.branch import Request
from seedtree.decoding.hf import generate_hf_assisted
from seedtree.decoding.lookup import LookupIndex
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import derive_seed
from seedtree.engine import costs as cost_model
from seedtree.engine.methods import Method, get_method
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.engine.reads import Read, ReadCache, read
from seedtree.engine.step import MAX_RUNNING, STEPPED, RequestOutput, StepEngine, check_prompt
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair, encode_prompt, has_chat_template
from seedtree.scheduling.trace import Trace

T = TypeVar("T")
Sink = Callable[[RequestOutput | BaseException], None]
MAX_TRACE = 10_000  # engine-wide trace intervals kept; past that it starts afresh
# An idle engine woken by a request waits this long for the ones sent with it (a ToT level's k
# requests, an HTTP client's concurrent ones arrive a few ms apart) so they prefill and decode
# as one batch; a busy engine never waits (arrivals join at its next step).
ADMIT_WINDOW_S = 0.01
ALL = ("abort", "all")  # `abort_all`'s mark in the abort list


class QueueFull(Exception):
    """The engine holds as many requests as it may: retry later (HTTP 429)."""


class ShuttingDown(Exception):
    """The engine no longer admits requests (HTTP 503)."""


def run_off_main_thread(work: Callable[[], T]) -> T:
    """`work()` (loading the models, a benchmark's in-process trees) on a short-lived thread, so
    that no long-lived thread but the engine's ever runs torch ops.

    Why: torch's intra-op parallelism is OpenMP, and each thread that runs torch ops gets its own
    OpenMP team. A step is hundreds of small parallel regions, fast only while the team's workers
    spin-wait between them; once libgomp manages more threads than there are CPUs (a second
    team, even idle) it throttles spinning and the workers sleep between regions. Loading on the
    main thread left such a team behind, and the engine thread ran every call 35-40% slower
    (BENCHMARKS.md section 5). A thread's team goes when the thread exits."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seedtree-torch") as pool:
        return pool.submit(work).result()  # the thread exits as the pool shuts down


def sample_seed(seed: int | None, *key: object) -> int | None:
    """THE seeding rule: the seed of sample `key` of a request seeded `seed`. The first sample
    (no key, or the key (0,)) keeps the request's seed; any other key hashes (seed, *key)
    (`derive_seed`), so nearby seeds share no samples. None stays None (fresh randomness)."""
    if seed is None or not key or key == (0,):
        return seed
    return derive_seed(seed, *key)


def expand_requests(prompts: list[list[int]], params: SamplingParams) -> list[Request]:
    """n samples per prompt (params.n), prompt-major; sample j seeded `sample_seed(seed, j)`."""
    return [
        Request(ids, replace(params, seed=sample_seed(params.seed, j), n=1))
        for ids in prompts
        for j in range(params.n)
    ]


@dataclass(frozen=True)
class Job:
    """One request and where its outputs go. `trace`/`branch`: a caller's own timeline (a tree's
    call) that gets this request's intervals, under the id `branch`."""

    request_id: Hashable
    prompt_ids: list[int]
    params: SamplingParams
    sink: Sink
    trace: Trace | None = None
    branch: int = 0


class _Traces(Trace):
    """The step engine's trace: an engine-wide log (bounded) that also copies each interval to
    the timeline of the call its branch belongs to (`Job.trace`), in that call's ids and clock."""

    def __init__(self, method: str) -> None:
        super().__init__(method=method)
        self.routes: dict[int, tuple[Trace, int]] = {}  # branch index -> (call trace, its id)

    def add(self, kind, branches, start, end, round=-1, waits=(), accepted=()) -> None:
        if len(self.intervals) >= MAX_TRACE:
            self.intervals = []
        super().add(kind, branches, start, end, round, waits, accepted)
        calls: dict[int, tuple[Trace, list[int]]] = {}
        for k, b in enumerate(branches):
            if b in self.routes:
                trace = self.routes[b][0]
                calls.setdefault(id(trace), (trace, []))[1].append(k)
        for trace, ks in calls.values():
            shift = self.t0 - trace.t0
            trace.add(
                kind, [self.routes[branches[k]][1] for k in ks], start + shift, end + shift, round,
                [waits[k] for k in ks] if waits else (),
                [accepted[k] for k in ks] if accepted else (),
            )  # fmt: skip


class LLMEngine:
    def __init__(
        self,
        pair: ModelPair,
        method: str | Method = "seed-batched",
        spec: SpecConfig | None = None,
        *,
        cache_mb: float = 1024.0,
        prefix_cache: PrefixCache | None = None,
        max_running: int = MAX_RUNNING,
        max_queued: int | None = None,
        costs: CostModel | None = None,
        admit_window_s: float = ADMIT_WINDOW_S,
    ) -> None:
        """`prefix_cache`: an earlier engine's (an `LLM` that switches methods keeps its KV),
        else a new one of `cache_mb`. `max_queued`: requests waiting beyond the running ones
        (None: no limit; `submit_jobs` raises `QueueFull` past it). `costs`: the cost model
        (None: measured on the engine thread before its first step, for methods that plan or
        batch).
        `admit_window_s`: how long an idle engine woken by a request waits for the requests
        sent with it (0 for a one-off engine that is handed all its requests at once)."""
        self.pair = pair
        self.method = method if isinstance(method, Method) else get_method(method)
        self.spec = spec or SpecConfig()
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache(cache_mb)
        self.lookup = LookupIndex() if self.spec.lookup else None
        self.chat_template = has_chat_template(pair)
        self.costs = costs
        self.admit_window_s = admit_window_s
        self.max_running = max_running
        self.step_engine = self._new_step_engine() if self._stepped else None
        running = self.step_engine.max_running if self.step_engine else 1
        self.capacity = None if max_queued is None else running + max_queued
        self._cond = threading.Condition()
        self._inbox: list[Job] = []
        self._aborts: list[Hashable] = []
        self._reads: list[tuple[list[Read], ReadCache | None, Future]] = []  # `tail_logprobs`
        self._sinks: dict[Hashable, Sink] = {}  # engine thread only
        self._pending = 0  # requests submitted and not finished (under the lock)
        self._admitting = True
        self._stopping = False
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    @property
    def _stepped(self) -> bool:
        return self.method.schedule in STEPPED

    def _new_step_engine(self) -> StepEngine:
        engine = StepEngine(
            self.pair, self.method, self.spec, prefix_cache=self.prefix_cache,
            max_running=self.max_running, lookup=self.lookup, costs=self.costs,
        )  # fmt: skip
        engine.trace = _Traces(self.method.name)
        return engine

    # -- the one rule each for prompts and seeds --------------------------------------------------
    def encode(self, text: str, chat: bool | None = None) -> list[int]:
        """Prompt text -> token ids. `chat` None: through the pair's chat template when it has
        one (an instruct pair answers a question, not continues it), else plain text."""
        return encode_prompt(self.pair, text, self.chat_template if chat is None else chat)

    # -- any thread -------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    @property
    def admitting(self) -> bool:
        return self._admitting

    @property
    def running(self) -> int:
        """Requests being decoded (an identical greedy request follows another's branch)."""
        return self.step_engine.running_requests if self.step_engine else min(1, self._pending)

    @property
    def queue_depth(self) -> int:
        return max(0, self._pending - self.running)

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, trace: Trace | None = None,
        branch: int = 0,
    ) -> Future:  # fmt: skip
        """One request; its future's result is the `GenerationResult` (or the engine's error)."""
        future: Future = Future()
        self.submit_jobs([Job(self.new_id(), prompt_ids, params, _future_sink(future), trace,
                              branch)])  # fmt: skip
        return future

    def new_id(self) -> Hashable:
        return ("engine", next(self._ids))

    def submit_jobs(self, jobs: list[Job]) -> None:
        """All of `jobs` join the engine at its next step, or none (`QueueFull` past capacity,
        `ShuttingDown` once stopping). Prompts are checked here, in the caller's thread."""
        for job in jobs:
            check_prompt(self.pair, job.prompt_ids)
            if not isinstance(job.params, SamplingParams):
                raise SeedtreeError("params must be a SamplingParams")
        with self._cond:
            if not self._admitting:
                raise ShuttingDown("the engine is shutting down")
            if self.capacity is not None and self._pending + len(jobs) > self.capacity:
                raise QueueFull(
                    f"the engine holds {self._pending} of {self.capacity} requests: retry later"
                )
            self._start()
            self._inbox.extend(jobs)
            self._pending += len(jobs)
            self._cond.notify()

    def abort(self, request_id: Hashable) -> None:
        """The request leaves at the next step (finish_reason "cancelled"); its KV is freed."""
        with self._cond:
            self._aborts.append(request_id)
            self._cond.notify()

    def tail_logprobs(self, sequences: list[Read], cache: ReadCache | None = None) -> Future:
        """For each (ids, n): the target's float64 log-softmax after each of the last n positions
        of ids ([n, V]; a value read from p's next-token distribution). On the engine thread,
        between steps, outside the step engine and its prefix cache (`engine.reads`): the
        sequences' common start is read once (kept in `cache`, one per tree, for its next
        read), their rests in one batched forward; the numbers are the same whatever the
        method and whatever else is in flight."""
        for ids, n in sequences:
            check_prompt(self.pair, ids)
            if not 1 <= n <= len(ids):
                raise SeedtreeError(f"n must be in [1, {len(ids)}] for a {len(ids)}-token read")
        future: Future = Future()
        with self._cond:
            if not self._admitting:
                raise ShuttingDown("the engine is shutting down")
            self._start()
            self._reads.append((sequences, cache, future))
            self._cond.notify()
        return future

    def abort_all(self) -> None:
        """Every request in flight leaves at the next step (a run that stops)."""
        with self._cond:
            self._aborts.append(ALL)
            self._cond.notify()

    def generate(
        self, requests: list[Request], cancelled: set[int] | None = None
    ) -> tuple[list[GenerationResult], Trace]:
        """Every request (blocking), results in request order, and their timeline (request i is
        branch i). `cancelled`: request indices to stop, may grow from another thread."""
        if not requests:
            raise SeedtreeError("no requests: pass at least one prompt")
        trace = Trace(method=self.method.name)
        ids = [self.new_id() for _ in requests]
        futures = [Future() for _ in requests]
        poll = None if cancelled is None else 0.05  # the set may grow from another thread
        cancelled = cancelled if cancelled is not None else set()
        aborted = {i for i in set(cancelled) if 0 <= i < len(requests)}
        for i in aborted:  # cancelled before it starts: nothing to decode
            stats = DecodeStats(method=self.method.name, prompt_tokens=len(requests[i].prompt_ids))
            futures[i].set_result(GenerationResult([], "", "cancelled", stats))
        jobs = [
            Job(ids[i], r.prompt_ids, r.params, _future_sink(futures[i]), trace, i)
            for i, r in enumerate(requests)
            if i not in aborted
        ]
        if jobs:
            self.submit_jobs(jobs)
        while not all(f.done() for f in futures):
            for i in sorted(set(cancelled) - aborted):
                if 0 <= i < len(ids):
                    self.abort(ids[i])
                aborted.add(i)
            _wait_any(futures, poll)
        return [f.result() for f in futures], trace

    def stop_admitting(self) -> None:
        with self._cond:
            self._admitting = False

    def close(self, drain_s: float = 0.0) -> None:
        """Stop admitting; wait up to `drain_s` for requests in flight; fail the rest; join."""
        deadline = time.monotonic() + drain_s
        with self._cond:
            self._admitting = False
            alive = self._thread is not None and self._thread.is_alive()
            while self._pending and time.monotonic() < deadline and alive:
                self._cond.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=max(drain_s, 10.0))

    def _start(self) -> None:
        """The engine thread, started with the first request (under the lock)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seedtree-engine", daemon=True)
            self._thread.start()

    # -- the engine thread ------------------------------------------------------------------------
    def _run(self) -> None:
        self._measure_costs()
        while True:
            with self._cond:
                idle = not self._busy()
                while not (self._inbox or self._aborts or self._reads or self._stopping) and not (
                    self._busy()
                ):
                    self._cond.wait()
                if idle and self._inbox and not self._stopping:  # the requests sent with it
                    deadline = time.monotonic() + self.admit_window_s
                    while (left := deadline - time.monotonic()) > 0 and not self._stopping:
                        self._cond.wait(timeout=left)
                jobs, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, []
                reads, self._reads = self._reads, []
                stopping = self._stopping
            for sequences, cache, future in reads:
                _read(self.pair, sequences, cache, future)
            try:
                if not self._turn(jobs, aborts, stopping):
                    return
            except Exception as exc:  # a bug below the branch isolation: fail all, start afresh
                self._fail_all(exc)

    def _measure_costs(self) -> None:
        """The cost model, once, on this thread (its torch ops belong to the engine's team): for
        an engine that plans its drafts or runs many requests at once (it prices the split of
        prompt reads of very different lengths)."""
        engine = self.step_engine
        needed = engine is not None and (engine.plans and engine.shape or engine.max_running > 1)
        if self.costs is None and needed:
            try:
                self.costs = cost_model.measure(self.pair)
            except Exception:  # e.g. a context too short for the probe: plan branch by branch
                return
            engine.costs = self.costs

    def _turn(self, jobs: list[Job], aborts: list[Hashable], stopping: bool) -> bool:
        """New jobs join, aborts leave, one step; False once stopped with nothing left."""
        if stopping:  # fail what is left: new jobs and every request in the engine
            for job in jobs:
                self._refuse(job, ShuttingDown("the engine shut down"))
            jobs, aborts = [], aborts + list(self._sinks)
        if ALL in aborts:
            aborts = [*list(self._sinks), *(j.request_id for j in jobs)]
        if not self._stepped:
            self._run_unstepped(jobs, aborts)
            return not stopping
        self._add(jobs)
        for request_id in aborts:
            self.step_engine.abort(request_id)
        if self._busy():
            self._step()
            return True
        return not stopping

    def _busy(self) -> bool:
        return self.step_engine is not None and self.step_engine.has_unfinished()

    def _fail_all(self, exc: BaseException) -> None:
        sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            sink(exc)
        self._done(len(sinks))
        if self._stepped:
            self.step_engine = self._new_step_engine()

    def _refuse(self, job: Job, exc: BaseException) -> None:
        job.sink(exc)
        self._done(1)

    def _add(self, jobs: list[Job]) -> None:
        engine = self.step_engine
        for job in jobs:
            try:
                engine.add_request(job.request_id, job.prompt_ids, job.params)
            except Exception as exc:  # checked before submit; a late surprise fails this job
                self._refuse(job, exc)
                continue
            self._sinks[job.request_id] = job.sink
            branch = engine.ids.get(job.request_id)
            if job.trace is not None and branch is not None:
                engine.trace.routes[branch.index] = (job.trace, job.branch)

    def _step(self) -> list[RequestOutput]:
        engine = self.step_engine
        outputs = engine.step()
        finished = 0
        for out in outputs:
            self._sinks[out.request_id](out)
            if out.finished:
                del self._sinks[out.request_id]
                engine.trace.routes.pop(out.index, None)
                finished += 1
        if finished:
            self._done(finished)
        return outputs

    def _done(self, n: int) -> None:
        with self._cond:
            self._pending -= n
            self._cond.notify_all()

    # -- methods that do not run on the step engine -----------------------------------------------
    def _run_unstepped(self, jobs: list[Job], aborts: list[Hashable]) -> None:
        """`ar` / `hf-assisted`: request after request. An abort that arrives before a request
        starts cancels it (its result is empty); a request that fails gets its error."""
        gone = set(aborts)
        live = [j for j in jobs if j.request_id not in gone]
        for job in (j for j in jobs if j.request_id in gone):
            stats = DecodeStats(method=self.method.name)
            self._finish(job, GenerationResult([], "", "cancelled", stats))
        if not live:
            return
        decode = generate_ar if self.method.schedule == "reference" else generate_hf_assisted
        for job in live:
            trace, start = job.trace, time.perf_counter()
            try:
                result = decode(self.pair, job.prompt_ids, job.params)
            except Exception as exc:  # this request only
                self._refuse(job, exc)
                continue
            if trace is not None:
                shift = start - trace.t0
                trace.add("decode", [job.branch], shift, time.perf_counter() - trace.t0)
            self._finish(job, result)

    def _finish(self, job: Job, result: GenerationResult) -> None:
        ids = list(result.token_ids)
        out = RequestOutput(job.request_id, job.branch, ids, ids, True, result, result.logprobs)
        job.sink(out)
        self._done(1)


def _read(pair: ModelPair, sequences: list[Read], cache: ReadCache | None, future: Future) -> None:
    try:
        future.set_result(read(pair, sequences, cache))
    except Exception as exc:
        future.set_exception(exc)


def _future_sink(future: Future) -> Sink:
    def sink(out: RequestOutput | BaseException) -> None:
        if isinstance(out, BaseException):
            future.set_exception(out)
        elif out.finished:
            future.set_result(out.result)

    return sink


def _wait_any(futures: list[Future], timeout: float | None) -> None:
    wait([f for f in futures if not f.done()], timeout=timeout, return_when=FIRST_COMPLETED)
