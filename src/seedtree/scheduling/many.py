"""Many requests at once: `generate_many(pair, requests, method)`.

Methods:
  ar, sd, mcsd      serial baselines: one request after another (the paper's baselines)
  batched-ar        the target decodes all requests as one padded batch
  seed, mcsd-seed   SEED: concurrent drafters, one verifier, FCFS queue, rounds (chain / tree)
  seed-batched      ours: the verifier verifies every queued draft in ONE batched target forward,
                    and requests with the same prompt prefill it once and share its KV
Every method returns one `GenerationResult` per request (in request order) and a timeline trace.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field, replace

from seedtree.decoding.batched import generate_batched_ar, verify_batch
from seedtree.decoding.branch import Branch, Request
from seedtree.decoding.params import SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair
from seedtree.scheduling.runner import Runner, SchedulerConfig
from seedtree.scheduling.trace import Trace

MANY_METHODS = ("ar", "sd", "mcsd", "batched-ar", "seed", "mcsd-seed", "seed-batched")


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


@dataclass
class ManyResult:
    results: list[GenerationResult]
    trace: Trace
    stats: RunStats
    extra: dict = field(default_factory=dict)


def _k_config(method: str, spec: SpecConfig) -> tuple[int, ...]:
    return spec.k_config if method in ("mcsd", "mcsd-seed") else (1,) * spec.gamma


class BranchWork:
    """The `Work` a runner drives: real branches, real models."""

    def __init__(self, branches: list[Branch], batched: bool) -> None:
        self.branches, self.batched = branches, batched

    def draft(self, i: int) -> None:
        self.branches[i].draft()

    def verify(self, ids: list[int]) -> None:
        if len(ids) == 1:
            self.branches[ids[0]].verify()
        else:
            verify_batch([self.branches[i] for i in ids])

    def done(self, i: int) -> bool:
        return self.branches[i].done

    def fail(self, i: int, error: str) -> None:
        self.branches[i].error = error

    def cancel(self, i: int) -> None:
        self.branches[i].cancelled = True


def _prefill(branches: list[Branch], trace: Trace, share: bool) -> None:
    """Prefill every branch; with `share`, branches with the same prompt copy the first one's
    caches instead of recomputing them (one state, many thoughts)."""
    first: dict[tuple[int, ...], Branch] = {}
    for b in branches:
        start = trace.now()
        key = tuple(b.seq.tokens)
        if share and key in first:
            b.prefill(shared=first[key])
        else:
            b.prefill()
            first[key] = b
        trace.add("prefill", [b.index], start, trace.now())


def _run_serial(branches: list[Branch], trace: Trace) -> None:
    for b in branches:
        start = trace.now()
        b.prefill()
        trace.add("prefill", [b.index], start, trace.now())
        while not b.done:
            t = trace.now()
            b.draft()
            trace.add("draft", [b.index], t, trace.now())
            t = trace.now()
            b.verify()
            trace.add("verify", [b.index], t, trace.now(), waits=[0.0])


def _run_ar(pair: ModelPair, requests: list[Request], trace: Trace) -> list[GenerationResult]:
    from seedtree.decoding.ar import generate_ar

    results = []
    for i, r in enumerate(requests):
        start = trace.now()
        results.append(generate_ar(pair, r.prompt_ids, r.params))
        trace.add("decode", [i], start, trace.now())
    return results


def expand_requests(prompts: list[list[int]], params) -> list[Request]:
    """n samples per prompt (params.n): sample j of a prompt gets seed + j."""
    requests = []
    for ids in prompts:
        for j in range(params.n):
            seed = None if params.seed is None else params.seed + j
            requests.append(Request(ids, replace(params, seed=seed, n=1)))
    return requests


def generate_many(
    pair: ModelPair,
    requests: list[Request],
    method: str = "seed-batched",
    spec: SpecConfig | None = None,
    scheduler: SchedulerConfig | None = None,
    cancelled: set[int] | None = None,
) -> ManyResult:
    """Decode every request with `method`; results in request order, plus the trace and stats.
    `cancelled`: branch indices to stop (may be added to from another thread while running)."""
    if method not in MANY_METHODS:
        raise SeedtreeError(f"unknown method '{method}': choose one of {', '.join(MANY_METHODS)}")
    if not requests:
        raise SeedtreeError("no requests: pass at least one prompt")
    spec = spec or SpecConfig()
    trace = Trace(method=method)
    start = time.perf_counter()
    if method == "ar":
        results = _run_ar(pair, requests, trace)
    elif method == "batched-ar":
        t = trace.now()
        results = generate_batched_ar(
            pair, [r.prompt_ids for r in requests], [r.params for r in requests]
        )
        trace.add("decode", list(range(len(requests))), t, trace.now())
    else:
        k_config = _k_config(method, spec)
        branches = [Branch(i, pair, r, k_config, spec, method) for i, r in enumerate(requests)]
        if method in ("sd", "mcsd"):
            _run_serial(branches, trace)
        else:
            _prefill(branches, trace, share=method == "seed-batched")
            config = scheduler or SchedulerConfig(batched=method == "seed-batched")
            if config.batched != (method == "seed-batched"):
                config = SchedulerConfig(**{**config.__dict__, "batched": method == "seed-batched"})
            Runner(
                BranchWork(branches, config.batched),
                list(range(len(branches))),
                config,
                trace,
                cancelled,
            ).run()
        results = [b.result() for b in branches]
    wall = time.perf_counter() - start
    tokens = sum(len(r.token_ids) for r in results)
    stats = RunStats(
        method=method,
        wall_s=wall,
        new_tokens=tokens,
        tokens_per_s=tokens / wall if wall else 0.0,
        target_busy_fraction=trace.target_busy_fraction(),
        mean_queue_wait_s=trace.mean_queue_wait(),
        alpha=[r.stats.alpha for r in results],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        errors=sum(r.error is not None for r in results),
    )
    return ManyResult(results, trace, stats)


__all__ = ["MANY_METHODS", "ManyResult", "Request", "RunStats", "expand_requests", "generate_many"]
