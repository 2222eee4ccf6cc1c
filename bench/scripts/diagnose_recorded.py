"""Judge a divergence recorded before `seedtree bench` diagnosed them itself: `ar`'s saved trees
plus the token another method wrote at (call, request, position), through the same
`seedtree.bench.agreement` the bench uses (what that method wrote after it was not recorded,
and the diagnosis does not need it).

    PYTHONPATH=src .venv/bin/python bench/scripts/diagnose_recorded.py \
        bench/tasks_bound/trees_creative_writing_ar.json 0 3 0 0 24728 mcsd mcsd-seed

is BENCHMARKS.md section 4's Creative Writing problem 0: `mcsd` and `mcsd-seed` wrote 'Choice'
(24728) where `ar` wrote 'The' at the first token of the level-2 vote (call 3, request 0; recorded
in bench/scripts/inspect_calls_creative_writing.txt).
"""

import argparse
import json
from pathlib import Path

from seedtree.bench.agreement import agreement
from seedtree.decoding.check import scoring_of
from seedtree.llm import LLM
from seedtree.search import Tree

parser = argparse.ArgumentParser()
parser.add_argument("trees", type=Path, help="trees_<task>_ar.json saved by seedtree bench")
for name in ("problem", "call", "request", "position", "token"):
    parser.add_argument(name, type=int)
parser.add_argument("methods", nargs="+")
parser.add_argument("--dtype", default="bfloat16")
args = parser.parse_args()

ar = Tree.from_dict(json.loads(args.trees.read_text())[args.problem])
other = Tree.from_dict(ar.to_dict())
output = other.calls[args.call].output_ids[args.request]
output[args.position] = args.token
del output[args.position + 1 :]
other.answer += " (recorded divergence)"
pair = LLM("qwen2.5-coder", dtype=args.dtype, draft_dtype="int8", progress=False).models
for method in args.methods:
    found = agreement(pair, method, [([ar], [other])], scoring_of(method))
    print(f"{method}: {found.label()}")
    for d in found.divergences:
        print(f"  {d.describe(pair.tokenizer, method)}")
