"""Per-call view of one Creative Writing tree (problem 0, the settings of BENCHMARKS.md section 4).

    .venv/bin/python -u bench/scripts/inspect_calls.py ar,mcsd,seed-batched,sd OUT_DIR

Prints, per method, every engine call's requests, tokens, wall time, target forwards and
drafted/accepted tokens; saves each tree to OUT_DIR; for every method whose tree differs from
ar's, prints the first differing output token and the target's top-2 logits at ar's prefix there.
"""

import sys
from pathlib import Path

import torch

from seedtree.decoding import SpecConfig
from seedtree.llm import LLM
from seedtree.search import EngineConfig, SearchConfig, solve
from seedtree.tasks import get_task

llm = LLM("qwen2.5-coder", dtype="bfloat16", draft_dtype="int8", progress=False)
pair = llm.models
task = get_task("creative_writing")
ex = task.get(0)
search = SearchConfig(k=3, b=1)
spec = SpecConfig(gamma=4, k_config=(2, 1, 1))
solve(
    pair,
    task,
    ex,
    SearchConfig(k=2, b=1, depth=1),
    EngineConfig(method="ar", max_new_tokens=4),
    spec,
)
trees = {}
for m in sys.argv[1].split(","):
    trees[m] = solve(pair, task, ex, search, EngineConfig(method=m, max_new_tokens=64), spec)
    t = trees[m]
    print(m, f"wall {t.wall_s:.1f}")
    for c in t.calls:
        print(
            f"  {c.phase:8s} L{c.level} req={c.requests} tok={c.new_tokens} wall={c.wall_s:.1f} "
            f"fwd={c.target_forwards} drafted={c.drafted} acc={c.accepted} "
            f"prompt_len={[len(p) for p in c.prompt_ids]}"
        )
    trees[m].save(Path(sys.argv[2]) / f"tree_cw_{m}.json")
ar = trees["ar"]
tok = pair.tokenizer


def first_difference(a, b) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def report(m, ci, ri, ca, oa, om) -> None:
    pos = first_difference(oa, om)
    with torch.no_grad():  # the target's logits at ar's prefix, one full forward
        logits = pair.target(torch.tensor([ca.prompt_ids[ri] + oa[:pos]])).logits[0, -1].float()
    top = torch.topk(logits, 2)
    gap = float(top.values[0] - top.values[1])
    a, b = oa[pos : pos + 1], om[pos : pos + 1]
    print(
        f"{m}: first difference in call {ci} ({ca.phase} L{ca.level}) request {ri} at output "
        f"token {pos}: ar {a} {tok.decode(a)!r} vs {m} {b} {tok.decode(b)!r}; target top-2 "
        f"{top.indices.tolist()} logits {top.values.tolist()} gap {gap:.4f}"
    )


for m, t in trees.items():
    if m == "ar" or t.signature() == ar.signature():
        continue
    pairs = (
        (ci, ri, ca, oa, om)
        for ci, (ca, cm) in enumerate(zip(ar.calls, t.calls, strict=False))
        for ri, (oa, om) in enumerate(zip(ca.output_ids, cm.output_ids, strict=False))
    )
    diff = next((p for p in pairs if p[3] != p[4]), None)
    if diff:
        report(m, *diff)
