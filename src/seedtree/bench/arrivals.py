"""Requests arriving over time (a server's day): N GSM8K requests, one every `interval_s`.

  continuous   the step engine admits each request at the next round after it arrives
               (continuous batching), for a step-engine method (`seed-batched`,
               `batched-ar-cached`, `batched-ar`)
  static       what an engine without continuous batching does: when idle, it takes every
               request that has arrived as one `batched-ar` batch and runs it to the end

Per pass: throughput (requests / s from the first arrival to the last finish) and mean latency
(finish - arrival). Medians over passes; ratios within a pass.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

from seedtree.bench.many import workload_requests
from seedtree.decoding import SpecConfig
from seedtree.engine import Job, Request, run_many
from seedtree.llm import LLM


@dataclass(frozen=True)
class ArrivalsBenchConfig:
    n: int = 12
    interval_s: float = 2.0
    max_new_tokens: int = 128
    gamma: int = 4
    repeat: int = 3
    dtype: str = "bfloat16"
    draft_dtype: str = "int8"
    methods: tuple[str, ...] = ("seed-batched", "batched-ar-cached", "static batched-ar")


def _continuous(llm: LLM, requests: list[Request], method: str, cfg) -> list[float]:
    """Latency of each request on the engine; arrivals join its running batch between rounds."""
    engine = llm.engine(method, SpecConfig(gamma=cfg.gamma))
    t0, finish, done = time.perf_counter(), {}, threading.Semaphore(0)

    def sink(i: int):
        def told(out) -> None:  # on the engine thread
            if isinstance(out, BaseException) or out.finished:
                finish[i] = time.perf_counter() - t0
                done.release()

        return told

    for i, r in enumerate(requests):
        time.sleep(max(0.0, i * cfg.interval_s - (time.perf_counter() - t0)))
        engine.submit_jobs([Job(engine.new_id(), r.prompt_ids, r.params, sink(i))])
    for _ in requests:
        done.acquire()
    return [finish[i] - i * cfg.interval_s for i in range(len(requests))]


def _static(llm: LLM, requests: list[Request], cfg) -> list[float]:
    """Latency of each request when every batch runs to its end before the next one starts."""
    t0, done, finish = time.perf_counter(), 0, {}
    while done < len(requests):
        now = time.perf_counter() - t0
        arrived = min(len(requests), int(now // cfg.interval_s) + 1)
        if arrived == done:
            time.sleep(done * cfg.interval_s - now)
            continue
        run_many(llm.engine("batched-ar"), requests[done:arrived])
        for i in range(done, arrived):
            finish[i] = time.perf_counter() - t0
        done = arrived
    return [finish[i] - i * cfg.interval_s for i in range(len(requests))]


def run_arrivals_bench(llm: LLM, cfg: ArrivalsBenchConfig, progress: bool = True) -> dict:
    requests = workload_requests(llm, "different", cfg.n, cfg.max_new_tokens)
    _continuous(llm, requests[:2], "seed-batched", cfg)  # warm-up
    passes = []
    for k in range(cfg.repeat):
        row = {}
        order = cfg.methods[k % len(cfg.methods) :] + cfg.methods[: k % len(cfg.methods)]
        for method in order:  # rotated between passes: no method always runs first
            if method.startswith("static "):
                lat = _static(llm, requests, cfg)
            else:
                lat = _continuous(llm, requests, method, cfg)
            span = max(i * cfg.interval_s + x for i, x in enumerate(lat))
            row[method] = {
                "mean_latency_s": statistics.mean(lat),
                "throughput_rps": len(lat) / span,
            }
            if progress:
                print(f"pass {k + 1}: {method}: {row[method]}", flush=True)
        passes.append(row)
    summary = {}
    for method in cfg.methods:
        lat = [p[method]["mean_latency_s"] for p in passes]
        rps = [p[method]["throughput_rps"] for p in passes]
        base = [p["static batched-ar"]["mean_latency_s"] for p in passes]
        summary[method] = {
            "mean_latency_s": statistics.median(lat),
            "throughput_rps": statistics.median(rps),
            "latency_vs_static": statistics.median(b / x for b, x in zip(base, lat, strict=True)),
        }
    return {"config": cfg.__dict__, "passes": passes, "summary": summary}


def markdown_table(report: dict) -> str:
    lines = [
        "| method | throughput (req/s) | mean latency (s) | latency gain vs static batched-ar |",
        "|---|---|---|---|",
    ]
    for method, s in report["summary"].items():
        lines.append(
            f"| {method} | {s['throughput_rps']:.3f} | {s['mean_latency_s']:.1f} | "
            f"{s['latency_vs_static']:.2f}x |"
        )
    return "\n".join(lines)
