"""Command line: argparse -> frozen dataclasses -> library calls. Nothing imports this module."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from seedtree.errors import SeedtreeError
from seedtree.files import check_output_dir, check_output_file, read_bytes, utf8_lines


@contextlib.contextmanager
def exit_on_interrupt():
    """Start-up (imports, model loading): a Ctrl-C exits at once with "interrupted" and status
    130, as one during decoding does. Nothing is written yet, and a KeyboardInterrupt raised
    inside an import would leave modules half-imported and surface as another error."""

    def interrupted(signum, frame):
        print("interrupted", file=sys.stderr, flush=True)
        os._exit(130)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


with exit_on_interrupt():  # torch and transformers load here
    from seedtree.engine import METHODS, REGISTRY

STEP_METHODS = [m.name for m in REGISTRY.values() if m.schedule in ("serial", "batched")]


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


def _add_lookup(g) -> None:
    g.add_argument(
        "--lookup",
        type=int,
        default=0,
        metavar="L",
        help="lookup drafting: also propose up to L tokens copied from text already written "
        "(prompt, sibling branches, earlier calls); free, lossless (default 0: off)",
    )


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
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
    _add_lookup(g)
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


def read_prompts(path: Path) -> list[str]:
    """Prompts from a UTF-8 text file (one per line) or a .jsonl file ({"prompt": ...} per
    line). A line that is not UTF-8, or a JSONL line without a string 'prompt', is an error."""
    prompts = []
    for number, line in utf8_lines(read_bytes(path, "prompts file")):
        if line is None:
            raise SeedtreeError(f"{path}:{number} is not UTF-8 text: save the file as UTF-8")
        if not line.strip():
            continue
        prompts.append(_jsonl_prompt(path, number, line) if path.suffix == ".jsonl" else line)
    if not prompts:
        raise SeedtreeError(f"prompts file {path} has no prompts: write one prompt per line")
    return prompts


def _jsonl_prompt(path: Path, number: int, line: str) -> str:
    try:
        prompt = json.loads(line)["prompt"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SeedtreeError(
            f"{path}:{number} is not a JSON object with a 'prompt' field: fix that line"
        ) from None
    if not isinstance(prompt, str):
        raise SeedtreeError(
            f"{path}:{number}: 'prompt' must be a string, got {json.dumps(prompt)}: fix that line"
        )
    return prompt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedtree", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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

    models = sub.add_parser("models", help="list or prepare embedded model pairs")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="embedded pairs and whether they are prepared")
    prep = msub.add_parser("prepare", help="assemble, verify and cache an embedded pair")
    prep.add_argument("--pair", default="qwen2.5-coder")
    prep.add_argument("--force", action="store_true", help="rebuild even if cached")

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

    arr = sub.add_parser("bench-arrivals", help="requests arriving over time: step engine")
    arr.add_argument("--n", type=int, default=12, help="requests")
    arr.add_argument("--interval", type=float, default=2.0, help="seconds between arrivals")
    arr.add_argument("--max-new-tokens", type=int, default=128)
    arr.add_argument("--gamma", type=int, default=4)
    arr.add_argument("--repeat", type=int, default=3)
    arr.add_argument("--out", type=Path, default=Path("bench"))
    _add_model_args(arr)

    bench = sub.add_parser("bench", help="every method builds the same trees, side by side")
    bench.add_argument("--task", default="gsm8k", help="gsm8k, creative_writing or blocksworld")
    bench.add_argument("--limit", type=int, default=3, help="number of problems")
    bench.add_argument("--start", type=int, default=0, help="first problem index")
    bench.add_argument("--methods", default=None, help="space-separated (default: all eight)")
    bench.add_argument("--repeat", type=int, default=1, help="timed passes after one warm-up")
    bench.add_argument("--out", type=Path, default=Path("bench"))
    _add_tree_args(bench, method=False)

    bs = sub.add_parser(
        "bench-serve", help="the same trees in-process and through seedtree serve (HTTP cost)"
    )
    bs.add_argument("--task", default="gsm8k", help="gsm8k, creative_writing or blocksworld")
    bs.add_argument("--limit", type=int, default=2, help="number of problems")
    bs.add_argument("--start", type=int, default=0, help="first problem index")
    bs.add_argument(
        "--method", default="seed-batched", choices=STEP_METHODS, help="in-process and served"
    )
    bs.add_argument("--repeat", type=int, default=3, help="timed passes after one warm-up")
    bs.add_argument("--out", type=Path, default=Path("bench"))
    _add_tree_args(bs, method=False, backend=False)

    solve = sub.add_parser("solve", help="build the reasoning tree of one problem")
    solve.add_argument("--task", default="gsm8k", help="gsm8k, creative_writing or blocksworld")
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

    run = sub.add_parser("run", help="solve a dataset slice; one JSONL record per problem")
    run.add_argument("--task", default="gsm8k", help="gsm8k, creative_writing or blocksworld")
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
    _add_tree_args(run)
    _add_ray_args(run, "solve the problems on N Ray replicas, each with its own model pair")
    _add_serve_parser(sub)
    return parser


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
    g = serve.add_argument_group("speculation")
    g.add_argument("--gamma", type=int, default=4, help="draft tokens per round at most")
    g.add_argument("--k-config", default="2,1,1", help="mcsd: candidates per draft depth")
    _add_lookup(g)
    _add_model_args(serve)
    _add_ray_args(serve, "serve from N Ray Serve replicas, each with its own model pair")


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


def _add_tree_args(p: argparse.ArgumentParser, method: bool = True, backend: bool = True) -> None:
    """Options shared by `solve`, `run`, `bench` (which takes `--methods` instead of
    `--method`) and `bench-serve` (its own `--method`, no backend): data, engine, sampling,
    search, backend, models."""
    from seedtree.search.config import ALGORITHMS
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
    _add_lookup(g)
    g.add_argument("--k-config", default="2,1,1", help="mcsd: candidates per draft depth")
    s = p.add_argument_group("search")
    s.add_argument("--k", type=int, default=3, help="thoughts per expanded state")
    s.add_argument("--b", type=int, default=1, help="states kept per level (bfs)")
    s.add_argument("--depth", type=int, help="levels (default: the task's own)")
    s.add_argument("--algorithm", default="bfs", choices=list(ALGORITHMS))
    s.add_argument("--generation", choices=["sample", "propose"], help="default: the task's")
    s.add_argument("--evaluation", choices=["value", "vote"], help="default: the task's")
    s.add_argument("--n-evaluate", type=int, default=1, help="value samples / votes per level")
    s.add_argument("--threshold", type=float, default=5.0, help="dfs: prune children below")
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


def _sampling(args) -> tuple:
    from seedtree.decoding import SamplingParams, SpecConfig

    params = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        stop=tuple(args.stop),
        seed=args.seed,
        sampling=args.sampling,
    )
    return params, SpecConfig(
        gamma=args.gamma,
        k_config=parse_k_config(args.k_config),
        replacement=args.with_replacement,
        adaptive=not args.fixed_gamma,
        lookup=args.lookup,
    )


def parse_k_config(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(",")) if text.strip() else ()
    except ValueError:
        raise SeedtreeError(
            f"--k-config '{text}' is not a list of integers: write it like 2,1,1"
        ) from None


def _model_settings(args):
    with exit_on_interrupt():  # transformers may load here
        from seedtree.llm import ModelSettings

    return ModelSettings(
        args.pair,
        draft=args.draft,
        target=args.target,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        device=args.device,
    )


def _llm(args, progress: bool = True):
    with exit_on_interrupt():
        return _model_settings(args).load(progress)


def cmd_generate(args) -> int:
    from seedtree.scheduling import save_gantt

    prompts = read_prompts(args.prompts_file) if args.prompts_file else [args.prompt]
    if any(not p.strip() for p in prompts):
        raise SeedtreeError("prompt is empty: pass some text with --prompt")
    if args.n < 1:
        raise SeedtreeError(f"--n must be >= 1 (samples per prompt), got {args.n}")
    params, spec = _sampling(args)  # validate before loading models
    params = replace(params, n=args.n)
    many = len(prompts) > 1 or args.n > 1 or args.trace or args.gantt
    many = many or args.method not in ("ar", "sd", "mcsd")
    llm = _llm(args, progress=not args.json)
    results = _generate(llm, prompts, params, args.method, spec, args.chat, force_many=many)
    for i, result in enumerate(results):
        if args.json:
            out = result.to_dict()
            if many:
                out["index"] = i
            else:
                del out["prompt"]
            print(json.dumps(out))
        else:
            if many:
                print(f"--- request {i}")
            print(result.text)
    run = llm.last_run
    if run is not None:
        if args.trace:
            run.trace.save(args.trace)
        if args.gantt:
            save_gantt(run.trace, args.gantt)
        s = run.stats
        print(
            f"\n[{args.method}] {len(results)} requests, {s.new_tokens} tokens in {s.wall_s:.2f}s "
            f"({s.tokens_per_s:.2f} tok/s), target busy {s.target_busy_fraction:.0%}, "
            f"mean queue wait {s.mean_queue_wait_s * 1000:.0f} ms, errors {s.errors}",
            file=sys.stderr,
        )
    elif not args.json:
        s, result = results[0].stats, results[0]
        print(
            f"\n[{args.method}] {s.new_tokens} tokens in {s.wall_s:.2f}s "
            f"({s.tokens_per_s:.2f} tok/s), finish={result.finish_reason}, "
            f"target forwards={s.target_forwards}"
            + (f", alpha={s.alpha:.2f}" if args.method != "ar" else ""),
            file=sys.stderr,
        )
    return 0


def _generate(llm, prompts, params, method, spec, chat, force_many):
    if force_many:
        return llm.generate_many(prompts, params, method=method, spec=spec, chat=chat).results
    return llm.generate(prompts, params, method=method, spec=spec, chat=chat)


def _cache_text(model) -> str:
    from seedtree.models.assemble import REPAIR, cache_state, model_dir

    state = cache_state(model)
    if state.status == "ready":
        return f"prepared at {model_dir(model)}"
    if state.status == "corrupt":
        return f"CORRUPT at {model_dir(model)} ({state.reason}): {REPAIR}"
    return "not prepared"


def cmd_models(args) -> int:
    from seedtree.models import PAIRS, get_pair, prepare_model
    from seedtree.models.assemble import cache_state, corrupt_error

    if args.models_command == "list":
        for name, pair in PAIRS.items():
            print(f"{name}:")
            for role, m in (("draft", pair.draft), ("target", pair.target)):
                print(
                    f"  {role:6s} {m.name} ({m.license}) from {m.parts.prefix}1..{m.parts.n_parts}"
                    f": {_cache_text(m)}"
                )
        return 0
    pair = get_pair(args.pair)
    for m in (pair.draft, pair.target):
        state = None if args.force else cache_state(m, checksums=True)  # a prepared cache: verify
        if state is not None and state.status == "corrupt":
            raise corrupt_error(m, state)
        print(f"{m.name}: {prepare_model(m, force=args.force)}")
    return 0


def cmd_demo(args) -> int:
    from seedtree.decoding import SamplingParams, SpecConfig
    from seedtree.report import write_report
    from seedtree.report.text import format_tree
    from seedtree.search import EngineConfig, SearchConfig, progress_printer, solve
    from seedtree.tasks import get_task

    task = get_task("gsm8k")
    example = task.get(args.index)
    search = SearchConfig(k=args.k, b=args.b, depth=args.depth)
    SamplingParams(temperature=args.temperature, seed=args.seed)  # validates
    llm = _llm(args)
    print(
        f"GSM8K #{args.index}, ToT BFS k={args.k} b={args.b} depth={args.depth}, {args.dtype}, "
        f"temperature {args.temperature}, seed {args.seed} (coupled sampling)"
    )
    warm = SearchConfig(k=2, b=1, depth=1)
    for method in ("ar", args.method):  # warm-up: first calls pay one-off costs
        solve(llm.models, task, example, warm, EngineConfig(method=method, max_new_tokens=4))
    trees = {}
    for method in ("ar", args.method):
        print(f"building the tree with {method} ...", flush=True)
        engine = EngineConfig(method=method, temperature=args.temperature, seed=args.seed)
        progress = progress_printer(method, sys.stdout)
        trees[method] = solve(llm.models, task, example, search, engine, progress=progress)
    ar, fast = trees["ar"], trees[args.method]
    print()
    print(format_tree(fast))
    verdict = _print_agreement(llm.models, args.method, ar, fast, SpecConfig())
    print(f"ar: {ar.wall_s:.1f} s   {args.method}: {fast.wall_s:.1f} s")
    print(
        f"speedup {args.method} / ar: {ar.wall_s / fast.wall_s:.2f}x "
        "(one run; see BENCHMARKS.md for medians)"
    )
    fast.save(args.out / "tree.json")
    write_report(fast, args.out / "report.html")
    print(f"wrote {args.out / 'tree.json'} and {args.out / 'report.html'}")
    return 1 if verdict == "DEFECT" else 0


def _print_agreement(pair, method: str, ar, other, spec) -> str:
    """Print "same tree as ar" with its verdict (and where the trees part); return the verdict."""
    from seedtree.bench.agreement import agreement
    from seedtree.engine.methods import scoring_of

    scoring = scoring_of(method, spec.gamma, spec.k_config)
    found = agreement(pair, method, [([ar], [other])], scoring)
    print(f"\nsame tree as ar (thoughts, values, selection, answer): {found.label()}")
    for d in found.divergences:
        print(f"  {d.describe(pair.tokenizer, method)}")
    return found.verdict


def cmd_bench_decode(args) -> int:
    from seedtree.bench.decode import (
        DecodeBenchConfig,
        markdown_tables,
        parse_method,
        run_decode_bench,
        save_report,
    )
    from seedtree.decoding import SamplingParams

    cfg = DecodeBenchConfig(
        n_prompts=args.prompts,
        max_new_tokens=args.max_new_tokens,
        gamma=args.gamma,
        repeat=args.repeat,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        methods=tuple(m for m in args.methods.split() if m),
        temperature=args.temperature,
        seed=args.seed,
    )
    if cfg.repeat < 1 or cfg.n_prompts < 1:
        raise SeedtreeError("--repeat and --prompts must be >= 1")
    for name in cfg.methods:  # validate before loading models
        parse_method(name, cfg.gamma)
    SamplingParams(temperature=cfg.temperature, seed=cfg.seed)
    report = run_decode_bench(_llm(args), cfg)
    if args.out:
        save_report(report, args.out)
    print(markdown_tables(report))
    return 0


def cmd_bench_many(args) -> int:
    from seedtree.bench.many import ManyBenchConfig, markdown_tables, run_many_bench, save_report

    methods = tuple(m for m in args.methods.split() if m)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "ar" not in methods:
        raise SeedtreeError(f"--methods must include ar and only {', '.join(METHODS)}")
    if args.n < 1 or args.repeat < 1:
        raise SeedtreeError("--n and --repeat must be >= 1")
    cfg = ManyBenchConfig(
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        gamma=args.gamma,
        k_config=parse_k_config(args.k_config),
        repeat=args.repeat,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        methods=methods,
        workloads=tuple(args.workloads.split()),
    )
    report = run_many_bench(_llm(args), cfg, out=args.out)
    save_report(report, args.out / f"many_{args.dtype}.json")
    print(markdown_tables(report))
    return 0


def cmd_bench_arrivals(args) -> int:
    import json

    from seedtree.bench.arrivals import ArrivalsBenchConfig, markdown_table, run_arrivals_bench

    if args.n < 1 or args.repeat < 1 or args.max_new_tokens < 1:
        raise SeedtreeError("--n, --repeat and --max-new-tokens must be >= 1")
    if not 0 <= args.interval <= 3600:
        raise SeedtreeError(f"--interval must be in [0, 3600] seconds, got {args.interval}")
    cfg = ArrivalsBenchConfig(
        n=args.n,
        interval_s=args.interval,
        max_new_tokens=args.max_new_tokens,
        gamma=args.gamma,
        repeat=args.repeat,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report = run_arrivals_bench(_llm(args), cfg)
    (args.out / f"arrivals_{args.dtype}.json").write_text(json.dumps(report, indent=1))
    print(markdown_table(report))
    return 0


def _tree_configs(args) -> tuple:
    from seedtree.decoding import SamplingParams, SpecConfig
    from seedtree.search import EngineConfig, SearchConfig

    SamplingParams(
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, sampling=args.sampling
    )  # validates
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise SeedtreeError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    search = SearchConfig(
        k=args.k,
        b=args.b,
        depth=args.depth,
        algorithm=args.algorithm,
        generation=args.generation,
        evaluation=args.evaluation,
        n_evaluate=args.n_evaluate,
        threshold=args.threshold,
    )
    engine = EngineConfig(
        method=getattr(args, "method", None) or "seed-batched",
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        sampling=args.sampling,
        max_new_tokens=args.max_new_tokens,
    )
    spec = SpecConfig(
        gamma=args.gamma,
        k_config=parse_k_config(args.k_config),
        adaptive=not args.fixed_gamma,
        lookup=args.lookup,
    )
    return search, engine, spec


def _endpoint(args):
    """`--backend openai`'s endpoint, checked (reachable, key, model) and its chat mode settled;
    None for local models. Options of the other backend are one-line errors."""
    from seedtree.search.remote import Endpoint, connect

    remote = {"--base-url": args.base_url, "--model": args.model, "--api-key": args.api_key}
    remote["--chat/--no-chat"] = args.chat
    if args.backend == "local":
        given = [name for name, value in remote.items() if value is not None]
        if given:
            them = "it" if len(given) == 1 else "them"
            raise SeedtreeError(
                f"{', '.join(given)}: only for --backend openai: add that, or drop {them}"
            )
        return None
    if not args.base_url:
        raise SeedtreeError(
            "--backend openai needs --base-url URL: the server's address, e.g. "
            "http://127.0.0.1:8000/v1"
        )
    local = {"--pair": args.pair, "--draft": args.draft, "--target": args.target}
    local["--method"] = getattr(args, "method", None)
    given = [name for name, value in local.items() if value is not None]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise SeedtreeError(
            f"{', '.join(given)}: not with --backend openai, which runs on the server's model "
            f"and method: drop {them}, or use --backend local"
        )
    key = args.api_key or os.environ.get("OPENAI_API_KEY") or None
    endpoint = Endpoint(args.base_url, args.model or "", key, args.chat, args.max_concurrency)
    return connect(endpoint)


def cmd_solve(args) -> int:
    from seedtree.report import write_report
    from seedtree.report.text import format_tree
    from seedtree.search import progress_printer, solve
    from seedtree.tasks import get_task

    task = get_task(args.task)
    search, engine, spec = _tree_configs(args)
    if args.compare is not None:
        if args.backend != "local":
            raise SeedtreeError(
                "--compare builds trees with local models: drop it with --backend openai"
            )
        engine = _compared_engine(args.compare, engine)
    example = task.get(args.index, args.data)
    endpoint = _endpoint(args)
    pair = None if endpoint is not None else _llm(args).models
    label = "openai" if endpoint is not None else engine.method
    progress = progress_printer(label)
    tree = solve(pair, task, example, search, engine, spec, progress=progress, endpoint=endpoint)
    print(format_tree(tree))
    verdict = None
    if args.compare is not None:
        ar_engine = replace(engine, method="ar")
        ar = solve(pair, task, example, search, ar_engine, spec, progress=progress_printer("ar"))
        verdict = _print_agreement(pair, engine.method, ar, tree, spec)
        print(f"ar: {ar.wall_s:.1f} s   {engine.method}: {tree.wall_s:.1f} s")
        ar.save(args.out / "tree_ar.json")
    tree.save(args.out / "tree.json")
    write_report(tree, args.out / "report.html")
    print(f"wrote {args.out / 'tree.json'} and {args.out / 'report.html'}")
    return 1 if verdict == "DEFECT" else 0


def _compared_engine(method: str, engine):
    """`solve --compare METHOD`: METHOD's engine; the comparison is only a promise at T=0."""
    from seedtree.search.engine import SEARCH_METHODS

    if method not in SEARCH_METHODS:
        raise SeedtreeError(
            f"unknown method '{method}' for --compare: choose from {', '.join(SEARCH_METHODS)}"
        )
    if engine.temperature > 0 and engine.sampling != "coupled":
        raise SeedtreeError(
            "--compare at --temperature > 0 needs --sampling coupled: with speculative sampling "
            "the trees differ from ar's by design"
        )
    return replace(engine, method=method)


def _ray_config(args):
    """`--ray`'s RayConfig, checked, with Ray importable; None without `--ray` (where the
    replica options are an error)."""
    sizes = {"--replicas": args.replicas, "--cpus-per-replica": args.cpus_per_replica}
    sizes["--gpus-per-replica"] = args.gpus_per_replica
    if args.ray is None:
        given = [name for name, value in sizes.items() if value is not None]
        if given:
            them = "it" if len(given) == 1 else "them"
            raise SeedtreeError(f"{', '.join(given)}: only with --ray: add it, or drop {them}")
        return None
    from seedtree.distributed.cluster import RayConfig, check_device, import_ray

    import_ray()
    config = RayConfig(
        args.ray,
        replicas=1 if args.replicas is None else args.replicas,
        cpus=1 if args.cpus_per_replica is None else args.cpus_per_replica,
        gpus=0.0 if args.gpus_per_replica is None else args.gpus_per_replica,
    )
    check_device(_model_settings(args), config)
    return config


def cmd_run(args) -> int:
    from seedtree.search.results import open_run, run_settings
    from seedtree.search.run import run_in_folder
    from seedtree.tasks import get_task

    task = get_task(args.task)
    search, engine, spec = _tree_configs(args)
    if args.limit < 1 or args.start < 0:
        raise SeedtreeError("--limit must be >= 1 and --start >= 0")
    ray_config = _ray_config(args)
    if ray_config is not None and args.backend != "local":
        raise SeedtreeError(
            "--ray runs local models on Ray replicas, --backend openai a server's: drop one"
        )
    examples = task.load(args.data)
    if args.start >= len(examples):
        raise SeedtreeError(
            f"--start {args.start} is out of range: {task.name} has {len(examples)} problems"
        )
    examples = examples[args.start : args.start + args.limit]
    data = str(args.data.resolve()) if args.data else None
    endpoint = _endpoint(args)
    if endpoint is None:
        label, dtype = _model_settings(args).label(), args.dtype
    else:
        label, dtype = endpoint.model, None
    settings = run_settings(task.name, label, dtype, engine, search, spec, data, endpoint)
    on_tree = None
    if args.trees:

        def on_tree(tree):
            tree.save(args.out / "trees" / f"{tree.example_id.replace('/', '_')}.json")

    # the folder is locked and checked (busy, finished records without --resume, other
    # settings) before the models load, and stays locked to the end
    with open_run(args.out, settings, args.resume, args.allow_mixed) as folder:
        if ray_config is not None:
            from seedtree.distributed.ray_run import run_on_ray

            models = _model_settings(args)
            ray_run = run_on_ray(
                models, task, examples, folder, search, engine, spec, ray_config, on_tree=on_tree
            )
            summary = ray_run.summary
        else:
            pair = None if endpoint is not None else _llm(args).models
            summary = run_in_folder(
                pair, task, examples, folder, search, engine, spec,
                on_tree=on_tree, endpoint=endpoint,
            )  # fmt: skip
    print(
        f"{summary.task} [{summary.method}]: {summary.correct}/{summary.examples} correct "
        f"(accuracy {summary.accuracy:.2f}, mean score {summary.mean_score:.2f}), "
        f"{summary.wall_s:.1f} s, {summary.tokens_per_s:.2f} tokens/s, "
        f"unparsed values {summary.unparsed_values}"
        + (f", errors {summary.errors} (see 'error' in the results)" if summary.errors else "")
        + (
            " (interrupted: finished problems are saved; rerun with --resume)"
            if summary.interrupted
            else ""
        )
    )
    print(f"results: {args.out / 'results.jsonl'}")
    return 130 if summary.interrupted else 0


def cmd_bench(args) -> int:
    from seedtree.bench.tasks import (
        TaskBenchConfig,
        markdown_table,
        parse_variant,
        run_task_bench,
    )
    from seedtree.search.engine import SEARCH_METHODS
    from seedtree.tasks import get_task

    if args.backend != "local":
        raise SeedtreeError(
            "seedtree bench times local methods against each other and does not run on "
            "--backend openai: time an endpoint with seedtree run --backend openai (its summary "
            "has the wall time and tokens/s)"
        )
    _endpoint(args)  # --base-url and friends without --backend openai: an error
    task = get_task(args.task)
    search, engine, spec = _tree_configs(args)
    methods = tuple(args.methods.split()) if args.methods else SEARCH_METHODS
    if not methods:
        raise SeedtreeError(f"--methods is empty: choose from {', '.join(SEARCH_METHODS)}")
    for name in methods:  # before the models load
        parse_variant(name, spec)
    if args.limit < 1 or args.repeat < 1 or args.start < 0:
        raise SeedtreeError("--limit and --repeat must be >= 1 and --start >= 0")
    n_problems = len(task.load(args.data))  # checks --data before models load
    if args.start >= n_problems:
        raise SeedtreeError(
            f"--start {args.start} is out of range: {args.task} has {n_problems} problems"
        )
    cfg = TaskBenchConfig(
        task=args.task,
        limit=args.limit,
        start=args.start,
        methods=methods,
        repeat=args.repeat,
        search=search,
        max_new_tokens=args.max_new_tokens,
        gamma=spec.gamma,
        k_config=spec.k_config,
        adaptive=spec.adaptive,
        lookup=spec.lookup,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        sampling=engine,
        data=str(args.data) if args.data else None,
    )
    report = run_task_bench(_llm(args).models, cfg, out=args.out)
    print(markdown_table(report))
    print(f"wrote {args.out / f'bench_{args.task}.json'} (+ .md, .png, Gantt charts)")
    defects = [m for m, a in report["agreement"].items() if a["verdict"] == "DEFECT"]
    if defects:
        print(
            f"DEFECT: {', '.join(defects)} built a tree that is not ar's where the target's "
            "scores are not tied (see the table's notes)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_bench_serve(args) -> int:
    from seedtree.tasks import get_task

    try:
        import openai  # noqa: F401  (the server modes' client: checked before the models load)

        from seedtree.bench.serve import ServeBenchConfig, markdown_table, run_serve_bench
    except ImportError as exc:
        raise SeedtreeError(
            f"seedtree bench-serve needs the server extra ({exc.name} is missing): "
            'pip install -e ".[server]"'
        ) from None
    task = get_task(args.task)
    search, engine, spec = _tree_configs(args)
    cfg = ServeBenchConfig(
        task=args.task,
        limit=args.limit,
        start=args.start,
        repeat=args.repeat,
        search=search,
        engine=engine,
        spec=spec,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        data=str(args.data) if args.data else None,
    )
    n_problems = len(task.load(args.data))  # checks --data before the models load
    if args.start >= n_problems:
        raise SeedtreeError(
            f"--start {args.start} is out of range: {args.task} has {n_problems} problems"
        )
    report = run_serve_bench(_llm(args), cfg, out=args.out)
    print(markdown_table(report))
    print(f"wrote {args.out / f'bench_serve_{args.task}.json'} (+ .md, trees per mode)")
    differ = [m for m, r in report["median"].items() if r["same_tree_as_inprocess"] is False]
    if differ:
        print(
            f"note: {', '.join(differ)}: a tree differs from the in-process one (server-n at "
            "T > 0: by design; otherwise a tie of the target's scores under another batching, "
            f"or a defect: compare the trees_serve_{args.task}_<mode>.json files)",
            file=sys.stderr,
        )
    return 0


def cmd_serve(args) -> int:
    from seedtree.decoding import SpecConfig

    try:
        from seedtree.server import ServerConfig
        from seedtree.server.run import serve
    except ImportError as exc:
        raise SeedtreeError(
            f"seedtree serve needs the server extra ({exc.name} is missing): "
            'pip install -e ".[server]"'
        ) from None
    if not 0 <= args.port <= 65535:
        raise SeedtreeError(f"--port must be in [0, 65535], got {args.port}")
    spec = SpecConfig(gamma=args.gamma, k_config=parse_k_config(args.k_config), lookup=args.lookup)

    def config(model: str) -> ServerConfig:
        return ServerConfig(
            model=args.served_model_name or model,
            method=args.method,
            spec=spec,
            api_key=args.api_key,
            max_queued=args.max_queued,
            max_model_len=args.max_model_len,
            drain_s=args.drain,
        )

    ray_config = _ray_config(args)
    if ray_config is not None:  # each replica loads its pair (and checks --max-model-len)
        from seedtree.distributed.ray_serve import serve_on_ray

        models = _model_settings(args)
        serve_on_ray(models, config(models.label()), ray_config, args.host, args.port)
        return 0
    llm = _llm(args)
    if args.max_model_len is not None and args.max_model_len > llm.models.max_context:
        raise SeedtreeError(
            f"--max-model-len {args.max_model_len} exceeds the model's "
            f"{llm.models.max_context}-token context: give at most that"
        )
    serve(llm, config(llm.models.name), args.host, args.port)
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "bench": cmd_bench,
    "bench-serve": cmd_bench_serve,
    "solve": cmd_solve,
    "run": cmd_run,
    "generate": cmd_generate,
    "models": cmd_models,
    "demo": cmd_demo,
    "bench-decode": cmd_bench_decode,
    "bench-many": cmd_bench_many,
    "bench-arrivals": cmd_bench_arrivals,
}


# Where each command writes ("file" or "dir" options, and files it writes in a "dir"); every
# path is checked writable before any model loads, so no finished work is lost at the end.
OUTPUTS = {
    "generate": {"trace": "file", "gantt": "file"},
    "solve": {"out": "dir"},
    "run": {"out": "dir"},
    "demo": {"out": "dir"},
    "bench": {"out": "dir"},
    "bench-serve": {"out": "dir"},
    "bench-many": {"out": "dir"},
    "bench-decode": {"out": "file"},
}
FILES_IN_OUT = {
    "solve": ("tree.json", "report.html"),
    "demo": ("tree.json", "report.html"),
    "run": ("results.jsonl", "run.json", "summary.json"),
}


def check_outputs(args) -> None:
    for name, kind in OUTPUTS.get(args.command, {}).items():
        path, option = getattr(args, name), f"--{name}"
        if path is None:
            continue
        if kind == "file":
            check_output_file(path, option)
            continue
        check_output_dir(path, option)
        for file in FILES_IN_OUT.get(args.command, ()):
            check_output_file(path / file, option)


def main(argv: list[str] | None = None) -> int:
    try:
        with exit_on_interrupt():
            args = build_parser().parse_args(argv)
            check_outputs(args)
        return COMMANDS[args.command](args)
    except SeedtreeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a write that failed after all (disk full, a path changed meanwhile)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}: check the path, free space", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
