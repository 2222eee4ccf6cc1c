"""One branch of a many-request run: a request's speculative state, split into steps a scheduler
can interleave across branches and threads.

A *branch* is one request being decoded. Each round it *drafts* (q grows a token tree: a chain of
gamma tokens for SD, the k_config tree for MCSD) and is then *verified* (p scores the tree and
the walk accepts a path), either alone (`verify`) or batched with other branches
(`seedtree.decoding.batched.verify_batch`). The draft cache is touched only by `draft`, the target
cache only by verification, so a branch's drafting may overlap another branch's verification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from seedtree.decoding.kv import KVSequence
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import Verdict, make_generator, probs_from_logits
from seedtree.decoding.sequence import Sequence
from seedtree.decoding.tree import TokenTree, choose_children, walk_greedy, walk_sampling
from seedtree.models.loader import ModelPair


@dataclass(frozen=True)
class Request:
    """One prompt to decode; `params.seed` makes its samples reproducible."""

    prompt_ids: list[int]
    params: SamplingParams


def _expand(
    tree: TokenTree,
    node: int,
    logits: torch.Tensor,
    k: int,
    params: SamplingParams,
    spec: SpecConfig,
    gen: torch.Generator,
) -> None:
    """Add k children below `node`, drawn from q (logits [V]) at that node."""
    probs = None if params.greedy else probs_from_logits(logits, params)
    if probs is not None:
        tree.q[node] = probs
    for token in choose_children(logits, k, params.greedy, probs, spec.replacement, gen):
        tree.add_child(node, token)


def draft_tree(
    q: KVSequence,
    seq: Sequence,
    k_config: tuple[int, ...],
    params: SamplingParams,
    spec: SpecConfig,
    gen: torch.Generator,
) -> tuple[TokenTree, int]:
    """len(k_config) draft forwards. Returns the tree and the draft cache length before it."""
    tree = TokenTree.root(seq.tokens[-1])
    # level 0: the committed tokens the draft has not seen (1 or 2), causally
    logits = q.forward(seq.tokens[q.length :])[-1]
    _expand(tree, 0, logits, k_config[0], params, spec, gen)
    # tree positions in the draft's cache: the root is the last committed token (cached now)
    base = q.length
    root_pos = len(seq.tokens) - 1
    for depth in range(1, len(k_config)):
        nodes = tree.level(depth)
        # each node sees the prefix (which ends with the root) and its fed ancestors + itself
        mask = tree.ancestors_mask(nodes)[:, 1 : nodes[-1] + 1]  # [n, nodes fed so far]
        logits = q.forward_tree(
            [tree.tokens[i] for i in nodes], [root_pos + depth] * len(nodes), mask
        )  # [n, V]
        for row, node in enumerate(nodes):
            _expand(tree, node, logits[row], k_config[depth], params, spec, gen)
    return tree, base


def verify_tree(
    p: KVSequence,
    tree: TokenTree,
    root_pos: int,
    params: SamplingParams,
    spec: SpecConfig,
    gen: torch.Generator,
):
    """ONE target forward over the root and every tree node; then the verification walk."""
    nodes = list(range(len(tree)))
    positions = [root_pos + tree.depths[i] for i in nodes]
    logits = p.forward_tree(tree.tokens, positions, tree.ancestors_mask(nodes))  # [N+1, V]
    if params.greedy:
        return walk_greedy(tree, logits.argmax(-1).tolist())
    return walk_sampling(tree, probs_from_logits(logits, params), spec.replacement, gen)


class Branch:
    def __init__(
        self,
        index: int,
        pair: ModelPair,
        request: Request,
        k_config: tuple[int, ...],
        spec: SpecConfig,
        method: str,
    ) -> None:
        self.index = index
        self.pair = pair
        self.params = request.params
        self.spec = spec
        self.k_config = k_config  # (1,) * gamma for SD
        self.seq = Sequence(
            request.prompt_ids, request.params, pair.tokenizer, pair.eos_token_ids, pair.max_context
        )
        self.gen = make_generator(request.params.seed)
        self.p = KVSequence(pair.target, pair.vocab_size)
        self.q = KVSequence(pair.draft, pair.vocab_size)
        self.stats = DecodeStats(method=method)
        self.start = time.perf_counter()
        self.cancelled = False
        self.error: str | None = None
        self.pending_tree: TokenTree | None = None
        self._q_base = 0

    @property
    def done(self) -> bool:
        return self.seq.finished or self.cancelled or self.error is not None

    @property
    def root_pos(self) -> int:
        return len(self.seq.tokens) - 1

    def prefill(self, shared: Branch | None = None) -> None:
        """Prefill both caches with the prompt minus the pending token, or copy them from a
        branch with the same prompt that is already prefilled (shared-prompt KV reuse)."""
        t = time.perf_counter()
        ids = self.seq.tokens[:-1]
        if shared is not None:
            self.p.copy_from(shared.p)  # KV copy: one prompt's cache into another row
            self.q.copy_from(shared.q)
        elif ids:
            self.p.forward(ids)
            self.q.forward(ids)
        self.stats.prefill_s += time.perf_counter() - t

    def draft(self) -> TokenTree:
        """Grow this round's token tree with q (no target work)."""
        t = time.perf_counter()
        k_config = self.k_config[: self.seq.remaining - 1]
        if k_config:
            tree, self._q_base = draft_tree(
                self.q, self.seq, k_config, self.params, self.spec, self.gen
            )
        else:
            tree, self._q_base = TokenTree.root(self.seq.tokens[-1]), self.q.length
        self.pending_tree = tree
        self.stats.draft_s += time.perf_counter() - t
        return tree

    def verify(self) -> Verdict:
        """Verify the drafted tree alone: one target forward."""
        t = time.perf_counter()
        path, verdict = verify_tree(
            self.p, self.pending_tree, self.root_pos, self.params, self.spec, self.gen
        )
        self.stats.verify_s += time.perf_counter() - t
        self.accept(path, verdict)
        return verdict

    def accept(self, path: list[int], verdict: Verdict) -> None:
        """Compact both caches to the accepted path and commit the new tokens."""
        tree, root_pos = self.pending_tree, self.root_pos
        self.stats.rounds += 1
        self.stats.drafted += tree.n_drafted
        self.stats.accepted += verdict.n_accepted
        self.p.keep(root_pos + 1, [root_pos + i for i in path])
        fed = [n for n in path if n + self._q_base - 1 < self.q.length]
        self.q.keep(self._q_base, [self._q_base + n - 1 for n in fed])
        self.seq.commit([tree.tokens[n] for n in path] + [verdict.token])
        self.pending_tree = None

    def result(self) -> GenerationResult:
        self.stats.new_tokens = len(self.seq.generated)
        self.stats.target_forwards = self.p.forwards
        self.stats.draft_forwards = self.q.forwards
        self.stats.wall_s = time.perf_counter() - self.start
        reason = self.seq.finish_reason or ("cancelled" if self.cancelled else "error")
        return GenerationResult(
            self.seq.generated, self.seq.text(), reason, self.stats, error=self.error
        )
