"""The benchmark commands: `bench-decode` (one request), `bench-many` (N requests at once),
`bench-arrivals` (requests arriving over time), `bench` (every method builds the same trees),
`bench-serve` (the same trees in-process and through `seedtree serve`) and `bench-search` (every
search algorithm and budget: accuracy against time). Each checks its
options before the models load, then hands a config to `seedtree.bench`."""

from __future__ import annotations

import sys

from seedtree.cli.common import (
    METHODS,
    endpoint_of,
    load_llm,
    parse_k_config,
    task_examples,
    tree_configs,
)
from seedtree.errors import SeedtreeError


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
    report = run_decode_bench(load_llm(args), cfg)
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
    report = run_many_bench(load_llm(args), cfg, out=args.out)
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
    report = run_arrivals_bench(load_llm(args), cfg)
    (args.out / f"arrivals_{args.dtype}.json").write_text(json.dumps(report, indent=1))
    print(markdown_table(report))
    return 0


def cmd_bench_run(args) -> int:
    from seedtree.bench.run import RunBenchConfig, markdown_table, run_run_bench
    from seedtree.bench.tasks import parse_variant
    from seedtree.tasks import get_task

    task = get_task(args.task)
    search, engine, spec = tree_configs(args)
    methods = tuple(args.methods.split())
    for name in methods:  # before the models load
        parse_variant(name, spec)
    try:
        ps = tuple(int(p) for p in args.concurrency.split())
    except ValueError:
        raise SeedtreeError(
            f"--concurrency must be whole numbers, e.g. '1 2 4 8', got {args.concurrency!r}"
        ) from None
    if args.limit < 1 or args.start < 0:
        raise SeedtreeError("--limit must be >= 1 and --start >= 0")
    task_examples(task, args)
    cfg = RunBenchConfig(
        task=args.task, start=args.start, limit=args.limit, concurrency=ps, methods=methods,
        repeat=args.repeat, search=search, sampling=engine, spec=spec, dtype=args.dtype,
        draft_dtype=args.draft_dtype, data=str(args.data) if args.data else None,
    )  # fmt: skip
    report = run_run_bench(load_llm(args), cfg, out=args.out)
    print(markdown_table(report))
    print(f"wrote {args.out / f'bench_run_{args.task}.json'} (+ .md, .png)")
    return 0


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
    endpoint_of(args)  # --base-url and friends without --backend openai: an error
    task = get_task(args.task)
    search, engine, spec = tree_configs(args)
    methods = SEARCH_METHODS if args.methods is None else tuple(args.methods.split())
    if not methods:
        raise SeedtreeError(f"--methods is empty: choose from {', '.join(SEARCH_METHODS)}")
    for name in methods:  # before the models load
        parse_variant(name, spec)
    if args.limit < 1 or args.repeat < 1 or args.start < 0:
        raise SeedtreeError("--limit and --repeat must be >= 1 and --start >= 0")
    task_examples(task, args)
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
        tree_mass=spec.tree_mass,
        adaptive=spec.adaptive,
        lookup=spec.lookup,
        dedup=spec.dedup,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        sampling=engine,
        data=str(args.data) if args.data else None,
    )
    report = run_task_bench(load_llm(args).models, cfg, out=args.out)
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
    search, engine, spec = tree_configs(args)
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
    task_examples(task, args)
    # the pair loads on a short-lived thread: one OpenMP team at a time (see bench.serve)
    report = run_serve_bench(load_llm(args), cfg, out=args.out)
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


def cmd_bench_search(args) -> int:
    from seedtree.bench.search import SearchBenchConfig, markdown_table, run_search_bench
    from seedtree.tasks import get_task

    task = get_task(args.task)
    search, engine, spec = tree_configs(args)
    cfg = SearchBenchConfig(
        task=args.task,
        limit=args.limit,
        start=args.start,
        budgets=tuple(args.budgets.split()),
        search=search,
        engine=engine,
        spec=spec,
        dtype=args.dtype,
        draft_dtype=args.draft_dtype,
        data=str(args.data) if args.data else None,
        concurrency=args.concurrency,
    )  # every budget checked before the models load
    task_examples(task, args)
    report = run_search_bench(load_llm(args), cfg, out=args.out)
    print(markdown_table(report))
    print(f"wrote {args.out / f'bench_search_{args.task}.json'} (+ .md, .png)")
    return 0
