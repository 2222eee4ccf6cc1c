"""Search benchmark: does the search pay? Every algorithm with its budget solves the same
problems on one engine (one model pair, one method), and we report accuracy with its 95%
confidence interval (Wilson), mean wall time per problem, tokens, and correct answers per hour,
plus a plot of accuracy against time per problem: one point per (algorithm, budget), the points
of one algorithm joined (its frontier).

A budget is written `ALGORITHM[:key=value,...]` over the base `SearchConfig`, e.g. `cot`,
`cot-sc:k=5`, `bfs:k=3,b=1,depth=3`, `beam:k=3,b=2`, `mcts:iterations=4,k=2`,
`bfs:evaluation=logprob`. Each budget solves its problems as `seedtree run` does: up to
`concurrency` trees at a time on one engine; time per problem is the budget's wall time over its
problems (what a dataset run costs; with concurrency 1, the mean tree time). The JSON report,
the table and the plot are rewritten (atomically) after each finished budget, so a long run
loses at most one budget; stderr gets a line as each budget starts and ends and one per problem
as it finishes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from seedtree.decoding import SpecConfig
from seedtree.errors import SeedtreeError
from seedtree.files import write_atomic
from seedtree.llm import LLM
from seedtree.search import EngineConfig, SearchConfig
from seedtree.search.run import MAX_CONCURRENCY, Trees
from seedtree.tasks import get_task
from seedtree.validate import check_int

DEFAULT_BUDGETS = ("cot", "cot-sc:k=5", "bfs", "dfs", "beam:b=2", "mcts")
BUDGET_KEYS = {f.name: f.type for f in fields(SearchConfig) if f.name != "algorithm"}
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class SearchBenchConfig:
    task: str = "gsm8k"
    limit: int = 5
    start: int = 0
    budgets: tuple[str, ...] = DEFAULT_BUDGETS
    search: SearchConfig = field(default_factory=SearchConfig)  # what a budget leaves unsaid
    engine: EngineConfig = field(default_factory=EngineConfig)
    spec: SpecConfig = field(default_factory=SpecConfig)
    dtype: str = "float32"
    draft_dtype: str = "int8"
    data: str | None = None  # a file in the task's format (default: bundled)
    concurrency: int = 1  # trees at a time on the engine (`seedtree run --concurrency`)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.start < 0:
            raise SeedtreeError("--limit must be >= 1 and --start >= 0")
        check_int("--concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        if not self.budgets:
            raise SeedtreeError("--budgets is empty: name at least one algorithm, e.g. cot")
        for budget in self.budgets:
            parse_budget(budget, self.search)


def _value(key: str, text: str):
    kind = BUDGET_KEYS[key]
    try:
        if "float" in str(kind):
            return float(text)
        if "int" in str(kind):
            return int(text)
    except ValueError:
        raise SeedtreeError(f"budget {key}={text}: {key} takes a number") from None
    return text


def parse_budget(text: str, base: SearchConfig) -> SearchConfig:
    """`ALGORITHM[:key=value,...]` -> the base config with that algorithm and those values."""
    name, _, rest = text.partition(":")
    changes = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in BUDGET_KEYS:
            raise SeedtreeError(
                f"budget '{text}': '{item}' is not key=value with a key among "
                f"{', '.join(BUDGET_KEYS)}"
            )
        changes[key] = _value(key, value)
    return replace(base, algorithm=name, **changes)


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct / n (95% by default); (0, 1) at n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(budget: str, search: SearchConfig, problems: list[dict], wall: float) -> dict:
    """`wall`: the budget's wall time, all its problems (P trees at a time: less than the sum
    of the trees' own times)."""
    n = len(problems)
    correct = sum(p["correct"] for p in problems)
    low, high = wilson(correct, n)
    return {
        "budget": budget,
        "algorithm": search.algorithm,
        "search": asdict(search),
        "problems": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "ci_low": low,
        "ci_high": high,
        "mean_wall_s": wall / n if n else 0.0,
        "total_wall_s": wall,
        "mean_tree_s": sum(p["wall_s"] for p in problems) / n if n else 0.0,
        # the tree's evaluation calls' wall time (shared with the trees beside it)
        "mean_eval_s": sum(p["eval_s"] for p in problems) / n if n else 0.0,
        "mean_new_tokens": sum(p["new_tokens"] for p in problems) / n if n else 0.0,
        "correct_per_hour": correct / wall * 3600 if wall else 0.0,
        "per_problem": problems,
    }


def run_search_bench(llm: LLM, cfg: SearchBenchConfig, out: Path, stream=None) -> dict:
    """Every budget over the problems, in the order given, on the engine of `llm` (one
    `seedtree run --concurrency P` per budget: its prefix cache starts empty); writes
    `bench_search_<task>.json`, the markdown table and the plot after each budget."""
    stream = stream or sys.stderr

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    task = get_task(cfg.task)
    examples = task.load(Path(cfg.data) if cfg.data else None)[cfg.start : cfg.start + cfg.limit]
    ids = [str(e.id) for e in examples]
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"bench_search_{cfg.task}"
    report = {"config": asdict(cfg) | {"budgets": list(cfg.budgets)}, "rows": []}
    for number, budget in enumerate(cfg.budgets, 1):
        search = parse_budget(budget, cfg.search)
        say(
            f"bench-search {cfg.task}: budget {number}/{len(cfg.budgets)} {budget}, "
            f"{len(examples)} problems, {cfg.concurrency} at a time"
        )
        engine = llm.engine(cfg.engine.method, cfg.spec)
        engine.prefix_cache.clear()  # one per budget, as one `seedtree run`
        problems, start = [], time.perf_counter()
        trees = Trees(engine, task, search, cfg.engine, None, cfg.concurrency)
        for _, tree in trees.solve(examples):
            problems.append(
                {
                    "id": tree.example_id,
                    "correct": bool(tree.metrics.get("correct")),
                    "score": float(tree.metrics.get("score") or 0.0),
                    "wall_s": tree.wall_s,
                    "eval_s": tree.phase_wall("evaluate"),
                    "new_tokens": tree.new_tokens,
                    "nodes": len(tree.nodes),
                    "answer": tree.answer,
                }
            )
            verdict = "correct" if problems[-1]["correct"] else "wrong"
            say(
                f"  [{budget}] {tree.example_id}: {verdict}, {tree.wall_s:.1f} s, "
                f"{tree.new_tokens} tokens ({len(problems)}/{len(examples)})"
            )
        problems.sort(key=lambda p: ids.index(p["id"]))  # finish order -> problem order
        row = summarize(budget, search, problems, time.perf_counter() - start)
        report["rows"].append(row)
        say(
            f"bench-search {cfg.task}: {budget}: {row['correct']}/{row['problems']} correct, "
            f"{row['mean_wall_s']:.1f} s per problem"
        )
        write_atomic(base.with_suffix(".json"), json.dumps(report, indent=1))
        write_atomic(base.with_suffix(".md"), markdown_table(report))  # a stopped run keeps all
        plot_frontier(report, base.with_suffix(".png"))
    return report


def markdown_table(report: dict) -> str:
    cfg = report["config"]
    engine = cfg["engine"]
    lines = [
        f"Search benchmark: {cfg['task']}, {cfg['limit']} problems from {cfg['start']}, "
        f"method {engine['method']}, T={engine['temperature']}, seed {engine['seed']}, "
        f"target {cfg['dtype']}, {cfg.get('concurrency', 1)} tree(s) at a time (s / problem: "
        "the budget's wall time over its problems)",
        "",
        "| budget | accuracy | 95% CI (Wilson) | s / problem | s / tree | evaluation s / tree "
        "| tokens / problem | correct / hour |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['budget']} | {r['correct']}/{r['problems']} ({r['accuracy']:.0%}) "
            f"| {r['ci_low']:.0%}-{r['ci_high']:.0%} | {r['mean_wall_s']:.1f} "
            f"| {r['mean_tree_s']:.1f} | {_seconds(r.get('mean_eval_s'))} "
            f"| {r['mean_new_tokens']:.0f} "
            f"| {r['correct_per_hour']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"  # "-": a row from before the field


def plot_frontier(report: dict, path: Path) -> None:
    """Accuracy (with its Wilson interval) against mean time per problem; one colour per
    algorithm, its budgets joined in order of time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for algorithm in dict.fromkeys(r["algorithm"] for r in report["rows"]):
        rows = sorted(
            (r for r in report["rows"] if r["algorithm"] == algorithm),
            key=lambda r: r["mean_wall_s"],
        )
        x = [r["mean_wall_s"] for r in rows]
        y = [r["accuracy"] for r in rows]
        err = [
            [r["accuracy"] - r["ci_low"] for r in rows],
            [r["ci_high"] - r["accuracy"] for r in rows],
        ]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=algorithm)
        for r in rows:
            ax.annotate(r["budget"], (r["mean_wall_s"], r["accuracy"]), fontsize=7)
    ax.set_xlabel("mean wall time per problem (s)")
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"{report['config']['task']}: accuracy against time per problem")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
