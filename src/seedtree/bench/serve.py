"""Server benchmark (`seedtree bench-serve`): the same trees in-process and via `seedtree serve`.

The pair loads once. One warm-up per mode, then `repeat` passes; in each pass three modes build
the trees of the same problems with the same step-engine method, pass i starting at mode i mod 3
(the order rotates and is in the JSON):

    inprocess       `solve` on the pair, as `seedtree bench` runs one method
    server-singles  `solve` through the server as `--backend openai` does: one request per
                    (prompt, sample), n=1, a level's requests in flight together
    server-n        through the server, one request per prompt carrying n=k
                    (`Endpoint(samples_per_request="n")`, what OpenAI ToT programs send)

Per mode: wall time (the trees' own `wall_s`, as in `seedtree bench`), its ratio to `inprocess`
(the HTTP overhead) and, for server-n, to server-singles, each computed within a pass, then the
median; HTTP requests sent; "same tree as inprocess": every tree's signature equals the
in-process tree of the same problem in pass 1 (so the in-process row checks that its trees
repeat). At T=0 every mode promises that tree; at T>0 server-singles does too (the search's
per-sample seeds, coupled sampling), server-n does not: the server seeds choice j from
(seed, j), so its samples differ by design.

One thread at a time uses the models. Every tree through the server runs on a fresh server
(`build_server` on 127.0.0.1, a free port, uvicorn in a thread; stopped as on SIGTERM and joined
after the tree), so no server thread exists while the in-process mode runs, and every tree in
every mode starts with an empty prefix cache, as each in-process tree does (a long-lived server
would also share cached prompts across problems and passes, which would not be HTTP's doing).
Starting and stopping a server is outside the timed tree. Every torch op runs on a short-lived
thread (the pair is loaded on one; each in-process tree is built on one; each server's engine
thread ends with its server), so the process never holds two OpenMP teams: a second team, even
idle, slows every step of the other by 35-40% on this machine (`server.run.run_off_main_thread`).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from seedtree.bench.stats import median_rows
from seedtree.bench.tasks import load_examples, machine, temperature_text
from seedtree.decoding import SpecConfig
from seedtree.engine import get_method
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.progress import progress_bar
from seedtree.search import EngineConfig, SearchConfig, Tree, solve
from seedtree.search.remote import Endpoint, connect
from seedtree.server import ServerConfig
from seedtree.server.run import build_server, run_off_main_thread
from seedtree.tasks import get_task
from seedtree.tasks.base import Task
from seedtree.validate import check_int

MODES = ("inprocess", "server-singles", "server-n")
SAMPLES = {"server-singles": "single", "server-n": "n"}  # mode -> Endpoint.samples_per_request
HOST = "127.0.0.1"
START_S = 60.0  # a server that has not started by then is an error
STOP_S = 60.0
CONCURRENCY = 16  # requests in flight at most: `--max-concurrency`'s default


@dataclass(frozen=True)
class ServeBenchConfig:
    """`engine`: the method (a step-engine one: the server runs it), sampling, seed and the cap
    on every call's budget; `spec`: its draft settings, the same in-process and on the server."""

    task: str = "gsm8k"
    limit: int = 2
    start: int = 0
    repeat: int = 3
    search: SearchConfig = field(default_factory=SearchConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    spec: SpecConfig = field(default_factory=SpecConfig)
    dtype: str = "float32"
    draft_dtype: str = "int8"
    data: str | None = None  # a JSONL file in the task's format (default: bundled)

    def __post_init__(self) -> None:
        check_int("--limit", self.limit, 1)
        check_int("--repeat", self.repeat, 1)
        check_int("--start", self.start, 0)
        method = get_method(self.engine.method)
        if method.schedule not in ("serial", "batched"):
            raise SeedtreeError(
                f"--method {self.engine.method} does not run on the server's step engine: use "
                "seed-batched, batched-ar, batched-ar-cached, sd or mcsd"
            )


@contextmanager
def serving(llm: LLM, config: ServerConfig) -> Iterator[str]:
    """`seedtree serve`'s app for `llm` on 127.0.0.1 and a free port, uvicorn in a thread;
    yields its OpenAI base URL (`.../v1`); on exit stopped as on SIGTERM, threads joined."""
    server = build_server(llm, config, HOST, 0, log_level="warning")
    thread = threading.Thread(target=server.run, name="seedtree-bench-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SeedtreeError(
                    f"the benchmark's server on {HOST} did not start within {START_S:g} s: "
                    "see the uvicorn messages above"
                )
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{HOST}:{port}/v1"
    finally:
        server.handle_exit(signal.SIGTERM, None)
        thread.join(timeout=STOP_S)
        if thread.is_alive():
            raise SeedtreeError(f"the benchmark's server did not stop within {STOP_S:g} s")


def _server_config(llm: LLM, cfg: ServeBenchConfig) -> ServerConfig:
    return ServerConfig(model=llm.models.name, method=cfg.engine.method, spec=cfg.spec, drain_s=5.0)


def _trees(
    llm: LLM,
    mode: str,
    task: Task,
    examples: list[Any],
    search: SearchConfig,
    engine: EngineConfig,
    cfg: ServeBenchConfig,
    done: Callable[[], Any] | None = None,
) -> list[Tree]:
    """The trees of `examples` built in `mode`; `done()` is told after each."""
    trees = []
    for example in examples:
        if mode == "inprocess":
            # on a short-lived thread, as the server's engine runs on its own: one OpenMP team
            # at a time in the process (`run_off_main_thread`), the same for both modes
            trees.append(
                run_off_main_thread(
                    lambda e=example: solve(llm.models, task, e, search, engine, cfg.spec)
                )
            )
        else:
            with serving(llm, _server_config(llm, cfg)) as url:
                endpoint = Endpoint(
                    url,
                    llm.models.name,
                    max_concurrency=CONCURRENCY,
                    samples_per_request=SAMPLES[mode],
                )
                endpoint = connect(endpoint)  # settles chat before the timed tree
                trees.append(solve(None, task, example, search, engine, endpoint=endpoint))
        if done is not None:
            done()
    return trees


def _http_requests(trees: list[Tree]) -> int:
    return sum(
        1 for t in trees for c in t.calls for i in c.trace["intervals"] if i["kind"] == "request"
    )


def _mode_row(mode: str, trees: list[Tree], reference: list[Tree]) -> dict:
    wall = sum(t.wall_s for t in trees)
    tokens = sum(t.new_tokens for t in trees)
    return {
        "wall_s": wall,
        "generate_s": sum(t.phase_wall("generate") for t in trees),
        "evaluate_s": sum(t.phase_wall("evaluate") for t in trees),
        "new_tokens": tokens,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "http_requests": None if mode == "inprocess" else _http_requests(trees),
        "score": sum(float(t.metrics.get("score") or 0.0) for t in trees) / len(trees),
        "same_tree_as_inprocess": all(
            t.signature() == r.signature() for t, r in zip(trees, reference, strict=True)
        ),
    }


def _ratios(row: dict) -> None:
    """Within one pass: each mode's wall time over inprocess's (and the overhead in %), and
    server-n's over server-singles'."""
    base = row["inprocess"]["wall_s"]
    for mode, r in row.items():
        r["x_inprocess"] = r["wall_s"] / base if base else None
        r["http_overhead_pct"] = None if r["x_inprocess"] is None else 100 * (r["x_inprocess"] - 1)
        singles = row["server-singles"]["wall_s"]
        r["x_singles"] = r["wall_s"] / singles if mode == "server-n" and singles else None


def run_serve_bench(
    llm: LLM, cfg: ServeBenchConfig, out: Path | None = None, progress: bool = True
) -> dict:
    """The three modes on the same trees; the report (and, with `out`, its files)."""
    task = get_task(cfg.task)
    examples = load_examples(task, cfg.data, cfg.start, cfg.limit)
    warm = SearchConfig(k=2, b=1, depth=1)
    warm_engine = replace(cfg.engine, max_new_tokens=4)
    if progress:
        print("bench-serve: warm-up, a small tree per mode", file=sys.stderr, flush=True)
    for mode in MODES:  # warm-up: one-off costs (allocator, threads, HTTP client, app)
        _trees(llm, mode, task, examples[:1], warm, warm_engine, cfg)
    bar = progress_bar(
        total=cfg.repeat * len(MODES) * len(examples),
        desc=f"bench-serve {cfg.task}",
        disable=not progress,
        unit="tree",
    )
    passes, runs, orders, reference = [], [], [], None
    n = len(MODES)
    for i in range(cfg.repeat):
        order = MODES[i % n :] + MODES[: i % n]  # pass i starts at mode i mod n
        trees = {}
        for mode in order:
            bar.set_postfix_str(mode)
            trees[mode] = _trees(llm, mode, task, examples, cfg.search, cfg.engine, cfg, bar.update)
            if reference is None and mode == "inprocess":
                reference = trees[mode]
        row = {m: _mode_row(m, trees[m], reference) for m in MODES}
        _ratios(row)
        if progress:
            walls = ", ".join(f"{m} {row[m]['wall_s']:.1f} s" for m in order)
            tqdm.write(f"pass {i + 1}/{cfg.repeat}: {walls}", file=sys.stderr)
        passes.append(row)
        runs.append(trees)
        orders.append(list(order))
    bar.close()
    report = {
        "config": asdict(cfg),
        "pair": llm.models.name,
        "server": {"host": HOST, "fresh_per_tree": True, "max_concurrency": CONCURRENCY}
        | asdict(_server_config(llm, cfg)),
        "machine": machine(),
        "examples": [str(e.id) for e in examples],
        "modes": list(MODES),
        "median": median_rows(passes),
        "pass_orders": orders,
        "passes": passes,
    }
    if out is not None:
        save_outputs(report, runs[-1], out)
    return report


def save_outputs(report: dict, trees: dict[str, list[Tree]], out: Path) -> None:
    """`bench_serve_<task>.json` (raw), `.md` (the table) and the last pass's trees per mode
    (`trees_serve_<task>_<mode>.json`)."""
    task = report["config"]["task"]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_serve_{task}.json").write_text(json.dumps(report, indent=1))
    (out / f"bench_serve_{task}.md").write_text(markdown_table(report))
    for mode, mode_trees in trees.items():
        path = out / f"trees_serve_{task}_{mode}.json"
        path.write_text(json.dumps([t.to_dict() for t in mode_trees]))


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown_table(report: dict) -> str:
    cfg = report["config"]
    s, e, spec = cfg["search"], cfg["engine"], cfg["spec"]
    lines = [
        f"**{cfg['task']} through `seedtree serve`**: {len(report['examples'])} problems "
        f"({', '.join(report['examples'])}), {e['method']}, {s['algorithm']} k={s['k']} "
        f"b={s['b']} depth={s['depth'] or 'task default'}, max new tokens "
        f"{e['max_new_tokens'] or 'task default'}, T={temperature_text({'sampling': e})}, target "
        f"{cfg['dtype']}, draft {cfg['draft_dtype']}, gamma={spec['gamma']}, {cfg['repeat']} "
        "passes (median [min-max]; ratios within a pass, then the median). Each tree through "
        f"the server on a fresh server ({report['server']['host']}, empty prefix cache, as each "
        "in-process tree starts), at most "
        f"{report['server']['max_concurrency']} requests in flight.",
        "",
        "| mode | wall s | vs inprocess | HTTP overhead | vs server-singles | HTTP requests | "
        "tokens | tok/s | score | same tree as inprocess |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in report["median"].items():
        same = {None: "-", True: "yes", False: "NO"}[r["same_tree_as_inprocess"]]
        lines.append(
            f"| {mode} | {r['wall_s']:.1f} [{r['wall_s_min']:.1f}-{r['wall_s_max']:.1f}] | "
            f"{_cell(r['x_inprocess'], '{:.2f}x')} | "
            f"{_cell(r['http_overhead_pct'], '{:+.1f}%')} | "
            f"{_cell(r['x_singles'], '{:.2f}x')} | {_cell(r['http_requests'], '{:.0f}')} | "
            f"{r['new_tokens']:.0f} | {r['tokens_per_s']:.2f} | {r['score']:.2f} | {same} |"
        )
    if e["temperature"] > 0:
        lines += [
            "",
            "At T > 0 server-n's choices sample with the server's seeds (hashed from the "
            "request's seed and the choice index), not the search's per-sample seeds: its trees "
            "may differ from the in-process ones by design.",
        ]
    orders = "; ".join(" ".join(o) for o in report["pass_orders"])
    lines += ["", f"Mode order per pass: {orders}."]
    return "\n".join(lines) + "\n"
