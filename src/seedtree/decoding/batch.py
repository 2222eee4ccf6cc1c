"""One forward of a model over many sequences with ragged lengths: the only batched forward.

Every model call of every engine goes through `RaggedBatch`: prefill (a chain of prompt tokens),
a draft step (one token, or one level of a token tree), a verification (the whole token tree).
A *row* is one sequence with its own cached prefix (a `KVSequence`). Each forward feeds every row
some new *nodes*; a node names its parent (an earlier node of the same row, or -1: it follows the
cached prefix directly), so chains and trees are fed the same way:
  - keys: each row's cached prefix is copied once, left-aligned, into a [B, H, L_max, D] batch
    cache; the padding columns are masked out. A batch of ONE row uses the row's own cache and
    copies nothing;
  - queries: every row's nodes are right-padded to the widest row; a padded query attends only to
    itself and its output is dropped;
  - positions: a node at depth d below the prefix sits at prefix_len + d;
  - mask: a node attends to its row's prefix, its ancestors among the fed nodes, and itself.
When the caller is done, `commit(row, nodes)` hands the row the keys/values of the nodes it keeps
(in order) — the accepted path of a verification, every fed node of a draft.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import DynamicCache, PreTrainedModel

from seedtree.decoding.kv import KVSequence


def _kv_shape(model: PreTrainedModel) -> tuple[int, int]:
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_key_value_heads, head_dim


def chain(n: int) -> list[int]:
    """Parents of n nodes fed as a chain right after the cached prefix."""
    return list(range(-1, n - 1))


def common_length(sequences: list[list[int]]) -> int:
    """The length of the longest prefix every one of `sequences` starts with."""
    shortest = min(map(len, sequences))
    for i in range(shortest):
        if any(s[i] != sequences[0][i] for s in sequences[1:]):
            return i
    return shortest


def width_groups(widths: list[int], cost: Callable[[int, int], float]) -> list[list[int]]:
    """Rows to feed in separate forwards so that padding costs least. A batch pads every row to
    its widest, so one long prompt beside short ones multiplies their forward, while each
    forward more costs its fixed part again. `widths`: new tokens per row; `cost(rows, width)`:
    seconds of one forward of that many rows padded to `width` (the measured cost model).
    Returns row indices grouped by width (an optimal partition is contiguous in width order:
    O(n^2) dynamic programme over the sorted rows); among equal costs the earliest cut wins,
    so the result is deterministic."""
    order = sorted(range(len(widths)), key=lambda i: (widths[i], i))
    best = [0.0] + [float("inf")] * len(order)  # best[j]: the cheapest split of order[:j]
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        widest = widths[order[j - 1]]
        for i in range(j):  # order[i:j] as one forward
            total = best[i] + cost(j - i, widest)
            if total < best[j]:
                best[j], cut[j] = total, i
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def batch_cache(seqs: list[KVSequence], l_max: int) -> DynamicCache:
    """Left-aligned, zero-padded copy of every sequence's cache: per layer [B, H, L_max, D]."""
    model = seqs[0].model
    cache = DynamicCache(config=model.config)
    if l_max == 0:
        return cache
    heads, head_dim = _kv_shape(model)
    dtype = next(s.cache.layers[0].keys.dtype for s in seqs if s.length)
    device = next(s.cache.layers[0].keys.device for s in seqs if s.length)
    for layer in range(model.config.num_hidden_layers):
        keys = torch.zeros(len(seqs), heads, l_max, head_dim, dtype=dtype, device=device)
        values = torch.zeros_like(keys)
        for b, s in enumerate(seqs):
            if s.length:
                keys[b, :, : s.length] = s.cache.layers[layer].keys[0]
                values[b, :, : s.length] = s.cache.layers[layer].values[0]
        cache.update(keys, values, layer)
    return cache


class RaggedBatch:
    def __init__(self, seqs: list[KVSequence]) -> None:
        assert seqs, "a batch needs at least one row"
        self.seqs = seqs
        self.model = seqs[0].model
        self.vocab_size = seqs[0].vocab_size
        self.device = seqs[0].device
        self.prefix = [s.length for s in seqs]  # cached tokens per row
        self.single = len(seqs) == 1
        # one row: forward on its own cache (no copy); else a left-aligned copy of every prefix
        self.cache = seqs[0].cache if self.single else batch_cache(seqs, max(self.prefix))
        self.width = self.prefix[0] if self.single else max(self.prefix, default=0)
        self.cols: list[list[int]] = [[] for _ in seqs]  # row -> batch column of each fed node
        self.parents: list[list[int]] = [[] for _ in seqs]  # row -> parent node (-1: prefix)
        self.depths: list[list[int]] = [[] for _ in seqs]  # row -> depth below the prefix

    def _add_nodes(self, row: int, parents: list[int], start_col: int) -> None:
        for j, parent in enumerate(parents):
            assert -1 <= parent < len(self.cols[row]) + j, "a parent must be fed before its child"
            self.cols[row].append(start_col + j)
            self.parents[row].append(parent)
            self.depths[row].append(0 if parent < 0 else self.depths[row][parent] + 1)

    def _ancestors(self, row: int, node: int) -> list[int]:
        cols = []
        while node >= 0:
            cols.append(self.cols[row][node])
            node = self.parents[row][node]
        return cols

    @torch.inference_mode()
    def forward(
        self,
        feeds: dict[int, tuple[list[int], list[int]]],  # row -> (token ids, parent of each)
        keep: str | dict[int, int] = "all",
        dtype: torch.dtype = torch.float32,
    ) -> dict[int, torch.Tensor]:
        """Feed each listed row its new nodes in ONE forward; float logits per row: [n_row, V]
        after every node (`keep="all"`: a tree level), after the row's last n nodes
        (`keep={row: n}`: a verification after the rest of a prompt; `"last"`: n = 1, a draft's
        catch-up chain), none (`"none"`: a prefill). The vocabulary projection is computed only
        where logits are kept: over a prompt it would cost a third of the draft's prefill and a
        fifth of the target's. `dtype`: the logits' (float64 for `engine.reads`)."""
        assert keep in ("all", "last", "none") or isinstance(keep, dict)
        rows = sorted(feeds)
        assert rows and all(feeds[r][0] and len(feeds[r][0]) == len(feeds[r][1]) for r in rows)
        n_rows = len(self.seqs)
        q_max = max(len(feeds[r][0]) for r in rows)
        width = self.width
        ids = torch.zeros(n_rows, q_max, dtype=torch.long)  # [B, Q]
        positions = torch.zeros(n_rows, q_max, dtype=torch.long)  # [B, Q]
        mask = torch.zeros(n_rows, 1, q_max, width + q_max, dtype=torch.bool)  # [B, 1, Q, K]
        pad = torch.arange(q_max)
        mask[:, 0, pad, width + pad] = True  # padded queries see only themselves
        for r in rows:
            tokens, parents = feeds[r]
            n, first = len(tokens), len(self.cols[r])
            self._add_nodes(r, parents, width)
            ids[r, :n] = torch.tensor(tokens)
            positions[r, :] = self.prefix[r]
            positions[r, :n] += torch.tensor(self.depths[r][first:])
            mask[r, 0, :n, : self.prefix[r]] = True  # the row's own cached prefix
            if parents[1:] == list(range(first, first + n - 1)):  # a chain (a prompt, a draft)
                mask[r, 0, :n, self._ancestors(r, parents[0])] = True  # what it hangs from
                mask[r, 0, :n, width : width + n] = torch.ones(n, n, dtype=torch.bool).tril()
            else:  # a token tree: each node sees its own ancestors
                for j in range(n):
                    mask[r, 0, j, self._ancestors(r, first + j)] = True
        if self.model.config._attn_implementation == "eager":  # additive mask: 0 / -inf
            neg = torch.finfo(self.model.dtype).min
            mask = torch.zeros(mask.shape, dtype=self.model.dtype).masked_fill(~mask, neg)
        tails = {r: 1 for r in rows} if keep == "last" else keep
        if keep in ("all", "none"):
            logits_to_keep = q_max if keep == "all" else 1  # "none": one column, dropped
        else:  # [B, n] the columns of each row's last n nodes (repeated to the widest n)
            n = max(tails.values())
            cols = torch.zeros(n_rows, n, dtype=torch.long)
            for r, tail in tails.items():
                fed = len(feeds[r][0])
                assert 1 <= tail <= fed
                cols[r] = torch.tensor([*range(fed - tail, fed), *[fed - 1] * (n - tail)])
            logits_to_keep = cols.to(self.device)
        out = self.model(
            input_ids=ids.to(self.device),
            position_ids=positions.to(self.device),
            attention_mask=mask.to(self.device),
            cache=self.cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        self.width += q_max
        for r in rows:
            self.seqs[r].forwards += 1
        if self.single:
            self.seqs[0].length = self.width  # the forward appended to the row's own cache
        if keep == "none":
            return {}
        logits = out.logits[:, :, : self.vocab_size].to(dtype)  # [B, Q, V] or [B, n, V]
        if keep == "all":
            return {r: logits[r, : len(feeds[r][0])] for r in rows}
        return {r: logits[r, : tails[r]] for r in rows}

    def commit(self, row: int, nodes: list[int]) -> None:
        """Give row `row` the keys/values of `nodes` (fed node indices, in order) after its
        prefix; every other fed node of the row is dropped."""
        seq, prefix = self.seqs[row], self.prefix[row]
        cols = [self.cols[row][n] for n in nodes]
        if self.single:  # the row's own cache holds prefix + every fed column: compact it
            seq.keep(prefix, cols)
            return
        if not cols:
            return
        idx = torch.tensor(cols, device=self.device)
        keys = [layer.keys[row : row + 1].index_select(-2, idx) for layer in self.cache.layers]
        values = [layer.values[row : row + 1].index_select(-2, idx) for layer in self.cache.layers]
        seq.append_kv(keys, values)
