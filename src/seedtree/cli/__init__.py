"""Command line: argparse -> frozen dataclasses -> library calls. Nothing imports this package.

  parser   the argument parser: one function per command, shared option groups
  common   Ctrl-C at start-up, method names, loading the models, configs from the options,
           the `--backend openai` endpoint, the `--ray` config, the "same tree as ar" verdict
  decode   generate, models, demo
  bench    bench-decode, bench-many, bench-arrivals, bench, bench-serve, bench-search
  search   solve, run
  serve    serve

Here: `main` (the `seedtree` entry point), the command table and the output-path checks that
run before any model loads. Heavy or optional imports (the models, FastAPI and uvicorn, Ray,
Playwright, openai) happen inside the commands, when they run."""

from __future__ import annotations

import sys

from seedtree.cli.bench import (
    cmd_bench,
    cmd_bench_arrivals,
    cmd_bench_decode,
    cmd_bench_many,
    cmd_bench_run,
    cmd_bench_search,
    cmd_bench_serve,
)
from seedtree.cli.common import STEP_METHODS, exit_on_interrupt, parse_k_config
from seedtree.cli.decode import cmd_demo, cmd_generate, cmd_models, read_prompts
from seedtree.cli.parser import build_parser
from seedtree.cli.search import cmd_run, cmd_solve
from seedtree.cli.serve import cmd_serve
from seedtree.errors import SeedtreeError
from seedtree.files import check_output_dir, check_output_file

COMMANDS = {
    "serve": cmd_serve,
    "bench": cmd_bench,
    "bench-serve": cmd_bench_serve,
    "bench-run": cmd_bench_run,
    "bench-search": cmd_bench_search,
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
    "bench-run": {"out": "dir"},
    "bench-search": {"out": "dir"},
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


__all__ = [
    "COMMANDS",
    "FILES_IN_OUT",
    "OUTPUTS",
    "STEP_METHODS",
    "build_parser",
    "check_outputs",
    "cmd_bench",
    "cmd_bench_arrivals",
    "cmd_bench_decode",
    "cmd_bench_many",
    "cmd_bench_search",
    "cmd_bench_serve",
    "cmd_demo",
    "cmd_generate",
    "cmd_models",
    "cmd_run",
    "cmd_serve",
    "cmd_solve",
    "exit_on_interrupt",
    "main",
    "parse_k_config",
    "read_prompts",
]
