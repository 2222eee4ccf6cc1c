"""GET /metrics: the engine loop's counters as Prometheus text, read at scrape time.

One registry per app (tests start several servers in one process), filled by a collector that
reads `EngineLoop` and its `LoopStats`; nothing here writes to the loop.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from seedtree.server.loop import EngineLoop


class LoopCollector:
    def __init__(self, loop: EngineLoop) -> None:
        self.loop = loop

    def collect(self):
        loop, st = self.loop, self.loop.stats
        yield _gauge("queue_depth", "choices waiting for a running slot", loop.queue_depth)
        yield _gauge("running_branches", "choices decoding together", loop.running)
        yield _gauge("pending_choices", "choices admitted and not finished", loop.pending)
        yield _gauge(
            "tokens_per_second",
            "tokens generated per second over the last 10 s",
            st.tokens_per_s(time.monotonic()),
        )
        yield _gauge(
            "acceptance_rate", "accepted / drafted tokens of finished choices", st.acceptance_rate
        )
        yield _gauge(
            "prefix_cache_hit_rate",
            "prompt tokens served by the prefix cache / prompt tokens",
            st.prefix_hit_rate,
        )
        yield _counter("generation_tokens", "tokens generated (finished)", st.generated_tokens)
        yield _counter("prompt_tokens", "prompt tokens (finished choices)", st.prompt_tokens)
        yield _counter("draft_tokens", "draft tokens proposed", st.drafted)
        yield _counter("accepted_tokens", "draft tokens accepted", st.accepted)
        yield _counter("engine_steps", "engine rounds", st.steps)
        finished = CounterMetricFamily(
            "seedtree_choices_finished", "choices finished, by finish_reason", labels=["reason"]
        )
        for reason in ("stop", "length", "cancelled", "error"):
            finished.add_metric([reason], st.finished.get(reason, 0))
        yield finished


def _gauge(name: str, about: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"seedtree_{name}", about, value=value)


def _counter(name: str, about: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"seedtree_{name}", about, value=value)


class Metrics:
    """The app's registry, built once."""

    def __init__(self, loop: EngineLoop) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(LoopCollector(loop))

    def text(self) -> bytes:
        return generate_latest(self.registry)
