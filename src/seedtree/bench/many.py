"""Many-request benchmark: every `generate_many` method on N GSM8K requests, side by side.

Two workloads, as in a reasoning-tree level: `same` = N samples of one prompt (thought
generation; at T=0 the N outputs coincide, which is still N requests of work), `different` = N
different prompts (state evaluation). One short warm-up, then `repeat` passes; each pass runs
every method on the workload, methods in a fixed order. Medians over passes; speedups are ratios
within a pass, then the median. The last pass's trace of every method is saved (JSON + Gantt PNG),
and its outputs that are not serial AR's are diagnosed: a tie of the target's scores or a DEFECT.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from seedtree.bench.agreement import same_as_ar
from seedtree.bench.stats import median_rows
from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.check import diagnose
from seedtree.engine import METHODS, Request, run_many
from seedtree.engine.methods import scoring_of
from seedtree.llm import LLM
from seedtree.progress import progress_bar
from seedtree.scheduling import save_gantt
from seedtree.tasks import gsm8k


@dataclass(frozen=True)
class ManyBenchConfig:
    n: int = 3
    max_new_tokens: int = 128
    gamma: int = 4
    k_config: tuple[int, ...] = (2, 1, 1)
    repeat: int = 3
    dtype: str = "bfloat16"
    draft_dtype: str = "int8"
    methods: tuple[str, ...] = tuple(m for m in METHODS if m != "hf-assisted")
    workloads: tuple[str, ...] = ("same", "different")


def workload_requests(llm: LLM, kind: str, n: int, max_new_tokens: int) -> list[Request]:
    problems = gsm8k.load_problems()
    chosen = [problems[0]] * n if kind == "same" else problems[:n]
    params = SamplingParams(max_new_tokens=max_new_tokens)
    return [
        Request(llm.encode(gsm8k.subquestion_prompt(p.question), chat=None), params) for p in chosen
    ]


def _pass(llm, requests, cfg, spec) -> dict:
    return {m: run_many(llm.engine(m, spec), requests) for m in cfg.methods}


def agreement(llm: LLM, requests: list[Request], runs: dict, spec: SpecConfig) -> dict:
    """Per method, the last pass's requests whose output is not serial AR's, each diagnosed
    (`seedtree.decoding.check.diagnose`: a tie of the target's scores, or a DEFECT)."""
    ar = [r.token_ids for r in runs["ar"].results]
    batch = [(r.prompt_ids, ids) for r, ids in zip(requests, ar, strict=True)]
    out = {}
    for m, run in runs.items():
        scoring = scoring_of(m, spec.gamma, spec.k_config)
        out[m] = []
        for i, result in enumerate(run.results):
            d = diagnose(llm.models, batch[i][0], ar[i], result.token_ids, scoring, batch, i)
            if d is not None:
                out[m].append({"request": i} | d.to_dict())
    return out


def run_many_bench(
    llm: LLM, cfg: ManyBenchConfig, out: Path | None = None, progress: bool = True
) -> dict:
    spec = SpecConfig(gamma=cfg.gamma, k_config=cfg.k_config)
    report = {
        "config": cfg.__dict__,
        "pair": llm.models.name,
        "torch_threads": torch.get_num_threads(),
        "workloads": {},
    }
    for kind in cfg.workloads:
        requests = workload_requests(llm, kind, cfg.n, cfg.max_new_tokens)
        warm = [Request(r.prompt_ids, SamplingParams(max_new_tokens=8)) for r in requests]
        _pass(llm, warm, cfg, spec)
        passes = []
        desc = f"many {kind} {cfg.dtype}"
        for _ in progress_bar(range(cfg.repeat), desc=desc, unit="pass", disable=not progress):
            runs = _pass(llm, requests, cfg, spec)
            ar = runs["ar"].results
            row = {}
            for m, run in runs.items():
                row[m] = {
                    "wall_s": run.stats.wall_s,
                    "tokens": run.stats.new_tokens,
                    "tokens_per_s": run.stats.tokens_per_s,
                    "target_busy_fraction": run.stats.target_busy_fraction,
                    "mean_queue_wait_s": run.stats.mean_queue_wait_s,
                    "alpha": statistics.mean(run.stats.alpha) if run.stats.alpha else 0.0,
                    "peak_rss_mb": run.stats.peak_rss_mb,
                    "overlaps": len(run.trace.overlaps()),
                    "identical_to_ar": [r.token_ids for r in run.results]
                    == [r.token_ids for r in ar],
                }
            for m in runs:
                row[m]["speedup_vs_ar"] = row["ar"]["wall_s"] / row[m]["wall_s"]
                if "batched-ar" in row:
                    row[m]["speedup_vs_batched_ar"] = row["batched-ar"]["wall_s"] / row[m]["wall_s"]
            passes.append(row)
        if out is not None:
            for m, run in runs.items():
                run.trace.save(out / f"trace_{kind}_{cfg.dtype}_{m}.json")
                save_gantt(run.trace, out / f"gantt_{kind}_{cfg.dtype}_{m}.png")
        report["workloads"][kind] = {
            "median": median_rows(passes),
            "agreement": agreement(llm, requests, runs, spec),  # last pass, diagnosed
            "passes": passes,
        }
    return report


def markdown_tables(report: dict) -> str:
    cfg = report["config"]
    lines = []
    for kind, data in report["workloads"].items():
        what = "N samples of one prompt" if kind == "same" else "N different prompts"
        lines += [
            f"**{kind}** ({what}), N={cfg['n']}, {cfg['max_new_tokens']} new tokens, T=0, "
            f"target {cfg['dtype']}, draft {cfg['draft_dtype']}, gamma={cfg['gamma']}, "
            f"k_config={','.join(map(str, cfg['k_config']))}, {cfg['repeat']} passes (median)",
            "",
            "| method | wall s | tok/s | vs serial AR | vs batched-ar | target busy | "
            "mean queue wait ms | alpha | draft/verify overlaps | == AR |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m, r in data["median"].items():
            lines.append(
                f"| {m} | {r['wall_s']:.1f} | {r['tokens_per_s']:.2f} | "
                f"**{r['speedup_vs_ar']:.2f}x** | {r.get('speedup_vs_batched_ar', 0):.2f}x | "
                f"{r['target_busy_fraction']:.0%} | {r['mean_queue_wait_s'] * 1000:.0f} | "
                f"{r['alpha']:.2f} | {r['overlaps']:.0f} | "
                f"{same_as_ar(r['identical_to_ar'], data.get('agreement', {}).get(m, []))} |"
            )
        lines += [
            f"- {m}, request {row['request']}: first divergence at token {row['position']}: "
            f"{row['label']}"
            for m, rows in data.get("agreement", {}).items()
            for row in rows
        ]
        lines.append("")
    return "\n".join(lines)


def save_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
