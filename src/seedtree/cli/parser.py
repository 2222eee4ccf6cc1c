"""The `seedtree` argument parser: one small function per command, built from shared option
groups (models, sampling, tree search, backend, Ray). It only parses: defaults and help texts
live here, checks and library calls live in the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from seedtree.cli.common import DEFAULT_CONCURRENCY, METHODS, STEP_METHODS

TASK_HELP = "gsm8k, creative_writing, blocksworld or game24"

# `seedtree --help`'s description (the one-module CLI's docstring, kept word for word)
DESCRIPTION = (
    "Command line: argparse -> frozen dataclasses -> library calls. Nothing imports this module."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedtree", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate_parser(sub)
    _add_models_parser(sub)
    _add_demo_parser(sub)
    _add_bench_decode_parser(sub)
    _add_bench_many_parser(sub)
    _add_bench_arrivals_parser(sub)
    _add_bench_parser(sub)
    _add_bench_serve_parser(sub)
    _add_bench_run_parser(sub)
    _add_bench_search_parser(sub)
    _add_solve_parser(sub)
    _add_run_parser(sub)
    _add_serve_parser(sub)
    return parser


# --- one request, the embedded pairs, the demo


def _add_generate_parser(sub) -> None:
    gen = sub.add_parser("generate", help="decode prompts with any method")
    gen.add_argument("--method", default="sd", choices=list(METHODS))
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt")
    source.add_argument(
        "--prompts-file",
        type=Path,
        help="one prompt per line, or .jsonl with a 'prompt' field per line",
    )
    gen.add_argument("--n", type=int, default=1, help="samples per prompt (seeds seed, seed+1..)")
    gen.add_argument("--chat", action="store_true", help="apply the model's chat template")
    gen.add_argument(
        "--json",
        action="store_true",
        help="print JSON: one object, or one line per request for many requests",
    )
    gen.add_argument("--trace", type=Path, help="save the timeline trace (JSON) here")
    gen.add_argument("--gantt", type=Path, help="draw the timeline as a Gantt chart PNG here")
    _add_model_args(gen)
    _add_sampling_args(gen)


def _add_models_parser(sub) -> None:
    models = sub.add_parser("models", help="list or prepare embedded model pairs")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="embedded pairs and whether they are prepared")
    prep = msub.add_parser("prepare", help="assemble, verify and cache an embedded pair")
    prep.add_argument("--pair", default="qwen2.5-coder")
    prep.add_argument("--force", action="store_true", help="rebuild even if cached")


def _add_demo_parser(sub) -> None:
    demo = sub.add_parser("demo", help="one GSM8K tree with ar and seed-batched, side by side")
    demo.add_argument("--index", type=int, default=0, help="GSM8K test problem index")
    demo.add_argument("--method", default="seed-batched", choices=list(METHODS))
    demo.add_argument("--k", type=int, default=3)
    demo.add_argument("--b", type=int, default=1)
    demo.add_argument("--depth", type=int, default=2)
    demo.add_argument(
        "--temperature", type=float, default=0.7, help="sampled thoughts (0 = greedy)"
    )
    demo.add_argument("--seed", type=int, default=1, help="the tree is a function of the seed")
    demo.add_argument("--out", type=Path, default=Path("demo"), help="tree.json + report.html")
    _add_model_args(demo)


# --- benchmarks


def _add_bench_decode_parser(sub) -> None:
    bench = sub.add_parser("bench-decode", help="AR vs SD vs MCSD on GSM8K sub-question prompts")
    bench.add_argument("--prompts", type=int, default=5)
    bench.add_argument("--max-new-tokens", type=int, default=128)
    bench.add_argument("--gamma", type=int, default=4)
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    bench.add_argument("--seed", type=int, default=0, help="prompt i samples with hash(seed, i)")
    bench.add_argument(
        "--methods",
        default="ar sd mcsd:2,1,1 mcsd:3,2,1",
        help="space-separated: ar, sd, mcsd:K1,K2,.., any method; a suffix @speculative picks "
        "speculative sampling at T > 0 (default: %(default)s)",
    )
    _add_model_args(bench)
    bench.add_argument("--out", type=Path, default=None, help="write the JSON report here")


def _add_bench_many_parser(sub) -> None:
    many = sub.add_parser("bench-many", help="every many-request method on N GSM8K requests")
    many.add_argument("--n", type=int, default=3)
    many.add_argument("--max-new-tokens", type=int, default=128)
    many.add_argument("--gamma", type=int, default=4)
    many.add_argument("--k-config", default="2,1,1")
    many.add_argument("--repeat", type=int, default=3)
    many.add_argument("--methods", default=" ".join(METHODS))
    many.add_argument("--workloads", default="same different")
    many.add_argument("--out", type=Path, default=Path("bench"))
    _add_model_args(many)


def _add_bench_arrivals_parser(sub) -> None:
    arr = sub.add_parser("bench-arrivals", help="requests arriving over time: step engine")
    arr.add_argument("--n", type=int, default=12, help="requests")
    arr.add_argument("--interval", type=float, default=2.0, help="seconds between arrivals")
    arr.add_argument("--max-new-tokens", type=int, default=128)
    arr.add_argument("--gamma", type=int, default=4)
    arr.add_argument("--repeat", type=int, default=3)
    arr.add_argument("--out", type=Path, default=Path("bench"))
    _add_model_args(arr)


def _add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="every method builds the same trees, side by side")
    bench.add_argument("--task", default="gsm8k", help=TASK_HELP)
    bench.add_argument("--limit", type=int, default=3, help="number of problems")
    bench.add_argument("--start", type=int, default=0, help="first problem index")
    bench.add_argument("--methods", default=None, help="space-separated (default: all eight)")
    bench.add_argument("--repeat", type=int, default=1, help="timed passes after one warm-up")
    bench.add_argument("--out", type=Path, default=Path("bench"))
    _add_tree_args(bench, method=False)


def _add_bench_run_parser(sub) -> None:
    br = sub.add_parser(
        "bench-run", help="problems per hour with P trees in flight on one engine, per method"
    )
    br.add_argument("--task", default="gsm8k", help=TASK_HELP)
    br.add_argument("--limit", type=int, default=8, help="number of problems")
    br.add_argument("--start", type=int, default=0, help="first problem index")
    br.add_argument(
        "--methods",
        default="batched-ar-cached seed-batched+fixed seed-batched",
        help="space-separated method variants (bench's METHOD+... forms; +fixed: today's "
        "fixed-cost draft policy)",
    )
    br.add_argument(
        "--concurrency", default="1 2 4 8", help="space-separated P values (trees in flight)"
    )
    br.add_argument("--repeat", type=int, default=1, help="timed passes after one warm-up")
    br.add_argument("--out", type=Path, default=Path("bench"))
    _add_tree_args(br, method=False, backend=False)


def _add_bench_serve_parser(sub) -> None:
    bs = sub.add_parser(
        "bench-serve", help="the same trees in-process and through seedtree serve (HTTP cost)"
    )
    bs.add_argument("--task", default="gsm8k", help=TASK_HELP)
    bs.add_argument("--limit", type=int, default=2, help="number of problems")
    bs.add_argument("--start", type=int, default=0, help="first problem index")
    bs.add_argument(
        "--method", default="seed-batched", choices=STEP_METHODS, help="in-process and served"
    )
    bs.add_argument("--repeat", type=int, default=3, help="timed passes after one warm-up")
    bs.add_argument("--out", type=Path, default=Path("bench"))
    _add_tree_args(bs, method=False, backend=False)


def _add_bench_search_parser(sub) -> None:
    from seedtree.bench.search import DEFAULT_BUDGETS

    bs = sub.add_parser(
        "bench-search",
        help="every search algorithm with its budget on the same problems: accuracy, time, "
        "correct answers per hour, and the accuracy/time frontier",
    )
    bs.add_argument("--task", default="gsm8k", help=TASK_HELP)
    bs.add_argument("--limit", type=int, default=5, help="number of problems")
    bs.add_argument("--start", type=int, default=0, help="first problem index")
    bs.add_argument(
        "--budgets",
        default=" ".join(DEFAULT_BUDGETS),
        help="space-separated ALGORITHM[:key=value,...] over the search options below, e.g. "
        "cot-sc:k=5 mcts:iterations=4 bfs:evaluation=logprob (default: %(default)s)",
    )
    bs.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="P",
        help="trees built at the same time on one engine, as `run --concurrency` (default "
        "%(default)s); time per problem is then a budget's wall time over its problems",
    )
    bs.add_argument("--out", type=Path, default=Path("bench"))
    _add_tree_args(bs, backend=False)


# --- reasoning trees


def _add_solve_parser(sub) -> None:
    solve = sub.add_parser("solve", help="build the reasoning tree of one problem")
    solve.add_argument("--task", default="gsm8k", help=TASK_HELP)
    solve.add_argument("--index", type=int, default=0, help="problem index in the task's data")
    solve.add_argument("--out", type=Path, default=Path("."), help="tree.json + report.html here")
    solve.add_argument(
        "--compare",
        metavar="METHOD",
        help="build the tree with METHOD (replaces --method) and with ar, and say whether they are "
        "the same, and if not whether the first difference is a tie of the target or a DEFECT "
        "(exit 1)",
    )
    _add_tree_args(solve)


def _add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="solve a dataset slice; one JSONL record per problem")
    run.add_argument("--task", default="gsm8k", help=TASK_HELP)
    run.add_argument("--start", type=int, default=0, help="first problem index")
    run.add_argument("--limit", type=int, default=5, help="number of problems")
    run.add_argument("--out", type=Path, required=True, help="results.jsonl + summary.json here")
    run.add_argument("--resume", action="store_true", help="skip problems already in --out")
    run.add_argument(
        "--allow-mixed",
        action="store_true",
        help="let --resume continue a run made with other settings (records are mixed)",
    )
    run.add_argument("--trees", action="store_true", help="also save each tree as JSON")
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="P",
        help=f"trees built at the same time on one engine (default {DEFAULT_CONCURRENCY}); "
        "their requests share its rounds, records are the same as one at a time (with --ray: "
        "on each replica's engine)",
    )
    _add_tree_args(run)
    _add_ray_args(run, "solve the problems on N Ray replicas, each with its own model pair")


# --- the server


def _add_serve_parser(sub) -> None:
    serve = sub.add_parser("serve", help="an OpenAI-compatible HTTP server on the step engine")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--method", default="seed-batched", choices=STEP_METHODS, help="every request's method"
    )
    serve.add_argument("--served-model-name", help="the model name clients send (default: pair)")
    serve.add_argument("--api-key", help="require Authorization: Bearer KEY on /v1 routes")
    serve.add_argument(
        "--max-queued", type=int, default=256, help="choices waiting beyond the running ones"
    )
    serve.add_argument("--max-model-len", type=int, help="prompt + completion tokens at most")
    serve.add_argument("--drain", type=float, default=30.0, help="SIGTERM: seconds to finish")
    serve.add_argument(
        "--max-body-mb", type=float, default=8.0, help="larger request bodies get 413 (default 8)"
    )
    g = serve.add_argument_group("speculation")
    g.add_argument("--gamma", type=int, default=4, help="draft tokens per round at most")
    g.add_argument("--k-config", default="2,1,1", help="mcsd: candidates per draft depth")
    _add_draft_options(g)
    _add_model_args(serve)
    _add_ray_args(serve, "serve from N Ray Serve replicas, each with its own model pair")


# --- shared option groups


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--pair", help="embedded pair name (default: qwen2.5-coder)")
    g.add_argument("--draft", help="draft model q: Hugging Face id or local folder")
    g.add_argument("--target", help="target model p: Hugging Face id or local folder")
    g.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="target precision (defines the output)",
    )
    g.add_argument(
        "--draft-dtype",
        default="int8",
        choices=["int8", "float32", "bfloat16"],
        help="draft precision; changes speed and acceptance, never the output",
    )
    g.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda[:N] (then --draft-dtype bfloat16)"
    )


def _add_sampling_mode(g) -> None:
    g.add_argument(
        "--sampling",
        default="coupled",
        choices=["coupled", "speculative"],
        help="T > 0: coupled (default; every method emits AR's tokens for a seed) or "
        "speculative (speculative sampling: AR's distribution, method-dependent tokens)",
    )


def _add_draft_options(g) -> None:
    g.add_argument(
        "--tree-mass",
        type=float,
        default=1.0,
        metavar="M",
        help="token trees at T=0 (mcsd methods): a node gets further candidates, up to "
        "--k-config's count, only while those it has hold less than M of the draft's "
        "probability (default 1: always the full count)",
    )
    g.add_argument(
        "--lookup",
        type=int,
        default=0,
        metavar="L",
        help="lookup drafting: also propose up to L tokens copied from text already written "
        "(prompt, sibling branches, earlier calls); free, lossless (default 0: off)",
    )
    g.add_argument(
        "--policy",
        default="batch",
        choices=["batch", "fixed"],
        help="adaptive draft lengths: batch (default; planned for the whole batch from costs "
        "measured at start-up: speculation fades as the batch fills) or fixed (each branch "
        "alone, at the fixed draft/target cost ratio 0.15)",
    )
    g.add_argument(
        "--no-dedup",
        dest="dedup",
        action="store_false",
        help="decode every greedy request, even one identical to a request in flight "
        "(default: decoded once, the copies take its tokens; batched methods)",
    )


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    """`generate`'s sampling group (the tree commands have their own, in `_add_tree_args`)."""
    g = p.add_argument_group("sampling")
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    _add_sampling_mode(g)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument(
        "--gamma", type=int, default=4, help="draft tokens per round at most (sd and friends)"
    )
    g.add_argument(
        "--fixed-gamma",
        action="store_true",
        help="draft exactly gamma tokens every round (default: adaptive, 0..gamma from alpha)",
    )
    _add_draft_options(g)
    g.add_argument(
        "--k-config",
        default="2,1,1",
        help="mcsd: candidates per draft depth, comma-separated (default 2,1,1)",
    )
    g.add_argument(
        "--with-replacement",
        action="store_true",
        help="mcsd at T > 0: draw a node's candidates with replacement",
    )


def _add_tree_args(p: argparse.ArgumentParser, method: bool = True, backend: bool = True) -> None:
    """Options shared by `solve`, `run`, `bench` (which takes `--methods` instead of
    `--method`) and `bench-serve` (its own `--method`, no backend): data, engine, sampling,
    search, backend, models."""
    from seedtree.search.config import ALGORITHMS, ROLLOUTS
    from seedtree.search.engine import SEARCH_METHODS

    p.add_argument("--data", type=Path, help="a JSONL file in the task's format (default: bundled)")
    if method:
        p.add_argument(
            "--method", choices=list(SEARCH_METHODS), help="decoding method (default: seed-batched)"
        )
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    _add_sampling_mode(g)
    g.add_argument("--seed", type=int, default=0, help="base seed of every sampled call")
    g.add_argument("--max-new-tokens", type=int, help="cap on every call's token budget")
    g.add_argument("--gamma", type=int, default=4, help="draft tokens per round at most")
    g.add_argument(
        "--fixed-gamma", action="store_true", help="always draft gamma (no adaptive speculation)"
    )
    _add_draft_options(g)
    g.add_argument("--k-config", default="2,1,1", help="mcsd: candidates per draft depth")
    s = p.add_argument_group("search")
    s.add_argument("--k", type=int, default=3, help="thoughts per expanded state")
    s.add_argument("--b", type=int, default=1, help="states kept per level (bfs)")
    s.add_argument("--depth", type=int, help="levels (default: the task's own)")
    s.add_argument(
        "--algorithm", default="bfs", help=f"{' | '.join(ALGORITHMS)} (default: %(default)s)"
    )
    s.add_argument("--generation", choices=["sample", "propose"], help="default: the task's")
    s.add_argument(
        "--evaluation",
        choices=["value", "vote", "logprob"],
        help="default: the task's; logprob: the expected score of the value labels under the "
        "target's probabilities (one forward, no decoding; local models)",
    )
    s.add_argument("--n-evaluate", type=int, default=1, help="value samples / votes per level")
    s.add_argument("--threshold", type=float, default=5.0, help="dfs: prune children below")
    s.add_argument("--iterations", type=int, default=8, help="mcts: select-expand-simulate rounds")
    s.add_argument("--exploration", type=float, default=1.0, help="mcts: UCT's constant c")
    s.add_argument(
        "--rollout",
        default="greedy",
        choices=list(ROLLOUTS),
        help="mcts: the reward is the new state's value, or a greedy rollout's (default)",
    )
    if backend:
        _add_backend_args(p)
    _add_model_args(p)


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument(
        "--backend",
        default="local",
        choices=["local", "openai"],
        help="local: load the models here (default); openai: send every call to an "
        "OpenAI-compatible server (--base-url, --model), concurrently per level",
    )
    g.add_argument("--base-url", help="openai: the server, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help="openai: the served model's name")
    g.add_argument("--api-key", help="openai: the server's key (default: $OPENAI_API_KEY)")
    g.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="openai: send prompts as one user message to chat completions, or as text to "
        "completions (default: what seedtree serve says of its model, as in-process; else chat)",
    )
    g.add_argument(
        "--max-concurrency", type=int, default=16, help="openai: requests in flight at most"
    )


def _add_ray_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("Ray", f'{what} (pip install "seedtree[ray]")')
    g.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="the Ray cluster: auto (the default: the one `ray start` made here), local (start "
        "Ray on this machine for this command), ray://HOST:PORT (Ray Client) or HOST:PORT",
    )
    g.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help="replicas, each with its own pair (1..64, default 1)",
    )
    g.add_argument(
        "--cpus-per-replica", type=int, metavar="C", help="CPUs and torch threads each (default 1)"
    )
    g.add_argument(
        "--gpus-per-replica",
        type=float,
        metavar="G",
        help="GPUs each, with --device cuda (default 0)",
    )
