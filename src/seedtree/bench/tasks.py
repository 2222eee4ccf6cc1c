"""Task benchmark: every method builds the trees of the same problems, side by side.

One warm-up, then `repeat` passes; in each pass every method solves every problem, pass i
starting at method i mod n (the order rotates, so running early or late in a pass cannot bias a
ratio; each pass's order is in the JSON). Per method: wall time split into thought generation /
evaluation / final answer, new tokens, tokens/s, target forwards, alpha, peak resident memory,
task score, speedups vs `ar` and `batched-ar` (ratios within a pass, then the median), the
engine's prefix-cache hit rate and mean draft length where it records them, and "same tree as
ar" (T=0): `yes`, or every divergence diagnosed as a `tie` of the target's scores or a `DEFECT`
(`seedtree.bench.agreement`).

The bound: the target scoring every prompt and output of the `ar` run teacher-forced, one batched
forward per engine call (a prompt shared by the k samples of a state is prefilled once and its
outputs scored in one batched forward on that cache). No lossless method can decode those tokens
with less target work; each method's time is reported as a multiple of it.
c: one draft forward / one target forward (1 new token, ~200 tokens of context), medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from seedtree.bench.agreement import agreement
from seedtree.bench.stats import median_rows
from seedtree.decoding import SpecConfig
from seedtree.decoding.batch import batch_cache
from seedtree.decoding.kv import KVSequence
from seedtree.engine.methods import scoring_of
from seedtree.errors import SeedtreeError
from seedtree.files import write_atomic
from seedtree.models.loader import ModelPair
from seedtree.progress import progress_bar
from seedtree.search import EngineConfig, SearchConfig, solve
from seedtree.search.engine import SEARCH_METHODS
from seedtree.tasks import get_task
from seedtree.tasks.base import Task


@dataclass(frozen=True)
class TaskBenchConfig:
    task: str = "gsm8k"
    limit: int = 3
    start: int = 0
    methods: tuple[str, ...] = SEARCH_METHODS
    repeat: int = 1
    search: SearchConfig = field(default_factory=SearchConfig)
    max_new_tokens: int | None = None  # cap on every call's budget
    gamma: int = 4
    k_config: tuple[int, ...] = (2, 1, 1)
    tree_mass: float = 1.0  # T=0 token trees: SpecConfig.tree_mass
    adaptive: bool = True
    lookup: int = 0  # lookup drafting: candidates per round at most (0: off)
    dedup: bool = True  # identical greedy requests decoded once (batched methods)
    dtype: str = "float32"
    draft_dtype: str = "int8"
    sampling: EngineConfig = field(default_factory=EngineConfig)  # temperature, top_p, seed
    data: str | None = None  # a JSONL file in the task's format (default: bundled)


class PeakRSS:
    """Samples this process's resident memory every 50 ms while inside; `.peak_mb`."""

    def __init__(self) -> None:
        self.peak_mb, self._stop = 0.0, threading.Event()

    @staticmethod
    def now_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, self.now_mb())

    def __enter__(self) -> PeakRSS:
        self.peak_mb = self.now_mb()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.now_mb())


def _median_forward_s(model, vocab: int, context: list[int], reps: int = 5) -> float:
    kv = KVSequence(model, vocab)
    kv.forward(context)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        kv.forward(context[-1:])
        times.append(time.perf_counter() - t)
        kv.crop(len(context))
    return statistics.median(times)


def measure_c(pair: ModelPair, context_len: int = 200) -> dict:
    context = [int(t) % pair.vocab_size for t in range(1000, 1000 + context_len)]
    with torch.inference_mode():
        target = _median_forward_s(pair.target, pair.vocab_size, context)
        draft = _median_forward_s(pair.draft, pair.vocab_size, context)
    return {"target_step_s": target, "draft_step_s": draft, "c": draft / target}


def _padded(rows: list[list[int]], prefix: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, W] and a mask [B, prefix + W] (the first `prefix` cached positions
    visible to every row)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), prefix + width, dtype=torch.long)
    mask[:, :prefix] = 1
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, prefix : prefix + len(r)] = torch.tensor(r), 1
    return ids, mask


def _shared_prompt_s(target, prompt: list[int], outputs: list[list[int]]) -> float:
    """Prefill one prompt once, then score its n outputs in one batched forward on copies of
    that cache (what a method that reuses the shared prompt's KV must at least compute)."""
    t = time.perf_counter()
    kv = KVSequence(target, target.config.vocab_size)
    kv.forward(prompt)
    cache = batch_cache([kv] * len(outputs), kv.length)  # [n, H, P, D] per layer
    ids, mask = _padded(outputs, prefix=len(prompt))
    target(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - t


def _distinct_s(target, rows: list[list[int]]) -> float:
    ids, mask = _padded(rows)
    t = time.perf_counter()
    target(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
    return time.perf_counter() - t


def teacher_forced_s(pair: ModelPair, trees) -> float:
    """Target time to score every call's prompts + outputs teacher-forced: per call, the rows
    whose prompt is unique in one batched forward; each prompt shared by several rows (the k
    samples of one state) prefilled once, then its outputs scored in one batched forward."""
    total = 0.0
    with torch.inference_mode():
        for tree in trees:
            for call in tree.calls:
                groups: dict[tuple[int, ...], list[list[int]]] = {}
                for p, o in zip(call.prompt_ids, call.output_ids, strict=True):
                    groups.setdefault(tuple(p), []).append(o)
                distinct = [list(p) + o[0] for p, o in groups.items() if len(o) == 1]
                if distinct:
                    total += _distinct_s(pair.target, distinct)
                for p, outs in groups.items():
                    scored = [o for o in outs if o]  # an empty output adds nothing to score
                    if len(outs) > 1 and scored:
                        total += _shared_prompt_s(pair.target, list(p), scored)
    return total


def _engine_stat(calls, name: str) -> float | None:
    """A statistic an engine may record per call (`prefix_hit_rate`, `mean_draft_len`): the mean
    over the calls that have it; None where none does."""
    values = [v for c in calls if (v := getattr(c, name, None)) is not None]
    return statistics.mean(values) if values else None


def _method_row(trees, peak_mb: float, reference=None) -> dict:
    calls = [c for t in trees for c in t.calls]
    wall = sum(t.wall_s for t in trees)
    tokens = sum(t.new_tokens for t in trees)
    drafted, accepted = sum(c.drafted for c in calls), sum(c.accepted for c in calls)
    rounds = sum(c.rounds for c in calls)
    row = {
        "wall_s": wall,
        "generate_s": sum(t.phase_wall("generate") for t in trees),
        "evaluate_s": sum(t.phase_wall("evaluate") for t in trees),
        "finish_s": sum(t.phase_wall("finish") for t in trees),
        "new_tokens": tokens,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "target_forwards": sum(c.target_forwards for c in calls),
        "alpha": accepted / drafted if drafted else None,
        "peak_rss_mb": peak_mb,
        "score": statistics.mean(float(t.metrics.get("score") or 0.0) for t in trees),
        "correct": sum(bool(t.metrics.get("correct")) for t in trees),
        "unparsed_values": sum(t.unparsed_values for t in trees),
        "depth_reached": statistics.mean(max(n.depth for n in t.nodes) for t in trees),
        # tokens emitted per branch per round (accepted + 1); None for methods without rounds
        "tokens_per_round": (accepted + rounds) / rounds if rounds else None,
        "accepted_lookup": sum(c.lookup_accepted for c in calls),
        "accepted_model": accepted - sum(c.lookup_accepted for c in calls),
        "copied_tokens": sum(c.copied_tokens for c in calls),
        "prefix_hit_rate": _engine_stat(calls, "prefix_hit_rate"),
        "mean_draft_len": _engine_stat(calls, "mean_draft_len"),
        "same_tree_as_ar": None
        if reference is None
        else all(t.signature() == r.signature() for t, r in zip(trees, reference, strict=True)),
    }
    return row


def machine() -> dict:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gib": round(mem, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_variant(name: str, spec: SpecConfig) -> tuple[str, SpecConfig]:
    """A `--methods` entry: a registered method with optional `+` changes, so one pass can time a
    method with and without them: `+lookupL` (lookup drafting of up to L tokens), `+nodedup`
    (identical greedy requests each decoded), `+massM` (T=0 token trees cut at q's probability
    mass M, `SpecConfig.tree_mass`), `+fixed` (adaptive draft lengths branch by branch at the
    fixed cost ratio c, `SpecConfig.policy`), e.g. `seed-batched+lookup8+nodedup`,
    `mcsd-batched+mass0.8`."""
    method, *extras = name.split("+")
    if method not in SEARCH_METHODS:
        raise SeedtreeError(
            f"unknown method '{method}' in --methods: choose from {', '.join(SEARCH_METHODS)}"
        )
    for extra in extras:
        if extra.startswith("lookup") and extra[6:].isdigit():
            spec = replace(spec, lookup=int(extra[6:]))
        elif extra == "nodedup":
            spec = replace(spec, dedup=False)
        elif extra == "fixed":  # adaptive draft lengths branch by branch at the fixed c
            spec = replace(spec, policy="fixed")
        elif extra.startswith("mass") and _is_number(extra[4:]):
            spec = replace(spec, tree_mass=float(extra[4:]))  # SpecConfig checks the range
        else:
            raise SeedtreeError(
                f"bad method '{name}': write METHOD, METHOD+lookupL, METHOD+fixed, "
                "METHOD+nodedup or METHOD+massM, e.g. seed-batched+lookup8 or mcsd-batched+mass0.8"
            )
    return method, spec


def load_examples(task: Task, data: str | None, start: int, limit: int) -> list:
    """Problems start .. start + limit of `task` (bundled, or the JSONL file `data`)."""
    examples = task.load(Path(data) if data else None)[start : start + limit]
    if not examples:
        raise SeedtreeError(
            f"no {task.name} problems from index {start}: lower --start or check --data"
        )
    return examples


def run_task_bench(
    pair: ModelPair, cfg: TaskBenchConfig, out: Path | None = None, progress: bool = True
) -> dict:
    task = get_task(cfg.task)
    examples = load_examples(task, cfg.data, cfg.start, cfg.limit)
    spec = SpecConfig(
        gamma=cfg.gamma,
        k_config=cfg.k_config,
        tree_mass=cfg.tree_mass,
        adaptive=cfg.adaptive,
        lookup=cfg.lookup,
        dedup=cfg.dedup,
    )
    # "same tree as ar" is a promise at T=0 and with coupled sampling (the same seeds)
    exact = cfg.sampling.temperature == 0 or cfg.sampling.sampling == "coupled"

    variants = {name: parse_variant(name, spec) for name in cfg.methods}

    def engine(name: str, cap: int | None = cfg.max_new_tokens) -> EngineConfig:
        return replace(cfg.sampling, method=variants[name][0], max_new_tokens=cap)

    warm = SearchConfig(k=2, b=1, depth=1)
    for name in cfg.methods:  # warm-up: one-off costs (allocator, threads, HF setup)
        solve(pair, task, examples[0], warm, engine(name, 4), variants[name][1])
    bar = progress_bar(
        total=cfg.repeat * len(cfg.methods) * len(examples),
        desc=f"bench {cfg.task}",
        disable=not progress,
        unit="tree",
    )
    passes, runs, orders = [], [], []
    n = len(cfg.methods)
    for i in range(cfg.repeat):
        order = cfg.methods[i % n :] + cfg.methods[: i % n]  # pass i starts at method i mod n
        trees, peak = {}, {}
        for method in order:
            with PeakRSS() as rss:
                trees[method] = []
                for example in examples:
                    trees[method].append(
                        solve(pair, task, example, cfg.search, engine(method), variants[method][1])
                    )
                    bar.update()
            peak[method] = rss.peak_mb
        reference = trees.get("ar") if exact else None
        row = {m: _method_row(trees[m], peak[m], reference) for m in cfg.methods}
        for method in row:
            for base in ("ar", "batched-ar"):
                if base in row:
                    row[method][f"speedup_vs_{base}"] = row[base]["wall_s"] / row[method]["wall_s"]
        passes.append(row)
        runs.append(trees)
        orders.append(list(order))
        if out is not None:  # a stopped bench keeps the passes it measured
            partial = {"config": asdict(cfg), "pair": pair.name, "complete": False}
            partial |= {"examples": [str(e.id) for e in examples], "pass_orders": orders}
            write_atomic(out / f"bench_{cfg.task}.json", json.dumps(partial | {"passes": passes}))
    bar.close()
    last_trees = runs[-1]
    agreements = {}
    if exact and "ar" in cfg.methods:
        for method in cfg.methods:
            pairs = [(t["ar"], t[method]) for t in runs]
            same = all(
                a.signature() == o.signature()
                for ar_trees, trees in pairs
                for a, o in zip(ar_trees, trees, strict=True)
            )
            if not same and progress:
                tqdm.write(f"{method}: a tree is not ar's; diagnosing where they part ...")
            scoring = scoring_of(variants[method][0], cfg.gamma, cfg.k_config)
            agreements[method] = agreement(pair, method, pairs, scoring).to_dict(pair.tokenizer)
    reference = last_trees.get("ar") or next(iter(last_trees.values()))
    bound = teacher_forced_s(pair, reference)
    report = {
        "config": asdict(cfg),
        "pair": pair.name,
        "machine": machine(),
        "c": measure_c(pair),
        "bound_s": bound,
        "examples": [str(e.id) for e in examples],
        "median": median_rows(passes),
        "agreement": agreements,  # per method: verdict, label, every divergence diagnosed
        "pass_orders": orders,
        "passes": passes,
        "complete": True,
    }
    for row in report["median"].values():
        row["x_bound"] = row["wall_s"] / bound if bound else None
    if out is not None:
        save_outputs(report, last_trees, out)
    return report


def temperature_text(cfg: dict) -> str:
    """`0`, or `0.7 (coupled, seed 1)`: what a T > 0 row was sampled with."""
    sampling = cfg.get("sampling", {})
    t = sampling.get("temperature", 0)
    if not t:
        return "0"
    return f"{t:g} ({sampling.get('sampling', 'coupled')}, seed {sampling.get('seed', 0)})"


def save_outputs(report: dict, trees: dict, out: Path) -> None:
    """JSON (raw), Markdown table, plots, a Gantt of level-1 generation of the first problem per
    method (the same tree level for every method), and the last pass's trees per method
    (`trees_<task>_<method>.json`: every call's prompts, outputs, times and trace)."""
    from seedtree.scheduling import Trace, save_gantt

    task = report["config"]["task"]
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"bench_{task}.json", json.dumps(report, indent=1))
    (out / f"bench_{task}.md").write_text(markdown_table(report))
    for method, method_trees in trees.items():
        (out / f"trees_{task}_{method}.json").write_text(
            json.dumps([t.to_dict() for t in method_trees])
        )
        first = method_trees[0].calls[0]
        save_gantt(
            Trace.from_dict(first.trace),
            out / f"gantt_{task}_{method}.png",
            title=f"{task}: level-1 thought generation, problem 0, {method}",
        )
    plot_report(report, out / f"bench_{task}.png")


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = report["median"]
    methods = list(med)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    speedups = [med[m].get("speedup_vs_ar", 0.0) for m in methods]
    axes[0].bar(methods, speedups, color="#4c72b0")
    axes[0].axhline(1.0, color="#888", lw=0.8)
    axes[0].set_ylabel("speedup vs ar (median)")
    axes[1].bar(methods, [med[m]["tokens_per_s"] for m in methods], color="#dd8452")
    axes[1].set_ylabel("tokens / s (median)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
    cfg = report["config"]
    fig.suptitle(f"{cfg['task']}: {len(report['examples'])} problems, target {cfg['dtype']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _speedup(row: dict, base: str, bold: bool = False) -> str:
    """`row`'s speedup over `base`, or "-" when `base` was not among the methods run."""
    value = row.get(f"speedup_vs_{base}")
    if value is None:
        return "-"
    return f"**{value:.2f}x**" if bold else f"{value:.2f}x"


def markdown_table(report: dict) -> str:
    cfg, s = report["config"], report["config"]["search"]
    c = report["c"]
    lines = [
        f"**{cfg['task']}**: {len(report['examples'])} problems ({', '.join(report['examples'])}),"
        f" {s['algorithm']} k={s['k']} b={s['b']} depth={s['depth'] or 'task default'}, "
        f"max new tokens {cfg['max_new_tokens'] or 'task default'}, "
        f"T={temperature_text(cfg)}, target {cfg['dtype']}, "
        f"draft {cfg['draft_dtype']}, gamma={cfg['gamma']}, k_config "
        f"{','.join(map(str, cfg.get('k_config', ())))}, tree mass {cfg.get('tree_mass', 1.0)}, "
        f"lookup {cfg.get('lookup', 0)}, "
        f"dedup {'on' if cfg.get('dedup', False) else 'off'}, {cfg['repeat']} passes (median "
        f"[min-max]). c = {c['c']:.3f} (draft {c['draft_step_s'] * 1000:.0f} ms, target "
        f"{c['target_step_s'] * 1000:.0f} ms per step). Bound (teacher-forced target, one "
        f"batched forward per call, a shared prompt prefilled once): {report['bound_s']:.1f} s.",
        "",
        "| method | wall s | generate s | evaluate s | tokens | tok/s | target fwd | alpha | "
        "prefix hit | draft len | tok/round | accepted model+lookup | copied | vs ar | "
        "vs batched-ar | "
        "x bound | score | depth | same tree as ar | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    agreements = report.get("agreement", {})
    for m, r in report["median"].items():
        alpha, hit, draft, per_round = (
            "-" if r.get(key) is None else f"{r[key]:.2f}"
            for key in ("alpha", "prefix_hit_rate", "mean_draft_len", "tokens_per_round")
        )
        sources = f"{r.get('accepted_model', 0):.0f}+{r.get('accepted_lookup', 0):.0f}"
        same = {None: "-", True: "yes", False: "NO"}[r["same_tree_as_ar"]]
        same = agreements.get(m, {}).get("label", same)
        lines.append(
            f"| {m} | {r['wall_s']:.1f} [{r['wall_s_min']:.1f}-{r['wall_s_max']:.1f}] | "
            f"{r['generate_s']:.1f} | {r['evaluate_s']:.1f} | {r['new_tokens']:.0f} | "
            f"{r['tokens_per_s']:.2f} | {r['target_forwards']:.0f} | {alpha} | {hit} | {draft} | "
            f"{per_round} | {sources} | {r.get('copied_tokens', 0):.0f} | "
            f"{_speedup(r, 'ar', bold=True)} | {_speedup(r, 'batched-ar')} | "
            f"{r['x_bound']:.1f} | {r['score']:.2f} | {r.get('depth_reached', 0):.1f} | {same} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    notes = [
        f"- {m}: {d.get('text', d['label'])} (pass {', '.join(str(p + 1) for p in d['passes'])})"
        for m, a in agreements.items()
        for d in a["divergences"]
    ]
    if notes:
        lines += ["", "Where a tree parts from ar's (first differing call, request, token):"]
        lines += notes
    if "pass_orders" in report:
        orders = "; ".join(" ".join(o) for o in report["pass_orders"])
        lines += ["", f"Method order per pass: {orders}."]
    return "\n".join(lines) + "\n"
