"""The engine loop: ONE thread owns the step engine; everything else talks to it through queues.

    submit(jobs)   from any thread: the choices of one HTTP request, all admitted or none
                   (`QueueFull` past capacity, `ShuttingDown` once stopping)
    abort(id)      from any thread: the request leaves at the next step, its KV freed
    stop()         stop admitting, give in-flight requests `drain_s` to finish, fail the rest,
                   join the thread

The thread: take new jobs and aborts (under a lock), `engine.step()`, hand every `RequestOutput`
to its job's `sink` (the HTTP side turns that into `loop.call_soon_threadsafe`). It sleeps on a
condition while there is nothing to do. This module knows nothing about HTTP or asyncio.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from seedtree.decoding.lookup import LookupIndex
from seedtree.decoding.params import SamplingParams
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.engine.step import RequestOutput, StepEngine
from seedtree.models.loader import ModelPair
from seedtree.scheduling.trace import Trace
from seedtree.server.config import ServerConfig

MAX_TRACE = 10_000  # trace intervals kept; past that the engine starts a fresh trace
RATE_WINDOW_S = 10.0  # tokens/s is measured over this window
# An idle engine woken by a request waits this long for the ones sent with it (a ToT level's k
# concurrent requests arrive a few ms apart) so they prefill and decode as one batch, as one n=k
# request would; a busy engine never waits (arrivals join at its next step).
ADMIT_WINDOW_S = 0.01

Sink = Callable[[RequestOutput | BaseException], None]


class QueueFull(Exception):
    """The engine holds as many choices as it may: retry later (HTTP 429)."""


class ShuttingDown(Exception):
    """The server no longer admits requests (HTTP 503)."""


@dataclass(frozen=True)
class Job:
    """One choice: an engine request and where its outputs go."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sink: Sink


@dataclass
class LoopStats:
    """Counters since start-up, written by the engine thread only (read for /metrics)."""

    finished: Counter = field(default_factory=Counter)  # finish_reason -> choices
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served by the prefix cache
    generated_tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    engine_failures: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=4096))  # (time, new tokens)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def prefix_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def tokens_per_s(self, now: float) -> float:
        recent = [n for t, n in list(self.recent) if now - t <= RATE_WINDOW_S]
        return sum(recent) / RATE_WINDOW_S


class EngineLoop:
    def __init__(self, pair: ModelPair, config: ServerConfig) -> None:
        self.pair, self.config = pair, config
        self.engine = self._new_engine()
        self.capacity = self.engine.max_running + config.max_queued
        self.stats = LoopStats()
        self._cond = threading.Condition()
        self._inbox: list[Job] = []
        self._aborts: list[str] = []
        self._sinks: dict[str, Sink] = {}  # engine thread only
        self._pending = 0  # choices submitted and not finished (under the lock)
        self._admitting = True
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="seedtree-engine", daemon=True)

    def _new_engine(self) -> StepEngine:
        spec = self.config.spec
        return StepEngine(
            self.pair,
            self.config.method,
            spec,
            prefix_cache=PrefixCache(self.config.cache_mb),
            max_running=self.config.max_running,
            lookup=LookupIndex() if spec.lookup else None,
        )

    # -- any thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def admitting(self) -> bool:
        return self._admitting

    @property
    def queue_depth(self) -> int:
        """Choices waiting for a running slot."""
        return max(0, self._pending - self.engine.running_requests)

    @property
    def running(self) -> int:
        """Choices being decoded (an identical greedy choice follows another's branch)."""
        return self.engine.running_requests

    def submit(self, jobs: list[Job]) -> None:
        """All of `jobs` join the engine at its next step, or none (QueueFull, ShuttingDown)."""
        with self._cond:
            if not self._admitting:
                raise ShuttingDown("the server is shutting down")
            if self._pending + len(jobs) > self.capacity:
                raise QueueFull(
                    f"the server holds {self._pending} of {self.capacity} choices: retry later"
                )
            self._inbox.extend(jobs)
            self._pending += len(jobs)
            self._cond.notify()

    def abort(self, request_id: str) -> None:
        with self._cond:
            self._aborts.append(request_id)
            self._cond.notify()

    def stop_admitting(self) -> None:
        with self._cond:
            self._admitting = False

    def stop(self, drain_s: float | None = None) -> None:
        """Stop admitting; wait up to `drain_s` for in-flight choices; abort the rest; join."""
        drain_s = self.config.drain_s if drain_s is None else drain_s
        deadline = time.monotonic() + drain_s
        with self._cond:
            self._admitting = False
            while self._pending and time.monotonic() < deadline and self._thread.is_alive():
                self._cond.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=max(drain_s, 10.0))

    # -- the engine thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                idle = not self._busy()
                while not (self._inbox or self._aborts or self._stopping) and not self._busy():
                    self._cond.wait()
                if idle and self._inbox and not self._stopping:  # the requests sent with it
                    deadline = time.monotonic() + ADMIT_WINDOW_S
                    while (left := deadline - time.monotonic()) > 0 and not self._stopping:
                        self._cond.wait(timeout=left)
                jobs, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, []
                stopping = self._stopping
            try:
                if not self._turn(jobs, aborts, stopping):
                    return
            except Exception as exc:  # a bug below the branch isolation: fail all, start afresh
                self._fail_all(exc)

    def _turn(self, jobs: list[Job], aborts: list[str], stopping: bool) -> bool:
        """New jobs join, aborts leave, one step; False once stopped with nothing left."""
        if stopping:  # fail what is left: new jobs and every request in the engine
            for job in jobs:
                self._refuse(job, ShuttingDown("the server shut down"))
            jobs, aborts = [], aborts + list(self._sinks)
        self._add(jobs)
        for request_id in aborts:
            self.engine.abort(request_id)
        if self._busy():
            self._step()
            return True
        return not stopping

    def _fail_all(self, exc: BaseException) -> None:
        self.stats.engine_failures += 1
        sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            sink(exc)
        self._done(len(sinks))
        self.engine = self._new_engine()

    def _busy(self) -> bool:
        return self.engine.has_unfinished()

    def _refuse(self, job: Job, exc: BaseException) -> None:
        job.sink(exc)
        self._done(1)

    def _add(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                self.engine.add_request(job.request_id, job.prompt_ids, job.params)
            except Exception as exc:  # checked before submit; a late surprise fails this job
                self._refuse(job, exc)
                continue
            self._sinks[job.request_id] = job.sink

    def _step(self) -> None:
        outputs = self.engine.step()
        self.stats.steps += 1
        new = sum(len(o.new_token_ids) for o in outputs)
        self.stats.recent.append((time.monotonic(), new))
        for out in outputs:
            self._sinks[out.request_id](out)
            if out.finished:
                del self._sinks[out.request_id]
                self._count(out)
        finished = sum(o.finished for o in outputs)
        if finished:
            self._done(finished)
        if len(self.engine.trace.intervals) > MAX_TRACE:  # bounded memory on a long-lived server
            self.engine.trace = Trace(method=self.engine.method.name)

    def _count(self, out: RequestOutput) -> None:
        s, st = out.result.stats, self.stats
        st.finished[out.result.finish_reason] += 1
        st.prompt_tokens += s.prompt_tokens
        st.cached_tokens += s.cached_tokens
        st.generated_tokens += len(out.result.token_ids)
        st.drafted += s.drafted
        st.accepted += s.accepted

    def _done(self, n: int) -> None:
        with self._cond:
            self._pending -= n
            self._cond.notify_all()
