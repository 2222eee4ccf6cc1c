"""The cost model of this machine, measured when an engine starts (`CostModel`).

A few timed forwards of each model over synthetic rows (the same `RaggedBatch` every round
uses): the target over 2 and 6 rows, 1 and 8 new tokens each, after a `CONTEXT`-token prefix;
the draft over 2 and 6 rows, one token each. Three points give the target's fixed cost a (the
weights read), its cost per row-token b and per row of context e; two give the draft step's
d0 + d1 * rows. Each point is the fastest of `REPS` after one warm-up. Nothing here is assumed
about the hardware: a bf16 target on a memory-bound CPU shows a large a and a small b, a GPU
smaller a still, and the batch policy (`adaptive.plan_depths`) follows what was measured.
"""

from __future__ import annotations

import time

import torch

from seedtree.decoding.adaptive import CostModel
from seedtree.decoding.batch import RaggedBatch
from seedtree.decoding.kv import KVSequence
from seedtree.models.loader import ModelPair

CONTEXT = 128  # cached tokens per synthetic row (at most half the model's context)
REPS = 2


def _rows(model, vocab_size: int, n: int, context: int) -> list[KVSequence]:
    """n rows holding the same `context`-token prefix (one prefill, then KV copies)."""
    first = KVSequence(model, vocab_size)
    first.forward([i % vocab_size for i in range(context)])
    rows = [first]
    for _ in range(n - 1):
        rows.append(KVSequence(model, vocab_size))
        rows[-1].copy_from(first)
    return rows


def _seconds(rows: list[KVSequence], width: int) -> float:
    """The fastest of REPS batched forwards feeding every row a chain of `width` tokens (the
    rows' caches are left as they were: nothing is committed)."""
    feeds = {r: ([1] * width, list(range(-1, width - 1))) for r in range(len(rows))}
    best = float("inf")
    for _ in range(REPS + 1):  # the first is a warm-up
        start = time.perf_counter()
        RaggedBatch(rows).forward(feeds, keep="all")
        if rows[0].device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


_MEASURED: dict[int, tuple[ModelPair, CostModel]] = {}  # id(pair) -> (pair, its costs)


def measure(pair: ModelPair) -> CostModel:
    """This machine's `CostModel` for `pair`, measured once per pair in a process (a second or
    a few on a CPU; later engines of the same pair reuse it)."""
    known = _MEASURED.get(id(pair))
    if known is not None and known[0] is pair:
        return known[1]
    costs = _measure(pair)
    _MEASURED[id(pair)] = (pair, costs)
    return costs


def _measure(pair: ModelPair) -> CostModel:
    context = min(CONTEXT, pair.max_context // 2)
    rows = _rows(pair.target, pair.vocab_size, 6, context)
    t21, t28, t61 = _seconds(rows[:2], 1), _seconds(rows[:2], 8), _seconds(rows, 1)
    b = max(0.0, (t28 - t21) / 14)  # 14 row-tokens more
    e = max(0.0, ((t61 - t21) / 4 - b) / context)  # 4 rows more
    a = max(1e-6, t21 - 2 * b - 2 * e * context)
    del rows
    drafts = _rows(pair.draft, pair.vocab_size, 6, context)
    d2, d6 = _seconds(drafts[:2], 1), _seconds(drafts, 1)
    d1 = max(0.0, (d6 - d2) / 4)
    return CostModel(a=a, b=b, e=e, d0=max(0.0, d2 - 2 * d1), d1=d1)
