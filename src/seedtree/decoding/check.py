"""Built-in losslessness checks: where does an engine's greedy output leave AR's, and was it a tie?

With exact arithmetic a lossless engine at T=0 equals AR token for token. In floating point the
target scores a token slightly differently alone (AR) than inside a block (verification), so two
engines may legitimately part where the target's top-2 logits are (nearly) tied. `find_divergence`
reports the first differing position with AR's top-2 logit gap there, and `block_noise` measures
the dtype's noise: the max |logit| difference between scoring tokens one at a time and in a block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seedtree.decoding.kv import KVSequence
from seedtree.models.loader import ModelPair


@dataclass(frozen=True)
class Divergence:
    position: int  # index into the generated tokens
    ar_token: int
    other_token: int
    top2_gap: float  # target logit(top-1) - logit(top-2) after AR's prefix, scored AR's way


def _top2_gap(logits: torch.Tensor) -> float:
    top = logits.double().topk(2).values
    return float(top[0] - top[1])


def find_divergence(
    pair: ModelPair, prompt_ids: list[int], ar_ids: list[int], other_ids: list[int]
) -> Divergence | None:
    """None if `other_ids` equals `ar_ids`; else the first divergence and AR's top-2 gap there."""
    if ar_ids == other_ids:
        return None
    i = next((k for k, (a, b) in enumerate(zip(ar_ids, other_ids, strict=False)) if a != b), None)
    if i is None:  # one is a prefix of the other: they differ in where they stop
        i = min(len(ar_ids), len(other_ids))
    # Re-score AR's prefix the way AR does: prompt in one block, then one token at a time.
    p = KVSequence(pair.target, pair.vocab_size)
    logits = p.forward(prompt_ids)[-1]
    for token in ar_ids[:i]:
        logits = p.forward([token])[-1]
    a = ar_ids[i] if i < len(ar_ids) else -1
    b = other_ids[i] if i < len(other_ids) else -1
    return Divergence(i, a, b, _top2_gap(logits))


@torch.inference_mode()
def block_noise(pair: ModelPair, ids: list[int], start: int) -> float:
    """Max |logit| difference for ids[start:] scored one token at a time vs in one block."""
    one = KVSequence(pair.target, pair.vocab_size)
    one.forward(ids[:start])
    singles = torch.stack([one.forward([t])[-1] for t in ids[start:]])  # [n, V]
    block = KVSequence(pair.target, pair.vocab_size)
    block.forward(ids[:start])
    together = block.forward(ids[start:], keep=len(ids) - start)  # [n, V]
    return float((singles - together).abs().max())
