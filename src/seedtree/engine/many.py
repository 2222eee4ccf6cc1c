"""A batch of requests with its run stats: `run_many(engine, requests)` on a long-lived
`LLMEngine`, or `generate_many(pair, requests, method)` on a one-off one, for every registered
method (`seedtree.engine.methods`). Returns one `GenerationResult` per request (in request
order), the timeline trace and run stats.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

from seedtree.decoding.branch import Request
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.engine.core import LLMEngine
from seedtree.engine.methods import get_method
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.engine.step import check_prompt
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair
from seedtree.scheduling.trace import Trace


@dataclass
class RunStats:
    method: str
    wall_s: float
    new_tokens: int
    tokens_per_s: float
    target_busy_fraction: float
    mean_queue_wait_s: float
    alpha: list[float]  # per branch
    peak_rss_mb: float
    errors: int
    prefix_hit_rate: float = 0.0  # prompt tokens served by the prefix cache / prompt tokens
    mean_draft_len: float = 0.0  # draft tokens per verification round, over all branches
    accepted_model: int = 0  # accepted draft tokens the draft model proposed
    accepted_lookup: int = 0  # accepted draft tokens only lookup drafting proposed
    copied_tokens: int = 0  # tokens of identical greedy requests decoded once (SpecConfig.dedup)


@dataclass
class ManyResult:
    results: list[GenerationResult]
    trace: Trace
    stats: RunStats
    extra: dict = field(default_factory=dict)


def generate_many(
    pair: ModelPair,
    requests: list[Request],
    method: str = "seed-batched",
    spec: SpecConfig | None = None,
    cancelled: set[int] | None = None,
    prefix_cache: PrefixCache | None = None,
) -> ManyResult:
    """Decode every request with `method` on a one-off `LLMEngine`; results in request order,
    plus the trace and stats. `cancelled`: request indices to stop (may be added to from another
    thread while running; unknown indices are ignored). `prefix_cache`: KV kept across calls
    (methods that use one). A long-lived client keeps one `LLMEngine` and calls its `generate`."""
    get_method(method)
    if not requests:
        raise SeedtreeError("no requests: pass at least one prompt")
    for r in requests:
        check_prompt(pair, r.prompt_ids)
    engine = LLMEngine(pair, method, spec, prefix_cache=prefix_cache, admit_window_s=0.0)
    try:
        return run_many(engine, requests, cancelled)
    finally:
        engine.close()


def generate_sd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    """Speculative decoding of one request: the engine with `sd` (one request at a time)."""
    return generate_many(pair, [Request(prompt_ids, params)], "sd", spec).results[0]


def generate_mcsd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    """Multi-candidate SD of one request (token trees): the engine with `mcsd`."""
    return generate_many(pair, [Request(prompt_ids, params)], "mcsd", spec).results[0]


def run_many(
    engine: LLMEngine, requests: list[Request], cancelled: set[int] | None = None
) -> ManyResult:
    """`engine.generate(requests)` with its run stats: the offline form of a batch of requests
    (`LLM.generate`, the benchmarks). Other clients' requests may share its rounds."""
    start = time.perf_counter()
    results, trace = engine.generate(requests, cancelled)
    return ManyResult(results, trace, _run_stats(engine.method.name, results, trace, start))


def _run_stats(method: str, results: list[GenerationResult], trace: Trace, start: float):
    wall = time.perf_counter() - start
    tokens = sum(len(r.token_ids) for r in results)
    stats = [r.stats for r in results]
    decoded = [s for s in stats if not s.copied]  # a copy prefilled nothing
    prompt = sum(s.prompt_tokens for s in decoded)
    rounds = sum(s.rounds for s in stats)
    return RunStats(
        method=method,
        wall_s=wall,
        new_tokens=tokens,
        tokens_per_s=tokens / wall if wall else 0.0,
        target_busy_fraction=trace.target_busy_fraction(),
        mean_queue_wait_s=trace.mean_queue_wait(),
        alpha=[s.alpha for s in stats],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        errors=sum(r.error is not None for r in results),
        prefix_hit_rate=sum(s.cached_tokens for s in decoded) / prompt if prompt else 0.0,
        mean_draft_len=sum(s.drafted for s in stats) / rounds if rounds else 0.0,
        accepted_model=sum(s.accepted - s.lookup_accepted for s in stats),
        accepted_lookup=sum(s.lookup_accepted for s in stats),
        copied_tokens=sum(s.new_tokens for s in stats if s.copied),
    )
