"""A prefix cache shared across requests and calls (the shape of SGLang's radix cache).

KV of token prefixes is kept in a radix tree keyed by token ids, one tree per model (target p,
draft q). A new request takes a copy of the KV of its longest cached prefix and prefills only the
rest; after its prefill, its prompt's KV is inserted. Within a reasoning tree this shares the
task's instructions and the problem text between the prompts of a level, between levels and
between the value prompts of a state; across problems, few-shot examples.

Memory is bounded: past `capacity_mb` (keys + values of both trees), the least recently used
leaves are evicted. Requests copy what they load, so no node is ever in use: any leaf may go.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from seedtree.decoding.kv import KVSequence
from seedtree.validate import check_size_mb

_clock = itertools.count()


@dataclass(eq=False)
class _Node:
    tokens: tuple[int, ...]  # the edge: tokens from the parent to this node
    keys: list[torch.Tensor]  # per layer [H, n, D]
    values: list[torch.Tensor]  # per layer [H, n, D]
    parent: _Node | None = None
    children: dict[int, _Node] = field(default_factory=dict)  # first token -> child
    used: int = 0  # LRU clock

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def split(self, n: int) -> None:
        """Cut the edge after n tokens: this node keeps the first n, a new child the rest."""
        tail = _Node(
            self.tokens[n:],
            [k[:, n:].clone() for k in self.keys],
            [v[:, n:].clone() for v in self.values],
            self,
            self.children,
            self.used,
        )
        for child in tail.children.values():
            child.parent = tail
        self.tokens = self.tokens[:n]
        self.keys = [k[:, :n].clone() for k in self.keys]
        self.values = [v[:, :n].clone() for v in self.values]
        self.children = {tail.tokens[0]: tail}


class _Radix:
    """One model's radix tree of KV."""

    def __init__(self) -> None:
        self.root = _Node((), [], [])

    def _walk(self, ids: list[int]) -> tuple[list[tuple[_Node, int]], int]:
        """The nodes along ids with the tokens used of each, and the matched length."""
        node, i, path = self.root, 0, []
        while i < len(ids) and ids[i] in node.children:
            child = node.children[ids[i]]
            n = 0
            while n < len(child.tokens) and i + n < len(ids) and child.tokens[n] == ids[i + n]:
                n += 1
            path.append((child, n))
            i += n
            if n < len(child.tokens):
                break
            node = child
        return path, i

    def match(self, ids: list[int], seq: KVSequence) -> int:
        """Load the KV of the longest cached prefix of ids into the empty `seq`; its length."""
        path, matched = self._walk(ids)
        if not matched:
            return 0
        now = next(_clock)
        seq.cache = DynamicCache(config=seq.model.config)
        for layer in range(len(path[0][0].keys)):  # KV copy: the cached prefix into the request
            keys = torch.cat([node.keys[layer][:, :n] for node, n in path], dim=1)
            values = torch.cat([node.values[layer][:, :n] for node, n in path], dim=1)
            seq.cache.update(keys[None], values[None], layer)
        for node, _ in path:
            node.used = now
        seq.length = matched
        return matched

    def insert(self, ids: list[int], seq: KVSequence) -> int:
        """Cache the KV of ids, which `seq` holds at positions [0, len(ids)); bytes added."""
        path, matched = self._walk(ids)
        node = self.root
        if path:
            node, n = path[-1]
            if n < len(node.tokens):
                node.split(n)
        if matched == len(ids):
            return 0
        layers = seq.cache.layers
        leaf = _Node(
            tuple(ids[matched:]),
            [layer.keys[0, :, matched : len(ids)].clone() for layer in layers],
            [layer.values[0, :, matched : len(ids)].clone() for layer in layers],
            node,
            used=next(_clock),
        )
        node.children[leaf.tokens[0]] = leaf
        return leaf.nbytes

    def leaves(self) -> list[_Node]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            if not node.children and node is not self.root:
                out.append(node)
        return out


@dataclass
class CacheStats:
    queried_tokens: int = 0  # prompt tokens looked up (target)
    hit_tokens: int = 0  # of those, served from the cache
    evicted_bytes: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else 0.0


class PrefixCache:
    def __init__(self, capacity_mb: float = 1024.0) -> None:
        check_size_mb("capacity_mb", capacity_mb)
        self.capacity = int(capacity_mb * 2**20)
        self.trees = {"p": _Radix(), "q": _Radix()}
        self.nbytes = 0
        self.stats = CacheStats()

    def clear(self) -> None:
        """Drop every entry (a benchmark's runs start cold)."""
        self.trees = {"p": _Radix(), "q": _Radix()}
        self.nbytes = 0

    def match(self, ids: list[int], p: KVSequence, q: KVSequence | None) -> int:
        """Load the longest cached prefix of ids into fresh caches p (and q); p's hit length."""
        hit = self.trees["p"].match(ids, p)
        if q is not None:
            self.trees["q"].match(ids, q)
        self.stats.queried_tokens += len(ids)
        self.stats.hit_tokens += hit
        return hit

    def insert(self, ids: list[int], p: KVSequence | None, q: KVSequence | None) -> None:
        """Keep the KV of ids (held by p and q, each where given, at positions [0, len(ids)))."""
        if not ids:
            return
        for seq in (p, q):
            assert seq is None or seq.length >= len(ids), "insert only KV the sequence holds"
        if p is not None:
            self.nbytes += self.trees["p"].insert(ids, p)
        if q is not None:
            self.nbytes += self.trees["q"].insert(ids, q)
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used leaves until the cache fits its capacity."""
        while self.nbytes > self.capacity:
            leaves = [leaf for tree in self.trees.values() for leaf in tree.leaves()]
            if not leaves:
                return
            leaf = min(leaves, key=lambda n: n.used)
            del leaf.parent.children[leaf.tokens[0]]
            self.nbytes -= leaf.nbytes
            self.stats.evicted_bytes += leaf.nbytes
