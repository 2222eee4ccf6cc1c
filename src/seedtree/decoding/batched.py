"""Batched target work: verify several branches' token trees in ONE forward, and batched AR.

Ragged lengths are handled with masks and explicit positions, never by re-prefilling:
  - keys: each branch's cached prefix is copied left-aligned into a [B, H, L_max, D] batch cache
    and the padding columns are masked out;
  - queries: each branch's tree (root + nodes) is right-padded to Q_max; padded queries attend only
    to themselves and their outputs are dropped;
  - positions: branch b's node at depth d sits at root_pos_b + d.
After the forward each branch takes back only its own new keys/values.
"""

from __future__ import annotations

import time

import torch
from transformers import DynamicCache

from seedtree.decoding.branch import Branch
from seedtree.decoding.kv import KVSequence
from seedtree.decoding.params import SamplingParams
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import make_generator, next_token, probs_from_logits
from seedtree.decoding.sequence import Sequence
from seedtree.decoding.tree import walk_greedy, walk_sampling
from seedtree.models.loader import ModelPair


def _kv_shape(model) -> tuple[int, int]:
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_key_value_heads, head_dim


def batch_cache(seqs: list[KVSequence], l_max: int) -> DynamicCache:
    """Left-aligned, zero-padded copy of every sequence's cache: per layer [B, H, L_max, D]."""
    model = seqs[0].model
    cache = DynamicCache(config=model.config)
    if l_max == 0:
        return cache
    heads, head_dim = _kv_shape(model)
    n_layers = model.config.num_hidden_layers
    for layer in range(n_layers):
        keys = torch.zeros(len(seqs), heads, l_max, head_dim, dtype=model.dtype)
        values = torch.zeros_like(keys)
        for b, s in enumerate(seqs):
            if s.length:
                keys[b, :, : s.length] = s.cache.layers[layer].keys[0]
                values[b, :, : s.length] = s.cache.layers[layer].values[0]
        cache.update(keys, values, layer)
    return cache


@torch.inference_mode()
def verify_batch(branches: list[Branch]) -> None:
    """ONE target forward over every branch's drafted tree, then each branch's walk + commit."""
    t = time.perf_counter()
    trees = [b.pending_tree for b in branches]
    seqs = [b.p for b in branches]
    l_max = max(s.length for s in seqs)
    q_max = max(len(tree) for tree in trees)
    n = len(branches)
    # 1) inputs, positions and the [B, 1, Q_max, L_max + Q_max] mask
    ids = torch.zeros(n, q_max, dtype=torch.long)
    positions = torch.zeros(n, q_max, dtype=torch.long)
    mask = torch.zeros(n, 1, q_max, l_max + q_max, dtype=torch.bool)
    for b, (branch, tree) in enumerate(zip(branches, trees, strict=True)):
        size = len(tree)
        ids[b, :size] = torch.tensor(tree.tokens)
        positions[b, :size] = torch.tensor([branch.root_pos + d for d in tree.depths])
        positions[b, size:] = branch.root_pos
        mask[b, 0, :, : seqs[b].length] = True  # the branch's own cached prefix
        mask[b, 0, :size, l_max : l_max + size] = tree.ancestors_mask(list(range(size)))
        pad = torch.arange(size, q_max)
        mask[b, 0, pad, l_max + pad] = True  # padded queries see only themselves
    if branches[0].p.model.config._attn_implementation == "eager":
        mask = torch.zeros(mask.shape, dtype=branches[0].p.model.dtype).masked_fill(
            ~mask, torch.finfo(branches[0].p.model.dtype).min
        )
    # 2) one forward of p for all branches
    cache = batch_cache(seqs, l_max)
    model = branches[0].p.model
    out = model(
        input_ids=ids,
        position_ids=positions,
        attention_mask=mask,
        cache=cache,
        use_cache=True,
        logits_to_keep=q_max,
    )
    logits = out.logits[:, :, : branches[0].pair.vocab_size].float()  # [B, Q_max, V]
    elapsed = time.perf_counter() - t
    # 3) each branch takes back its own new KV entries, walks its tree and commits
    for b, (branch, tree) in enumerate(zip(branches, trees, strict=True)):
        size = len(tree)
        keys = [layer.keys[b : b + 1, :, l_max : l_max + size] for layer in cache.layers]
        values = [layer.values[b : b + 1, :, l_max : l_max + size] for layer in cache.layers]
        branch.p.append_kv(keys, values)
        branch.p.forwards += 1
        if branch.params.greedy:
            path, verdict = walk_greedy(tree, logits[b, :size].argmax(-1).tolist())
        else:
            p = probs_from_logits(logits[b, :size], branch.params)
            path, verdict = walk_sampling(tree, p, branch.spec.replacement, branch.gen)
        branch.stats.verify_s += elapsed / n
        branch.accept(path, verdict)


@torch.inference_mode()
def generate_batched_ar(
    pair: ModelPair, prompts: list[list[int]], params: list[SamplingParams]
) -> list[GenerationResult]:
    """The target decodes all requests as one left-padded batch, one token per row per step;
    finished rows leave the batch (their cache rows are dropped)."""
    start = time.perf_counter()
    n = len(prompts)
    seqs = [
        Sequence(ids, sp, pair.tokenizer, pair.eos_token_ids, pair.max_context)
        for ids, sp in zip(prompts, params, strict=True)
    ]
    gens = [make_generator(sp.seed) for sp in params]
    stats = [DecodeStats(method="batched-ar") for _ in range(n)]
    p_max = max(len(ids) for ids in prompts)
    # 1) prefill: prompts left-padded to p_max; the 2D mask marks real tokens
    ids = torch.zeros(n, p_max, dtype=torch.long)
    attn = torch.zeros(n, p_max, dtype=torch.long)
    for b, prompt in enumerate(prompts):
        ids[b, p_max - len(prompt) :] = torch.tensor(prompt)
        attn[b, p_max - len(prompt) :] = 1
    cache = DynamicCache(config=pair.target.config)
    positions = (attn.cumsum(-1) - 1).clamp_min(0)
    out = pair.target(
        input_ids=ids,
        attention_mask=attn,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits = out.logits[:, -1, : pair.vocab_size].float()  # [B, V]
    prefill_s = time.perf_counter() - start
    active = list(range(n))  # batch row -> request
    forwards = 1
    # 2) decode: one forward per step for all active rows
    while True:
        tokens = []
        for row, b in enumerate(active):
            seqs[b].commit([next_token(logits[row], params[b], gens[b])])
            tokens.append(seqs[b].tokens[-1])
        keep = [row for row, b in enumerate(active) if not seqs[b].finished]
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch
            cache.batch_select_indices(torch.tensor(keep))
            attn = attn[keep]
            tokens = [tokens[row] for row in keep]
            active = [active[row] for row in keep]
        attn = torch.cat([attn, torch.ones(len(active), 1, dtype=torch.long)], dim=1)
        positions = attn.sum(-1, keepdim=True) - 1  # [B, 1]
        out = pair.target(
            input_ids=torch.tensor(tokens)[:, None],
            attention_mask=attn,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, : pair.vocab_size].float()
        forwards += 1
    wall = time.perf_counter() - start
    results = []
    for b in range(n):
        s = stats[b]
        s.new_tokens, s.target_forwards = len(seqs[b].generated), forwards
        s.wall_s, s.prefill_s, s.verify_s = wall, prefill_s, wall - prefill_s
        results.append(
            GenerationResult(seqs[b].generated, seqs[b].text(), seqs[b].finish_reason, s)
        )
    return results
