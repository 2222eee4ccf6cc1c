"""Diagnose saved trees that are not `ar`'s, made before `seedtree bench` diagnosed them itself,
through the same `seedtree.bench.agreement` the bench uses (`yes`, `tie` or `DEFECT`).

Two saved trees (a `tree.json`, a `run --trees` file, or a bench `trees_<task>_<method>.json`
list, whose `--problem`-th tree is taken):

    PYTHONPATH=src .venv/bin/python bench/scripts/diagnose_saved.py \
        --ar bench/run_gsm8k_bf16_ar/trees/gsm8k-2.json \
        --other bench/run_gsm8k_bf16_seed-batched/trees/gsm8k-2.json --methods seed-batched

Or `ar`'s saved tree and a recorded divergence, the token another method wrote at (call, request,
position) when its tree was not saved (what it wrote after that token is not needed):

    PYTHONPATH=src .venv/bin/python bench/scripts/diagnose_saved.py \
        --ar bench/tasks_bound/trees_creative_writing_ar.json --recorded 3 0 0 24728 \
        --methods mcsd mcsd-seed
"""

import argparse
import json
from pathlib import Path

from seedtree.bench.agreement import agreement
from seedtree.engine.methods import scoring_of
from seedtree.llm import LLM
from seedtree.search import Tree


def load(path: Path, problem: int) -> Tree:
    data = json.loads(path.read_text())
    return Tree.from_dict(data[problem] if isinstance(data, list) else data)


def recorded(ar: Tree, call: int, request: int, position: int, token: int) -> Tree:
    other = Tree.from_dict(ar.to_dict())
    output = other.calls[call].output_ids[request]
    output[position] = token
    del output[position + 1 :]
    other.answer += " (recorded divergence)"
    return other


parser = argparse.ArgumentParser()
parser.add_argument("--ar", type=Path, required=True)
parser.add_argument("--problem", type=int, default=0, help="index into a list of trees")
source = parser.add_mutually_exclusive_group(required=True)
source.add_argument("--other", type=Path)
source.add_argument("--recorded", type=int, nargs=4, metavar=("CALL", "REQUEST", "POS", "TOKEN"))
parser.add_argument("--methods", nargs="+", required=True, help="whose scoring shape to replay")
parser.add_argument("--dtype", default="bfloat16")
args = parser.parse_args()

ar = load(args.ar, args.problem)
other = load(args.other, args.problem) if args.other else recorded(ar, *args.recorded)
pair = LLM("qwen2.5-coder", dtype=args.dtype, draft_dtype="int8", progress=False).models
for method in args.methods:
    found = agreement(pair, method, [([ar], [other])], scoring_of(method))
    print(f"{method}: {found.label()}")
    for d in found.divergences:
        print(f"  {d.describe(pair.tokenizer, method)}")
