"""Single-request decoding benchmark on GSM8K sub-question prompts: AR vs SD vs MCSD.

One short warm-up, then `repeat` passes; in each pass every method decodes every prompt, methods
interleaved per prompt so slow drifts of the machine hit all methods alike. Reported numbers are
medians over passes; speedups are ratios within a pass, then the median. A method is named `ar`,
`sd` or `mcsd:K1,K2,..` (the MCSD token-tree shape), any registered method, and at T > 0 may end
in `@speculative` (speculative sampling) instead of the default coupled sampling.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from seedtree.bench.agreement import same_as_ar
from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.check import diagnose
from seedtree.decoding.params import SAMPLING_MODES
from seedtree.decoding.result import GenerationResult
from seedtree.decoding.sampling import Sampler
from seedtree.engine import METHODS, Request, run_many, sample_seed
from seedtree.engine.methods import scoring_of
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.progress import progress_bar
from seedtree.tasks import gsm8k


@dataclass(frozen=True)
class DecodeBenchConfig:
    n_prompts: int = 5
    max_new_tokens: int = 128
    gamma: int = 4
    repeat: int = 3
    dtype: str = "float32"
    draft_dtype: str = "int8"
    methods: tuple[str, ...] = ("ar", "sd", "mcsd:2,1,1", "mcsd:3,2,1")
    temperature: float = 0.0
    seed: int = 0  # prompt i is sampled with a seed hashed from (seed, i)


@dataclass(frozen=True)
class Variant:
    method: str
    spec: SpecConfig
    sampling: str = "coupled"  # at T > 0


def parse_method(name: str, gamma: int) -> Variant:
    """'mcsd:2,1,1' -> mcsd with k_config (2, 1, 1); 'sd' -> sd with gamma; a suffix
    '@speculative' (or '@coupled', the default) picks the sampling mode at T > 0."""
    name, _, sampling = name.partition("@")
    method, _, shape = name.partition(":")
    if method not in METHODS:
        raise SeedtreeError(f"unknown method '{method}': choose one of {', '.join(METHODS)}")
    if sampling and sampling not in SAMPLING_MODES:
        raise SeedtreeError(
            f"bad method '{name}@{sampling}': the suffix is @{' or @'.join(SAMPLING_MODES)}"
        )
    sampling = sampling or "coupled"
    if method == "mcsd" and shape:
        try:
            k_config = tuple(int(k) for k in shape.split(","))
        except ValueError:
            raise SeedtreeError(f"bad method '{name}': write mcsd:2,1,1") from None
        return Variant(method, SpecConfig(gamma=gamma, k_config=k_config), sampling)
    return Variant(method, SpecConfig(gamma=gamma), sampling)


def leviathan_speedup(alpha: float, gamma: int, c: float) -> float:
    """Expected walltime improvement of SD over AR (Leviathan et al. 2023, Thm 3.8)."""
    if alpha >= 1.0:
        return (gamma + 1) / (gamma * c + 1)
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))


def bench_prompts(llm: LLM, n: int) -> list[list[int]]:
    problems = gsm8k.load_problems()[:n]
    return [llm.encode(gsm8k.subquestion_prompt(p.question), chat=None) for p in problems]


def _params(params: SamplingParams, variant: Variant, prompt: int) -> SamplingParams:
    seed = sample_seed(params.seed, "prompt", prompt)  # the same seed for every method
    return replace(params, seed=seed, sampling=variant.sampling)


def _one_pass(llm, prompts, params, variants) -> dict[str, list[GenerationResult]]:
    out: dict[str, list[GenerationResult]] = {name: [] for name in variants}
    for i, ids in enumerate(prompts):
        for name, v in variants.items():
            request = Request(ids, _params(params, v, i))
            [result] = run_many(llm.engine(v.method, v.spec), [request]).results
            out[name].append(result)
    return out


def _method_summary(results: list[GenerationResult], ar: list[GenerationResult]) -> dict:
    tokens = sum(r.stats.new_tokens for r in results)
    wall = sum(r.stats.wall_s for r in results)
    rounds = sum(r.stats.rounds for r in results)
    drafted = sum(r.stats.drafted for r in results)
    out = {
        "tokens_per_s": tokens / wall,
        "wall_s": wall,
        "tokens": tokens,
        "identical_to_ar": all(
            a.token_ids == r.token_ids for a, r in zip(ar, results, strict=True)
        ),
    }
    if rounds:
        draft_steps = sum(r.stats.draft_forwards - 1 for r in results)  # minus the prefill
        out |= {
            "alpha": sum(r.stats.accepted for r in results) / drafted if drafted else 0.0,
            "accepted_per_round": sum(r.stats.accepted for r in results) / rounds,
            "tokens_per_round": tokens / rounds,
            "drafted_per_round": drafted / rounds,
            "t_draft_step_s": sum(r.stats.draft_s for r in results) / max(draft_steps, 1),
            # each request's first verification also read its prompt: counted as prefill
            "t_verify_s": sum(r.stats.verify_s for r in results) / max(rounds - len(results), 1),
        }
    return out


def summarize_pass(results: dict[str, list[GenerationResult]], gamma: int) -> dict:
    ar = results["ar"]
    t_target = sum(r.stats.verify_s for r in ar) / sum(r.stats.target_forwards - 1 for r in ar)
    summary = {"t_target_step_s": t_target}
    ar_tokens_per_s = _method_summary(ar, ar)["tokens_per_s"]
    for name, res in results.items():
        m = _method_summary(res, ar)
        m["speedup_vs_ar"] = m["tokens_per_s"] / ar_tokens_per_s
        if "t_draft_step_s" in m:
            m["c"] = m["t_draft_step_s"] / t_target
            m["verify_over_step"] = m["t_verify_s"] / t_target
        if name == "sd":
            m["leviathan_ceiling"] = leviathan_speedup(m["alpha"], gamma, m["c"])
        summary[name] = m
    if "sd" in summary:
        for name in results:
            summary[name]["speedup_vs_sd"] = (
                summary[name]["tokens_per_s"] / summary["sd"]["tokens_per_s"]
            )
    return summary


def _median_summary(passes: list[dict]) -> tuple[dict, dict]:
    median, span = {"t_target_step_s": statistics.median(p["t_target_step_s"] for p in passes)}, {}
    for name, first in passes[0].items():
        if not isinstance(first, dict):
            continue
        median[name], span[name] = {}, {}
        for key, value in first.items():
            values = [p[name][key] for p in passes]
            if isinstance(value, bool):
                median[name][key] = all(values)
            else:
                median[name][key] = statistics.median(values)
                span[name][key] = (min(values), max(values))
    return median, span


def run_decode_bench(llm: LLM, cfg: DecodeBenchConfig, progress: bool = True) -> dict:
    if "ar" not in cfg.methods:
        raise SeedtreeError("the decode benchmark needs 'ar' among the methods (the baseline)")
    variants = {name: parse_method(name, cfg.gamma) for name in cfg.methods}
    params = SamplingParams(
        temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed
    )
    prompts = bench_prompts(llm, cfg.n_prompts)
    # warm-up: one short request per method (allocator, thread pool, first-call overheads)
    _one_pass(llm, prompts[:1], SamplingParams(max_new_tokens=16), variants)
    passes = []
    passes_ = progress_bar(
        range(cfg.repeat), desc=f"bench-decode {cfg.dtype}", unit="pass", disable=not progress
    )
    for _ in passes_:
        results = _one_pass(llm, prompts, params, variants)
        passes.append(summarize_pass(results, cfg.gamma))
    median, span = _median_summary(passes)
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
        "agreement": {
            name: agreement(llm, prompts, results["ar"], results[name], variants[name], params)
            for name in results
            if name != "ar" and (params.greedy or variants[name].sampling == "coupled")
        },
        "passes": passes,
    }


def agreement(
    llm: LLM, prompts, ar_results, other_results, variant: Variant, params: SamplingParams
) -> list[dict]:
    """Per prompt (last pass): does the method equal AR (T=0, or coupled sampling with the same
    seed)? At a divergence, the verdict of `seedtree.decoding.check.diagnose`: the target's gap
    there against the measured noise of one-token vs the method's scoring, `tie` or `DEFECT`."""
    scoring = scoring_of(variant.method, variant.spec.gamma, variant.spec.k_config)
    rows = []
    for i, (ids, ar, other) in enumerate(zip(prompts, ar_results, other_results, strict=True)):
        sampler = Sampler(_params(params, variant, i))
        d = diagnose(llm.models, ids, ar.token_ids, other.token_ids, scoring, sampler=sampler)
        row = {"tokens": len(ar.token_ids), "identical": d is None}
        if d is not None:
            row |= {
                "first_divergence": d.position,
                "top2_gap": d.gap,
                "block_noise": d.noise,
                "verdict": d.verdict,
                "label": d.label(),
            }
        rows.append(row)
    return rows


def markdown_tables(report: dict) -> str:
    m, cfg = report["median"], report["config"]
    lines = [
        f"dtype {cfg['dtype']} (draft {cfg['draft_dtype']}), {cfg['n_prompts']} prompts x "
        f"{cfg['max_new_tokens']} new tokens, T={cfg.get('temperature', 0):g} (seed "
        f"{cfg.get('seed', 0)}), gamma={cfg['gamma']}, {cfg['repeat']} passes; "
        f"target step {m['t_target_step_s'] * 1000:.0f} ms",
        "",
        "| method | tok/s | speedup vs AR | vs SD | accepted/round | drafted/round | alpha | "
        "draft step ms | c | verify ms (x step) | == AR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in cfg["methods"]:
        r = m[name]
        spec = "t_draft_step_s" in r
        lines.append(
            f"| {name} | {r['tokens_per_s']:.2f} | **{r['speedup_vs_ar']:.2f}x** | "
            f"{r.get('speedup_vs_sd', float('nan')):.2f}x | "
            + (
                f"{r['accepted_per_round']:.2f} | {r['drafted_per_round']:.1f} | "
                f"{r['alpha']:.3f} | {r['t_draft_step_s'] * 1000:.0f} | {r['c']:.3f} | "
                f"{r['t_verify_s'] * 1000:.0f} ({r['verify_over_step']:.2f}x) | "
                if spec
                else "- | - | - | - | - | - | "
            )
            + f"{_same(name, r, report)} |"
        )
    if "sd" in m:
        lines += [
            "",
            f"Leviathan ceiling for SD at the measured alpha, gamma, c: "
            f"{m['sd']['leviathan_ceiling']:.2f}x",
        ]
    for name, rows in report["agreement"].items():
        for i, row in enumerate(rows):
            if not row["identical"]:
                lines.append(
                    f"- {name}, prompt {i}: first divergence at token {row['first_divergence']}: "
                    f"{row['label']}"
                )
    return "\n".join(lines)


def _same(name: str, row: dict, report: dict) -> str:
    """The "== AR" cell; `- (speculative)` where only the distribution is AR's (T > 0)."""
    if name != "ar" and name not in report["agreement"]:
        return "- (speculative)"
    return same_as_ar(row["identical_to_ar"], report["agreement"].get(name, []))


def save_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
