"""The reasoning-tree commands: `solve` (one problem's tree, optionally compared with ar's)
and `run` (a dataset slice into a resumable run folder, here or on Ray replicas)."""

from __future__ import annotations

from dataclasses import replace

from seedtree.cli.common import (
    DEFAULT_CONCURRENCY,
    endpoint_of,
    load_llm,
    model_settings,
    print_agreement,
    ray_config_of,
    task_examples,
    tree_configs,
)
from seedtree.errors import SeedtreeError
from seedtree.validate import check_int


def cmd_solve(args) -> int:
    # `solve` is looked up in seedtree.search at each call (tests plant a defect there)
    from seedtree.report import write_report
    from seedtree.report.text import format_tree
    from seedtree.search import progress_printer, solve
    from seedtree.tasks import get_task

    task = get_task(args.task)
    search, engine, spec = tree_configs(args)
    if args.compare is not None:
        if args.backend != "local":
            raise SeedtreeError(
                "--compare builds trees with local models: drop it with --backend openai"
            )
        engine = _compared_engine(args.compare, engine)
    example = task.get(args.index, args.data)
    endpoint = endpoint_of(args)
    pair = None if endpoint is not None else load_llm(args).models
    label = "openai" if endpoint is not None else engine.method
    progress = progress_printer(label)
    tree = solve(pair, task, example, search, engine, spec, progress=progress, endpoint=endpoint)
    print(format_tree(tree))
    verdict = None
    if args.compare is not None:
        ar_engine = replace(engine, method="ar")
        ar = solve(pair, task, example, search, ar_engine, spec, progress=progress_printer("ar"))
        verdict = print_agreement(pair, engine.method, ar, tree, spec)
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


def cmd_run(args) -> int:
    from seedtree.search.results import open_run, run_settings
    from seedtree.search.run import MAX_CONCURRENCY, run_in_folder
    from seedtree.tasks import get_task

    task = get_task(args.task)
    search, engine, spec = tree_configs(args)
    if args.limit < 1 or args.start < 0:
        raise SeedtreeError("--limit must be >= 1 and --start >= 0")
    ray_config = ray_config_of(args)
    if ray_config is not None and args.backend != "local":
        raise SeedtreeError(
            "--ray runs local models on Ray replicas, --backend openai a server's: drop one"
        )
    concurrency = DEFAULT_CONCURRENCY if args.concurrency is None else args.concurrency
    check_int("--concurrency", concurrency, 1, MAX_CONCURRENCY)
    if ray_config is not None:  # P trees at a time on each replica's engine
        ray_config = replace(ray_config, trees=concurrency)
    examples = task_examples(task, args)[args.start : args.start + args.limit]
    data = str(args.data.resolve()) if args.data else None
    endpoint = endpoint_of(args)
    if endpoint is None:
        label, dtype = model_settings(args).label(), args.dtype
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

            models = model_settings(args)
            ray_run = run_on_ray(
                models, task, examples, folder, search, engine, spec, ray_config, on_tree=on_tree
            )
            summary = ray_run.summary
        else:
            llm = None if endpoint is not None else load_llm(args).engine(engine.method, spec)
            summary = run_in_folder(
                llm, task, examples, folder, search, engine, spec,
                on_tree=on_tree, endpoint=endpoint, concurrency=concurrency,
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
