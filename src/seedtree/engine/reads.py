"""Reads of the target's next-token distribution (logprob values): a tree's shared start kept, the
rest batched.

A read is (ids, n): the target's float64 log-softmax after each of the last n positions of ids
([n, V]). A tree's value prompts share a long start (chat header, problem, the steps its states
have in common); `ReadCache` keeps the target KV of one such start, one per tree:

    shared = the longest common start of a call's sequences, ending before any read position
    cache:   cropped to what it has in common with `shared`, then fed the rest of `shared`
    rows:    each sequence's remaining tokens, one `RaggedBatch` forward over the cached start

The numbers depend only on the tree's own reads (its calls, in order): never on the decoding
method, the engine's prefix cache or other trees in flight, so logprob values stay identical
across methods and concurrency. Engine thread only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from seedtree.decoding.batch import RaggedBatch, chain, common_length
from seedtree.decoding.kv import KVSequence
from seedtree.models.loader import ModelPair

Read = tuple[list[int], int]  # (ids, n): the distributions after the last n positions of ids
MAX_ROWS = 16  # sequences per batched forward (a bound on the batch's memory)


class Reads(NamedTuple):
    logprobs: list[torch.Tensor]  # per sequence: float64 [n, V]
    forwards: int  # target forwards run (the start's extension, the batched rests)
    fed: int  # tokens fed to the target (the rest came from the tree's cached start)


class ReadCache:
    """One tree's cached start for `read`: the target KV of `ids` (engine thread only)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.kv: KVSequence | None = None

    def hold(self, pair: ModelPair, shared: list[int]) -> tuple[KVSequence, int]:
        """The cache of exactly `shared` (keep what it has in common, feed the rest), and the
        number of tokens fed."""
        if self.kv is None or self.kv.model is not pair.target:
            self.kv, self.ids = KVSequence(pair.target, pair.vocab_size), []
        keep = common_length([self.ids, shared])
        if keep == 0:
            self.kv.reset()
        else:
            self.kv.crop(keep)
        if len(shared) > keep:
            self.kv.forward(shared[keep:])
        self.ids = list(shared)
        return self.kv, len(shared) - keep


@torch.inference_mode()
def read(pair: ModelPair, sequences: list[Read], cache: ReadCache | None = None) -> Reads:
    """For each (ids, n): float64 log-softmax [n, V] after the last n positions of ids. A read
    that fails drops the cache (a forward may have filled some layers): the next one starts
    afresh."""
    cache = cache if cache is not None else ReadCache()
    try:
        return _read(pair, sequences, cache)
    except Exception:
        cache.kv, cache.ids = None, []
        raise


def _read(pair: ModelPair, sequences: list[Read], cache: ReadCache) -> Reads:
    limit = min(len(ids) - n for ids, n in sequences)  # every row keeps >= n tokens to feed
    shared = sequences[0][0][: min(limit, common_length([s for s, _ in sequences]))]
    kv, fed = cache.hold(pair, shared)
    start, forwards = kv.length, int(fed > 0)
    out = []
    for first in range(0, len(sequences), MAX_ROWS):
        chunk = sequences[first : first + MAX_ROWS]
        feeds = {r: (ids[start:], chain(len(ids) - start)) for r, (ids, _) in enumerate(chunk)}
        logits = RaggedBatch([kv] * len(chunk)).forward(
            feeds, keep={r: n for r, (_, n) in enumerate(chunk)}, dtype=torch.float64
        )  # row -> [n, V]
        kv.crop(start)  # a one-row batch feeds the cache itself: back to the shared start
        out += [torch.log_softmax(logits[r], dim=-1).cpu() for r in range(len(chunk))]
        forwards += 1
        fed += sum(len(ids) - start for ids, _ in chunk)
    return Reads(out, forwards, fed)
