"""AR vs SD on GSM8K sub-question prompts: tokens/s, alpha, measured c, and the speedup ceiling.

One warm-up pass, then `repeat` passes; in each pass every method decodes every prompt, methods
interleaved per prompt so slow drifts of the machine hit all methods alike. Reported numbers are
medians over passes; speedups are ratios within a pass, then the median.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.check import block_noise, find_divergence
from seedtree.decoding.result import GenerationResult
from seedtree.llm import LLM
from seedtree.tasks import gsm8k


@dataclass(frozen=True)
class DecodeBenchConfig:
    n_prompts: int = 5
    max_new_tokens: int = 128
    gamma: int = 4
    repeat: int = 3
    dtype: str = "float32"
    draft_dtype: str = "int8"


def leviathan_speedup(alpha: float, gamma: int, c: float) -> float:
    """Expected walltime improvement of SD over AR (Leviathan et al. 2023, Thm 3.8)."""
    if alpha >= 1.0:
        return (gamma + 1) / (gamma * c + 1)
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))


def expected_tokens_per_round(alpha: float, gamma: int) -> float:
    return (gamma + 1) if alpha >= 1.0 else (1 - alpha ** (gamma + 1)) / (1 - alpha)


def bench_prompts(llm: LLM, n: int) -> list[list[int]]:
    problems = gsm8k.load_problems()[:n]
    return [llm.encode(gsm8k.subquestion_prompt(p.question), chat=True) for p in problems]


def _one_pass(llm, prompts, params, spec) -> dict[str, list[GenerationResult]]:
    from seedtree.decoding import generate_ar, generate_sd

    out: dict[str, list[GenerationResult]] = {"ar": [], "sd": []}
    for ids in prompts:
        out["ar"].append(generate_ar(llm.models, ids, params))
        out["sd"].append(generate_sd(llm.models, ids, params, spec))
    return out


def summarize_pass(results: dict[str, list[GenerationResult]], gamma: int) -> dict:
    ar, sd = results["ar"], results["sd"]
    ar_tokens = sum(r.stats.new_tokens for r in ar)
    sd_tokens = sum(r.stats.new_tokens for r in sd)
    ar_wall = sum(r.stats.wall_s for r in ar)
    sd_wall = sum(r.stats.wall_s for r in sd)
    t_target = sum(r.stats.verify_s for r in ar) / sum(r.stats.target_forwards - 1 for r in ar)
    t_draft = sum(r.stats.draft_s for r in sd) / sum(r.stats.draft_forwards - 1 for r in sd)
    t_verify = sum(r.stats.verify_s for r in sd) / sum(r.stats.rounds for r in sd)
    drafted = sum(r.stats.drafted for r in sd)
    alpha = sum(r.stats.accepted for r in sd) / drafted if drafted else 0.0
    c = t_draft / t_target
    return {
        "ar_tokens_per_s": ar_tokens / ar_wall,
        "sd_tokens_per_s": sd_tokens / sd_wall,
        "speedup": (sd_tokens / sd_wall) / (ar_tokens / ar_wall),
        "alpha": alpha,
        "tokens_per_round": sum(r.stats.new_tokens for r in sd) / sum(r.stats.rounds for r in sd),
        "t_target_step_s": t_target,
        "t_draft_step_s": t_draft,
        "t_verify_s": t_verify,
        "c": c,
        "verify_over_step": t_verify / t_target,
        "leviathan_ceiling": leviathan_speedup(alpha, gamma, c),
        "identical": all(a.token_ids == s.token_ids for a, s in zip(ar, sd, strict=True)),
        "ar_wall_s": ar_wall,
        "sd_wall_s": sd_wall,
        "tokens": ar_tokens,
    }


def run_decode_bench(llm: LLM, cfg: DecodeBenchConfig, progress: bool = True) -> dict:
    params = SamplingParams(temperature=0.0, max_new_tokens=cfg.max_new_tokens)
    spec = SpecConfig(gamma=cfg.gamma)
    prompts = bench_prompts(llm, cfg.n_prompts)
    # warm-up: one short request per method (allocator, thread pool, first-call overheads)
    _one_pass(llm, prompts[:1], SamplingParams(max_new_tokens=16), spec)
    passes = []
    for _ in tqdm(range(cfg.repeat), desc=f"bench {cfg.dtype}", disable=not progress):
        results = _one_pass(llm, prompts, params, spec)
        passes.append(summarize_pass(results, cfg.gamma))
    numeric = [k for k, v in passes[0].items() if isinstance(v, float)]
    median = {k: statistics.median(p[k] for p in passes) for k in numeric}
    span = {k: (min(p[k] for p in passes), max(p[k] for p in passes)) for k in numeric}
    return {
        "config": cfg.__dict__,
        "pair": llm.models.name,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "median": median,
        "min_max": span,
        "identical_all_passes": all(p["identical"] for p in passes),
        "agreement": agreement(llm, prompts, results),
        "passes": passes,
    }


def agreement(llm: LLM, prompts, results) -> list[dict]:
    """Per prompt (last pass): does SD equal AR? At a divergence, AR's top-2 logit gap next to
    the dtype's measured noise (one-at-a-time vs block scoring of the same tokens)."""
    rows = []
    for ids, ar, sd in zip(prompts, results["ar"], results["sd"], strict=True):
        div = find_divergence(llm.models, ids, ar.token_ids, sd.token_ids)
        row = {"tokens": len(ar.token_ids), "identical": div is None}
        if div is not None:
            window = ids + ar.token_ids[: div.position + 1]
            row |= {
                "first_divergence": div.position,
                "top2_gap": div.top2_gap,
                "block_noise": block_noise(llm.models, window, max(len(ids), len(window) - 32)),
            }
        rows.append(row)
    return rows


def markdown_row(report: dict) -> str:
    m, cfg = report["median"], report["config"]
    return (
        f"| {cfg['dtype']} | {m['ar_tokens_per_s']:.2f} | {m['sd_tokens_per_s']:.2f} | "
        f"**{m['speedup']:.2f}x** | {m['alpha']:.3f} | {m['tokens_per_round']:.2f} | "
        f"{m['t_target_step_s'] * 1000:.0f} | {m['t_draft_step_s'] * 1000:.0f} | {m['c']:.2f} | "
        f"{m['t_verify_s'] * 1000:.0f} ({m['verify_over_step']:.2f}x) | "
        f"{m['leviathan_ceiling']:.2f}x | {'yes' if report['identical_all_passes'] else 'NO'} |"
    )


MARKDOWN_HEADER = (
    "| dtype | AR tok/s | SD tok/s | SD speedup | alpha | tokens/round | target step ms | "
    "draft step ms | c | verify ms (x step) | Leviathan ceiling | SD == AR |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def save_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
