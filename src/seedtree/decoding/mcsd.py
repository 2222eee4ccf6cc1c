"""Multi-candidate speculative decoding (MCSD; Yang et al., arXiv 2401.06706): the draft q grows
a token tree level by level (one draft forward per level), the target p scores the whole tree in
ONE forward with a tree attention mask, and the verification walk keeps p's distribution.

Cache invariant at the start of a round is SD's: the target's cache holds every committed token
but the pending one; the draft's holds a prefix of the committed tokens. After a round each cache
holds that prefix plus tree nodes; both are compacted to the prefix plus the accepted path.
"""

from __future__ import annotations

import time

import torch

from seedtree.decoding.kv import KVSequence
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import make_generator, probs_from_logits
from seedtree.decoding.sequence import Sequence
from seedtree.decoding.tree import TokenTree, choose_children, walk_greedy, walk_sampling
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair


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


def generate_mcsd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    spec = spec or SpecConfig()
    if len(prompt_ids) + 1 + spec.tree_nodes > pair.max_context:
        raise SeedtreeError(
            f"k_config {','.join(map(str, spec.k_config))} drafts {spec.tree_nodes} tree nodes "
            f"per round but the prompt leaves {pair.max_context - len(prompt_ids) - 1} positions "
            f"of the {pair.max_context}-token context: use a smaller k_config"
        )
    start = time.perf_counter()
    stats = DecodeStats(method="mcsd")
    seq = Sequence(prompt_ids, params, pair.tokenizer, pair.eos_token_ids, pair.max_context)
    gen = make_generator(params.seed)
    p = KVSequence(pair.target, pair.vocab_size)
    q = KVSequence(pair.draft, pair.vocab_size)

    # 1) prefill both caches with the prompt minus its last token (the pending token)
    if len(prompt_ids) > 1:
        p.forward(prompt_ids[:-1])
        q.forward(prompt_ids[:-1])
    stats.prefill_s = time.perf_counter() - start

    while not seq.finished:
        # never draft deeper than the tokens still allowed (the round adds depth + 1 at most)
        k_config = spec.k_config[: seq.remaining - 1]
        root_pos = len(seq.tokens) - 1
        # 2) draft the token tree with q, one forward per level
        t = time.perf_counter()
        if k_config:
            tree, q_base = draft_tree(q, seq, k_config, params, spec, gen)
        else:
            tree, q_base = TokenTree.root(seq.tokens[-1]), q.length
        stats.draft_s += time.perf_counter() - t
        # 3) verify the whole tree with one forward of p
        t = time.perf_counter()
        path, verdict = verify_tree(p, tree, root_pos, params, spec, gen)
        stats.verify_s += time.perf_counter() - t
        stats.rounds += 1
        stats.drafted += tree.n_drafted
        stats.accepted += verdict.n_accepted
        # 4) KV compaction: keep the prefix (root included) plus the accepted path's nodes.
        #    Target: node i sits at cache index root_pos + i. Draft: nodes 1.. sit from q_base on,
        #    and only the nodes above the deepest level were fed.
        p.keep(root_pos + 1, [root_pos + i for i in path])
        fed = [n for n in path if n + q_base - 1 < q.length]
        q.keep(q_base, [q_base + n - 1 for n in fed])
        seq.commit([tree.tokens[n] for n in path] + [verdict.token])

    stats.new_tokens = len(seq.generated)
    stats.target_forwards = p.forwards
    stats.draft_forwards = q.forwards
    stats.wall_s = time.perf_counter() - start
    return GenerationResult(seq.generated, seq.text(), seq.finish_reason, stats)
