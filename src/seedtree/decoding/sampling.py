"""Sampling rules shared by every engine: temperature, top-p, seeds, and a request's `Sampler`.

Names follow Leviathan et al. 2023 (Alg. 1): p is the target's distribution, q the draft's,
gamma the number of draft tokens per round. Two sampling modes above temperature 0:

`speculative` (speculative sampling; one generator per request, `tree.walk_sampling`):
  - an *accepted* token is a draft token x_i kept with probability min(1, p_i(x)/q_i(x));
  - a *recovered* token replaces the first rejected draft, sampled from norm(max(0, p_i - q_i));
  - a *bonus* token is sampled from p_{gamma+1} when all gamma drafts were accepted.
  Lossless in distribution; the tokens depend on the method (the draws differ).

`coupled` (seeded Gumbel-max; drafter-invariant speculative decoding, Daliri, Musco and Suresh
2024, arXiv 2408.07978): the token at output position t is
      x_t = argmax_v  log p_t(v) + g_t(v),    g_t(v) = Gumbel noise keyed by (seed, t, v),
  an exact sample from p_t (after temperature and top-p). The draft proposes argmax_v log q_t(v)
  + g_t(v) with the same noise, and verification accepts a draft token while it equals the
  target's x_t, then emits x_t: the output is the token sequence AR produces with the same seed,
  for any draft, any draft length and any schedule.

At temperature 0 both reduce to greedy: accept while the draft equals the target's argmax, then
emit the target's argmax (g = 0).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from seedtree.decoding.params import SamplingParams


def derive_seed(*parts: object) -> int:
    """A seed in [0, 2**63) hashed from `parts` (e.g. (seed, call, prompt, sample)): nearby
    inputs give unrelated seeds, unlike seed + offset."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


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


def gumbel_noise(seed: int, position: int, vocab: int) -> torch.Tensor:
    """g [V] float64: standard Gumbel noise for output position `position` of a request seeded
    `seed`; independent across positions and seeds, the same for every method and device."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "gumbel", position))
    u = torch.rand(vocab, generator=gen, dtype=torch.float64)
    return -torch.log(-torch.log(u))


class Sampler:
    """One request's randomness: its seed, its generator (speculative mode) and its Gumbel noise
    per output position (coupled mode, cached while the position may still be drafted or
    verified; `forget` drops the committed ones)."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        seed = params.seed
        self.seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)))
        self.gen = make_generator(self.seed)
        self.coupled = not params.greedy and params.sampling == "coupled"
        self._noise: dict[int, torch.Tensor] = {}

    def noise(self, position: int, vocab: int) -> torch.Tensor:
        if position not in self._noise:
            self._noise[position] = gumbel_noise(self.seed, position, vocab)
        return self._noise[position]

    def forget(self, below: int) -> None:
        """Drop the noise of output positions < `below` (committed: never drafted again)."""
        for position in [p for p in self._noise if p < below]:
            del self._noise[position]

    def scores(self, logits: torch.Tensor, position: int) -> torch.Tensor:
        """logits [V] -> coupled scores [V] float64: log p(v) + g_position(v) up to a constant
        (logits / T + g; -inf outside the top-p nucleus). Their argmax is the coupled sample."""
        params = self.params
        if params.top_p < 1.0:
            warped = probs_from_logits(logits, params).log()
        else:  # log p = logits / T - logsumexp: the constant changes no argmax and no gap
            warped = logits.double() / params.temperature
        return warped + self.noise(position, logits.shape[-1])

    def token(self, logits: torch.Tensor, position: int) -> int:
        """logits [V] -> the token at output `position`: argmax at T=0, the coupled sample, or a
        draw from the generator (speculative mode)."""
        if self.params.greedy:
            return int(logits.argmax())
        if self.coupled:
            return int(self.scores(logits, position).argmax())
        return sample(probs_from_logits(logits, self.params), self.gen)

    def candidates(
        self, logits: torch.Tensor, k: int, position: int, replacement: bool
    ) -> tuple[list[int], torch.Tensor | None]:
        """logits [V] of q -> k draft candidates for output `position`, and q's probabilities
        where speculative sampling needs them (else None): q's top-k at T=0; the top-k of the
        coupled scores (Gumbel-top-k: the best guesses of the target's x_t, distinct, inside the
        nucleus); else k draws from q."""
        if self.params.greedy:
            return logits.topk(k).indices.tolist(), None
        if self.coupled:  # no q needed: verification compares tokens
            top = self.scores(logits, position).topk(k)
            return top.indices[top.values.isfinite()].tolist(), None
        probs = probs_from_logits(logits, self.params)
        if not replacement:
            k = min(k, int((probs > 0).sum()))
        draws = torch.multinomial(probs, k, replacement=replacement, generator=self.gen)
        return draws.tolist(), probs


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one draft: `n_accepted` draft tokens kept, then `token`."""

    n_accepted: int
    token: int  # the recovered token (n_accepted < gamma) or the bonus token
