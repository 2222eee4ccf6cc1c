"""Many requests at once: `generate_many(pair, requests, method)`, for every registered method
(`seedtree.engine.methods`). Returns one `GenerationResult` per request (in request order), the
timeline trace and run stats. The step engine serves `serial` and `batched` methods, the paper's
runner `threads`, and two plain loops the reference AR and transformers' assisted generation.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field, replace

from seedtree.decoding.ar import generate_ar
from seedtree.decoding.branch import Branch, Request
from seedtree.decoding.hf import generate_hf_assisted
from seedtree.decoding.lookup import LookupIndex
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import derive_seed
from seedtree.engine.methods import get_method
from seedtree.engine.paper import run_seed
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.engine.step import StepEngine, check_prompt
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair
from seedtree.scheduling.runner import SchedulerConfig
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


def expand_requests(prompts: list[list[int]], params: SamplingParams) -> list[Request]:
    """n samples per prompt (params.n). Sample 0 keeps the request's seed, sample j > 0 gets a
    seed hashed from (seed, j) (`derive_seed`): nearby seeds share no samples."""
    requests = []
    for ids in prompts:
        for j in range(params.n):
            seed = params.seed
            if seed is not None and j > 0:
                seed = derive_seed(seed, "sample", j)
            requests.append(Request(ids, replace(params, seed=seed, n=1)))
    return requests


def _cancelled_result(method: str) -> GenerationResult:
    return GenerationResult([], "", "cancelled", DecodeStats(method=method))


def _run_plain(pair, requests, trace, cancelled, decode) -> list[GenerationResult]:
    """Request after request (reference AR, transformers' assisted generation)."""
    results = []
    for i, r in enumerate(requests):
        if i in cancelled:
            results.append(_cancelled_result(trace.method))
            continue
        start = trace.now()
        results.append(decode(pair, r.prompt_ids, r.params))
        trace.add("decode", [i], start, trace.now())
    return results


def _run_engine(
    pair, requests, method, spec, cache, trace, cancelled, lookup
) -> list[GenerationResult]:
    engine = StepEngine(pair, method, spec, prefix_cache=cache, trace=trace, lookup=lookup)
    for i, r in enumerate(requests):
        engine.add_request(i, r.prompt_ids, r.params)
    results: dict[int, GenerationResult] = {}
    while engine.has_unfinished():
        for i in sorted(cancelled):  # may grow while we run (another thread)
            engine.abort(i)
        results |= {out.request_id: out.result for out in engine.step() if out.finished}
    return [results[i] for i in range(len(requests))]


def generate_many(
    pair: ModelPair,
    requests: list[Request],
    method: str = "seed-batched",
    spec: SpecConfig | None = None,
    scheduler: SchedulerConfig | None = None,
    cancelled: set[int] | None = None,
    prefix_cache: PrefixCache | None = None,
    lookup: LookupIndex | None = None,
) -> ManyResult:
    """Decode every request with `method`; results in request order, plus the trace and stats.
    `cancelled`: request indices to stop (may be added to from another thread while running;
    unknown indices are ignored). `prefix_cache`: KV kept across calls (methods that use one;
    a fresh cache for this call when None). `lookup`: the text index of lookup drafting
    (`spec.lookup` > 0), shared across calls when passed."""
    m = get_method(method)
    if not requests:
        raise SeedtreeError("no requests: pass at least one prompt")
    for r in requests:
        check_prompt(pair, r.prompt_ids)
    spec = spec or SpecConfig()
    cancelled = cancelled if cancelled is not None else set()
    trace = Trace(method=method)
    start = time.perf_counter()
    if m.schedule == "reference":
        results = _run_plain(pair, requests, trace, cancelled, generate_ar)
    elif m.schedule == "hf":
        results = _run_plain(pair, requests, trace, cancelled, generate_hf_assisted)
    elif m.schedule == "threads":
        shape = m.shape(spec)
        branches = [Branch(i, pair, r, spec, shape, method) for i, r in enumerate(requests)]
        if spec.lookup and shape:
            index = lookup if lookup is not None else LookupIndex()
            for b in branches:
                b.attach_lookup(index)
        run_seed(branches, trace, scheduler, cancelled)
        results = [b.result() for b in branches]
    else:
        cache = prefix_cache if prefix_cache is not None else PrefixCache()
        results = _run_engine(pair, requests, m, spec, cache, trace, cancelled, lookup)
    return ManyResult(results, trace, _run_stats(method, results, trace, start))


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
