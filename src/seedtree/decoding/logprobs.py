"""Log-probabilities of output tokens (`SamplingParams.logprobs`), from the target's logits.

They are the target p's *raw* distribution, log_softmax(logits), at the position where each token
was emitted: before temperature and top-p, whatever the sampling (vLLM's default "raw logprobs").
A speculative engine takes them from the verification forward (the logits after the pending token
and each accepted node: they predict the accepted tokens and the recovered or bonus token), AR from
its decode forward: the same logits up to rounding, so every method reports the same values.
"""

from __future__ import annotations

import torch

from seedtree.decoding.result import TokenLogprob


def token_logprobs(
    logits: torch.Tensor,  # [n, V] target logits where each token was emitted
    tokens: list[int],  # [n] the emitted tokens
    k: int,  # top alternatives per token (0: the emitted token's logprob only)
) -> list[TokenLogprob]:
    assert logits.ndim == 2 and logits.shape[0] == len(tokens) and k >= 0
    logp = torch.log_softmax(logits, dim=-1)  # [n, V], in the logits' dtype
    index = torch.tensor(tokens, dtype=torch.long, device=logp.device)[:, None]  # [n, 1]
    chosen = logp.gather(-1, index)[:, 0].tolist()  # [n]
    if not k:
        return [TokenLogprob(t, lp) for t, lp in zip(tokens, chosen, strict=True)]
    top = logp.topk(min(k, logp.shape[-1]), dim=-1)  # [n, k], descending
    ids, values = top.indices.tolist(), top.values.tolist()
    return [
        TokenLogprob(t, lp, tuple(zip(i, v, strict=True)))
        for t, lp, i, v in zip(tokens, chosen, ids, values, strict=True)
    ]
