"""Commands on one pair and a few prompts: `generate` (any method, one or many requests),
`models` (list and prepare the embedded pairs) and `demo` (one GSM8K tree with ar and a fast
method, side by side)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from seedtree.cli.common import load_llm, print_agreement, sampling_configs
from seedtree.errors import SeedtreeError
from seedtree.files import read_lines
from seedtree.validate import check_text

# `generate` holds every prompt and result in memory and prints them at the end: a bigger file
# is refused while it is read (before the models load); `seedtree run` streams large datasets
MAX_PROMPTS = 10_000


def read_prompts(path: Path) -> list[str]:
    """Prompts from a UTF-8 text file (one per line) or a .jsonl file ({"prompt": ...} per
    line). A line that is not UTF-8, or a JSONL line without a string 'prompt', is an error;
    so are more than `MAX_PROMPTS` prompts."""
    prompts = []
    for number, line in read_lines(path, "prompts file"):
        if line is None:
            raise SeedtreeError(f"{path}:{number} is not UTF-8 text: save the file as UTF-8")
        if not line.strip():
            continue
        if len(prompts) == MAX_PROMPTS:
            raise SeedtreeError(
                f"prompts file {path} has more than {MAX_PROMPTS} prompts (line {number}): "
                "generate keeps every result in memory until the end; split the file"
            )
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


def cmd_generate(args) -> int:
    from seedtree.scheduling import save_gantt

    if args.prompt is not None:
        check_text("--prompt", args.prompt)  # bytes that are not UTF-8 arrive as surrogates
    prompts = read_prompts(args.prompts_file) if args.prompts_file else [args.prompt]
    if any(not p.strip() for p in prompts):
        raise SeedtreeError("prompt is empty: pass some text with --prompt")
    if args.n < 1:
        raise SeedtreeError(f"--n must be >= 1 (samples per prompt), got {args.n}")
    params, spec = sampling_configs(args)  # validate before loading models
    params = replace(params, n=args.n)
    many = len(prompts) > 1 or args.n > 1 or args.trace or args.gantt
    many = many or args.method not in ("ar", "sd", "mcsd")
    llm = load_llm(args, progress=not args.json)
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
    llm = load_llm(args)
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
    verdict = print_agreement(llm.models, args.method, ar, fast, SpecConfig())
    print(f"ar: {ar.wall_s:.1f} s   {args.method}: {fast.wall_s:.1f} s")
    print(
        f"speedup {args.method} / ar: {ar.wall_s / fast.wall_s:.2f}x "
        "(one run; see BENCHMARKS.md for medians)"
    )
    fast.save(args.out / "tree.json")
    write_report(fast, args.out / "report.html")
    print(f"wrote {args.out / 'tree.json'} and {args.out / 'report.html'}")
    return 1 if verdict == "DEFECT" else 0
