"""The server's engine: `EngineLoop` is THE engine of the serving process (`LLMEngine`, built
from the server's config) with the counters /metrics reads.

    submit_jobs(jobs)  from any thread: the choices of one HTTP request, all admitted or none
                       (`QueueFull` past capacity, `ShuttingDown` once stopping)
    abort(id)          from any thread: the request leaves at the next step, its KV freed
    stop()             stop admitting, give in-flight requests `drain_s` to finish, fail the
                       rest, join the thread

This module knows nothing about HTTP or asyncio.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from seedtree.engine.core import Job, LLMEngine, QueueFull, ShuttingDown
from seedtree.engine.step import RequestOutput, StepEngine
from seedtree.models.loader import ModelPair
from seedtree.server.config import ServerConfig

__all__ = ["EngineLoop", "Job", "LoopStats", "QueueFull", "ShuttingDown"]

RATE_WINDOW_S = 10.0  # tokens/s is measured over this window


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


class EngineLoop(LLMEngine):
    def __init__(self, pair: ModelPair, config: ServerConfig) -> None:
        super().__init__(
            pair, config.method, config.spec, cache_mb=config.cache_mb,
            max_running=config.max_running, max_queued=config.max_queued,
        )  # fmt: skip
        self.config = config
        self.stats = LoopStats()

    @property
    def engine(self) -> StepEngine:
        return self.step_engine

    def start(self) -> None:
        """The engine thread, now (it measures this machine's costs before its first step)."""
        with self._cond:
            self._start()

    def stop(self, drain_s: float | None = None) -> None:
        """Stop admitting; wait up to `drain_s` for in-flight choices; abort the rest; join."""
        self.close(self.config.drain_s if drain_s is None else drain_s)

    def _fail_all(self, exc: BaseException) -> None:
        self.stats.engine_failures += 1
        super()._fail_all(exc)

    def _step(self) -> list[RequestOutput]:
        outputs = super()._step()
        self.stats.steps += 1
        self.stats.recent.append((time.monotonic(), sum(len(o.new_token_ids) for o in outputs)))
        for out in outputs:
            if out.finished:
                self._count(out)
        return outputs

    def _count(self, out: RequestOutput) -> None:
        s, st = out.result.stats, self.stats
        st.finished[out.result.finish_reason] += 1
        st.prompt_tokens += s.prompt_tokens
        st.cached_tokens += s.cached_tokens
        st.generated_tokens += len(out.result.token_ids)
        st.drafted += s.drafted
        st.accepted += s.accepted
