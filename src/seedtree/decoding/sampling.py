"""Sampling rules shared by every engine: temperature, top-p, seeded generators, one draw.

Names follow Leviathan et al. 2023 (Alg. 1): p is the target's distribution, q the draft's,
gamma the number of draft tokens per round. In one verification (`tree.walk`, the one rule):
  - an *accepted* token is a draft token x_i kept with probability min(1, p_i(x)/q_i(x));
  - a *recovered* token replaces the first rejected draft, sampled from norm(max(0, p_i - q_i));
  - a *bonus* token is sampled from p_{gamma+1} when all gamma drafts were accepted.
At temperature 0 p and q are one-hot at their argmax, and the rule reduces to: accept while the
draft equals the target's argmax, then emit the target's argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seedtree.decoding.params import SamplingParams


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))
    return gen


def probs_from_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """logits [..., V] -> probabilities [..., V] after temperature and top-p (nucleus) warping."""
    probs = torch.softmax(logits.double() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token is always kept)
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(probs: torch.Tensor, gen: torch.Generator) -> int:
    """probs [V] -> one token id."""
    return int(torch.multinomial(probs, 1, generator=gen))


def next_token(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator) -> int:
    """logits [V] -> the next token: argmax at T=0, else a sample from the warped distribution."""
    if params.greedy:
        return int(logits.argmax())
    return sample(probs_from_logits(logits, params), gen)


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one draft: `n_accepted` draft tokens kept, then `token`."""

    n_accepted: int
    token: int  # the recovered token (n_accepted < gamma) or the bonus token
