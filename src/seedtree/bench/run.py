"""Many trees at once (`seedtree bench-run`): problems per hour of a dataset slice at each
concurrency P, for each method variant, all on one engine per (method, P).

A warm-up, then `repeat` passes. In a pass, for each P, every method solves the whole slice with
up to P trees in flight (`search.run.Trees`, as `seedtree run --concurrency P` does); the method
order rotates between passes. Each (method, P) starts with an empty prefix cache, so no method
reads KV another one wrote. Per run: wall time, problems/hour, tokens, rounds and the draft
length per round; per P the ratios of each method to the others in the same pass (then the
median over passes); and every record compared with the same method's P = 1 record (the
signature: thoughts, values, selection, answer) and with the first method's at the same P.
The JSON is written after every pass (a stopped benchmark keeps what it measured).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from seedtree.bench.agreement import agreement
from seedtree.bench.tasks import load_examples, machine, parse_variant
from seedtree.decoding import SpecConfig
from seedtree.engine import run_off_main_thread
from seedtree.engine.methods import scoring_of
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.progress import progress_bar
from seedtree.search import EngineConfig, SearchConfig
from seedtree.search.run import MAX_CONCURRENCY, Trees
from seedtree.tasks import get_task
from seedtree.validate import check_int

DEFAULT_METHODS = ("batched-ar-cached", "seed-batched+fixed", "seed-batched")


@dataclass(frozen=True)
class RunBenchConfig:
    task: str = "gsm8k"
    start: int = 0
    limit: int = 8
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    methods: tuple[str, ...] = DEFAULT_METHODS
    repeat: int = 1
    search: SearchConfig = field(default_factory=SearchConfig)
    sampling: EngineConfig = field(default_factory=EngineConfig)  # temperature, seed, cap
    spec: SpecConfig = field(default_factory=SpecConfig)
    dtype: str = "bfloat16"
    draft_dtype: str = "int8"
    data: str | None = None

    def __post_init__(self) -> None:
        if not self.concurrency or not self.methods:
            raise SeedtreeError("give at least one --concurrency value and one method")
        for p in self.concurrency:
            check_int("concurrency", p, 1, MAX_CONCURRENCY)
        check_int("repeat", self.repeat, 1)


def _run(llm: LLM, cfg: RunBenchConfig, task, examples, name: str, variant, p: int, bar):
    """The slice with `name` at concurrency p: its wall time and records' signatures (a dict),
    and its trees in the slice's order."""
    method, spec = variant
    engine = llm.engine(method, spec)
    engine.prefix_cache.clear()  # no KV from another run
    config = replace(cfg.sampling, method=method)
    start = time.perf_counter()
    trees = {}
    for example, tree in Trees(engine, task, cfg.search, config, None, p).solve(examples):
        trees[str(example.id)] = tree
        bar.update()
    wall = time.perf_counter() - start
    calls = [c for t in trees.values() for c in t.calls]
    rounds = sum(c.rounds for c in calls)
    return {
        "wall_s": wall,
        "problems_per_hour": len(examples) * 3600 / wall,
        "new_tokens": sum(t.new_tokens for t in trees.values()),
        "correct": sum(bool(t.metrics.get("correct")) for t in trees.values()),
        "rounds": rounds,
        "draft_per_round": sum(c.drafted for c in calls) / rounds if rounds else 0.0,
        "accepted": sum(c.accepted for c in calls),
        "signatures": {i: t.signature() for i, t in trees.items()},
    }, [trees[str(e.id)] for e in examples]


def run_run_bench(llm: LLM, cfg: RunBenchConfig, out: Path | None = None) -> dict:
    task = get_task(cfg.task)
    examples = load_examples(task, cfg.data, cfg.start, cfg.limit)
    variants = {name: parse_variant(name, cfg.spec) for name in cfg.methods}
    warm = SearchConfig(k=2, b=1, depth=1)
    costs = None
    for method, spec in variants.values():  # one-off costs; measures the cost model
        engine = llm.engine(method, spec)
        config = replace(cfg.sampling, method=method, max_new_tokens=4)
        list(Trees(engine, task, warm, config, None, 1).solve(examples[:1]))
        costs = costs or engine.costs
    report = {
        "config": asdict(cfg),
        "machine": machine(),
        "costs": None if costs is None else asdict(costs),  # seconds (adaptive.CostModel)
        "examples": [str(e.id) for e in examples],
        "passes": [],
        "complete": False,
    }
    total = cfg.repeat * len(cfg.concurrency) * len(cfg.methods) * len(examples)
    bar = progress_bar(total=total, desc=f"bench-run {cfg.task}", unit="tree")
    n = len(cfg.methods)
    for i in range(cfg.repeat):
        order = cfg.methods[i % n :] + cfg.methods[: i % n]
        runs: dict[str, dict[str, dict]] = {}
        trees: dict[tuple[int, str], list] = {}
        for p in cfg.concurrency:
            for name in order:
                runs.setdefault(str(p), {})[name], trees[p, name] = _run(
                    llm, cfg, task, examples, name, variants[name], p, bar
                )
        report["passes"].append({"order": list(order), "runs": runs})
        for diagnosed in (False, True):  # the timings are saved before the (slow) diagnosis
            if diagnosed:
                _diagnose(llm, cfg, variants, runs, trees)
                for rows in runs.values():
                    for run in rows.values():
                        run["diagnosed"] = True
            _summarize(report, cfg)
            if out is not None:
                save_report(report, out)
    bar.close()
    report["complete"] = True
    if out is not None:
        save_report(report, out)
    return report


def _diagnose(llm: LLM, cfg: RunBenchConfig, variants: dict, runs: dict, trees: dict) -> None:
    """Where a record differs from the same method's at the first P, or from the first method's
    at the same P: the first differing token of each tree, labelled a tie of the target's scores
    (bf16 batch noise) or a DEFECT (`bench.agreement`); on a short-lived thread, so the engine's
    stays the process's one torch thread."""
    first, base = cfg.methods[0], cfg.concurrency[0]
    pairs = [
        (p, name, key, reference, theirs)
        for (p, name), theirs in trees.items()
        for key, reference in (
            ("vs_first_p", trees[base, name]),
            ("vs_first_method", trees[p, first]),
        )
        if reference is not theirs
    ]  # a run against each reference: minutes on a CPU, so it says how far it is, tree by tree
    total = sum(len(theirs) for *_, theirs in pairs)
    bar = progress_bar(total=total, desc=f"bench-run {cfg.task} diagnosis", unit="tree")
    for p, name, key, reference, theirs in pairs:
        method, spec = variants[name]
        scoring = scoring_of(method, spec.gamma, spec.k_config)
        bar.set_postfix_str(f"P={p} {name} {key}")
        found = run_off_main_thread(
            lambda r=reference, t=theirs, n=name, s=scoring: agreement(
                llm.models, n, [(r, t)], s, bar.update
            )
        )
        runs[str(p)][name][key] = found.to_dict(llm.tokenizer)
    bar.close()


def _summarize(report: dict, cfg: RunBenchConfig) -> None:
    """Medians over passes of problems/hour and of each ratio within a pass; record checks."""
    first, base = cfg.methods[0], str(cfg.concurrency[0])
    summary: dict[str, dict] = {}
    for p in map(str, cfg.concurrency):
        summary[p] = {}
        for name in cfg.methods:
            runs = [ps["runs"][p] for ps in report["passes"]]
            row = {
                "problems_per_hour": statistics.median(r[name]["problems_per_hour"] for r in runs),
                "wall_s": statistics.median(r[name]["wall_s"] for r in runs),
                "draft_per_round": statistics.median(r[name]["draft_per_round"] for r in runs),
                "correct": runs[-1][name]["correct"],
            }
            for other in cfg.methods:
                ratios = [r[other]["wall_s"] / r[name]["wall_s"] for r in runs]
                row[f"vs_{other}"] = statistics.median(ratios)
            row["vs_p1_same_method"] = statistics.median(  # throughput over its own P = 1
                ps["runs"][base][name]["wall_s"] / ps["runs"][p][name]["wall_s"]
                for ps in report["passes"]
            )
            row["records_equal_p1"] = _same(report, name, base, name, p)
            row["records_equal_first_method"] = _same(report, first, p, name, p)
            last = report["passes"][-1]["runs"][p][name]
            row["vs_p1_label"] = _label(last, "vs_first_p")
            row["vs_first_method_label"] = _label(last, "vs_first_method")
            summary[p][name] = row
    report["summary"] = summary


def _label(run: dict, key: str) -> str:
    """The diagnosis's label ("yes", "tie (...)", "DEFECT (...)"), "-" for the reference run
    itself, "not diagnosed yet" before the diagnosis has run."""
    if key in run:
        return run[key]["label"]
    return "-" if run.get("diagnosed") else "not diagnosed yet"


def _same(report: dict, a: str, pa: str, b: str, pb: str) -> str:
    """How many records of (b, P=pb) equal (a, P=pa)'s in every pass, as 'k/n'."""
    equal = total = 0
    for ps in report["passes"]:
        sa, sb = ps["runs"][pa][a]["signatures"], ps["runs"][pb][b]["signatures"]
        total += len(sb)
        equal += sum(sa.get(i) == s for i, s in sb.items())
    return f"{equal}/{total}"


def save_report(report: dict, out: Path) -> None:
    """JSON (atomically: a stopped run never leaves half a file), Markdown table and plot."""
    out.mkdir(parents=True, exist_ok=True)
    task = report["config"]["task"]
    path = out / f"bench_run_{task}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)
    (out / f"bench_run_{task}.md").write_text(markdown_table(report))
    plot_report(report, out / f"bench_run_{task}.png")


def markdown_table(report: dict) -> str:
    cfg, s = report["config"], report["config"]["search"]
    methods = cfg["methods"]
    t = cfg["sampling"]["temperature"]
    costs = report.get("costs") or {}
    lines = [
        f"**{cfg['task']}**: {len(report['examples'])} problems "
        f"({report['examples'][0]}..{report['examples'][-1]}), {s['algorithm']} k={s['k']} "
        f"b={s['b']} depth={s['depth'] or 'task default'}, T={t:g} (seed "
        f"{cfg['sampling']['seed']}), target {cfg['dtype']}, draft {cfg['draft_dtype']}, "
        f"{len(report['passes'])} pass(es). Measured costs: "
        + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in costs.items()),
        "",
        "| P | method | problems/hour | wall s | draft/round | correct | "
        + " | ".join(f"vs {m}" for m in methods)
        + " | records = P1 | records = first | where they differ (vs P1; vs first) |",
        "|---|---|---|---|---|---|" + "---|" * len(methods) + "---|---|---|",
    ]
    for p, rows in report.get("summary", {}).items():
        for name, r in rows.items():
            ratios = " | ".join(f"{r[f'vs_{m}']:.2f}x" for m in methods)
            lines.append(
                f"| {p} | {name} | {r['problems_per_hour']:.1f} | {r['wall_s']:.1f} | "
                f"{r['draft_per_round']:.2f} | {r['correct']} | {ratios} | "
                f"{r['records_equal_p1']} | {r['records_equal_first_method']} | "
                f"{r.get('vs_p1_label', '-')}; {r.get('vs_first_method_label', '-')} |"
            )
    orders = "; ".join(" ".join(p["order"]) for p in report["passes"])
    lines += ["", f"Method order per pass: {orders}."]
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report.get("summary", {})
    ps = [int(p) for p in summary]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in report["config"]["methods"]:
        ax.plot(ps, [summary[str(p)][name]["problems_per_hour"] for p in ps], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ps, [str(p) for p in ps])
    ax.set_xlabel("trees in flight (P)")
    ax.set_ylabel("problems / hour")
    cfg = report["config"]
    ax.set_title(f"{cfg['task']}, T={cfg['sampling']['temperature']:g}, target {cfg['dtype']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
