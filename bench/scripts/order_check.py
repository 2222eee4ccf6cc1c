"""Does a method run right after another one run slower? `ar` on Blocksworld instance 0 (k=3, b=1,
bfloat16 target, int8 draft) timed between hf-assisted, seed-batched and seed trees.

    .venv/bin/python -u bench/scripts/order_check.py
"""

from seedtree.decoding import SpecConfig
from seedtree.llm import LLM
from seedtree.search import EngineConfig, SearchConfig, solve
from seedtree.tasks import get_task

pair = LLM("qwen2.5-coder", dtype="bfloat16", draft_dtype="int8", progress=False).models
task = get_task("blocksworld")
ex = task.get(0)
spec = SpecConfig(gamma=4, k_config=(2, 1, 1))
s = SearchConfig(k=3, b=1)
solve(
    pair,
    task,
    ex,
    SearchConfig(k=2, b=1, depth=1),
    EngineConfig(method="ar", max_new_tokens=4),
    spec,
)
for m in ["ar", "ar", "hf-assisted", "ar", "seed-batched", "ar", "seed", "ar", "hf-assisted", "ar"]:
    t = solve(pair, task, ex, s, EngineConfig(method=m), spec)
    print(m, round(t.wall_s, 2), flush=True)
