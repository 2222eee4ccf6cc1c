"""Adaptive speculation: how many tokens a branch drafts this round.

With per-token acceptance rate alpha, a round that drafts g tokens emits on average
1 + alpha + ... + alpha^g tokens and costs about 1 + g*c target steps (c = draft step / target
step; verifying g+1 tokens costs about one step on this hardware). A branch drafts the g in
0..gamma with the most tokens per unit of cost, from its own running estimate of alpha; g = 0 is
plain decoding. The choice uses only the branch's past, never this round's verification, so it
is lossless like every draft policy.
"""

from __future__ import annotations

from dataclasses import dataclass

DECAY = 0.8  # weight of the past per round: alpha follows the branch's recent text


@dataclass
class AcceptanceEstimate:
    """Decayed counts of accepted draft tokens and of rejections (a round that stopped early).
    The prior (2 accepted, 1 rejected: alpha 0.67) lets a new branch start by speculating."""

    accepted: float = 2.0
    rejected: float = 1.0

    @property
    def alpha(self) -> float:
        return self.accepted / (self.accepted + self.rejected)

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:  # a plain decoding round says nothing about the draft
            return
        self.accepted = DECAY * self.accepted + accepted
        self.rejected = DECAY * self.rejected + (accepted < drafted)


def expected_tokens(alpha: float, g: int) -> float:
    """Tokens one round emits on average when it drafts g: sum_{i<=g} alpha^i."""
    return sum(alpha**i for i in range(g + 1))


def best_gamma(alpha: float, c: float, gamma: int) -> int:
    """The draft length in 0..gamma with the most expected tokens per unit of cost.

    Lookup candidates (free, verified beside the model's chain) are not counted against the
    model's chain: pricing the model's tokens as useful only where the lookup's first candidate
    fails turned model drafting off on every branch whose lookup acceptance was moderate (0.5),
    and on GSM8K trees (bfloat16, T=0) cut tokens per round from 2.81 to 2.19 (BENCHMARKS.md,
    lookup drafting). Each source is sized from its own acceptance: this for the model's chain,
    `lookup_length` for the lookup's."""

    def per_cost(g: int) -> tuple[float, int]:
        return expected_tokens(alpha, g) / (1 + g * c), -g

    return max(range(gamma + 1), key=per_cost)


MIN_MARGINAL = 0.1  # a lookup candidate is worth verifying while P(accepted) stays above this


def lookup_length(alpha_lookup: float, limit: int) -> int:
    """Lookup candidates worth verifying: the i-th is accepted with probability alpha^i. At
    least one (when `limit` allows): a free candidate costs one verification row, and a branch
    that stopped proposing would never update its estimate again."""
    n = min(1, limit)
    while n < limit and alpha_lookup ** (n + 1) >= MIN_MARGINAL:
        n += 1
    return n


# -- speculation that knows the batch -------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Seconds per forward on this machine, measured at start-up (`engine.costs.measure`):

        target forward  a + b * rows * width + e * rows * context
        draft step      d0 + d1 * rows

    `width` is the widest row's new tokens (a ragged batch pads every row to it), `context` the
    longest cached prefix (each row's KV is copied into the batch and attended over)."""

    a: float
    b: float
    e: float
    d0: float
    d1: float

    def target(self, rows: int, width: int, context: int) -> float:
        return self.a + self.b * rows * width + self.e * rows * context

    def draft(self, rows: int) -> float:
        return self.d0 + self.d1 * rows if rows else 0.0

    def draft_chain(self, rows: int, width: int, context: int = 0) -> float:
        """A draft forward feeding each row `width` tokens (a prefill, a catch-up): the draft
        step's per-row cost taken per row-token (its context is not priced)."""
        return self.d0 + self.d1 * rows * width


def plan_depths(
    alphas: list[float],  # [branches] each branch's running acceptance estimate
    widths: tuple[int, ...],  # draft-tree nodes per depth (a chain: 1 each; MCSD: its tree)
    costs: CostModel,
    context: int,
    lags: list[int] | None = None,  # [branches] tokens each draft must catch up on first
    remaining: list[int] | None = None,  # [branches] tokens each may still generate
) -> list[int]:
    """Each branch's draft depth this round, for the whole batch: the plan with the most
    expected tokens per second of draft steps plus one target forward. Every row of the
    verification is padded to the deepest tree, so the batch shares one depth D; a branch drafts
    D or nothing (its draft rows are what it saves). As the batch fills, the target's cost per
    row grows and D falls to 0: plain batched decoding. A draft that has fallen behind (a prompt
    it skipped: `lags`) must first read what it missed, in one catch-up forward for all such
    branches (d0 + d1 per token); paid once, it serves the branch's remaining rounds, so each
    round is charged its share: cost / (remaining tokens / tokens per drafting round). Uses
    only the branches' past."""
    n = len(alphas)
    lags = lags or [0] * n
    remaining = remaining or [1] * n

    def rounds(i: int) -> float:  # rounds a catch-up serves
        return max(1.0, remaining[i] / expected_tokens(alphas[i], 1))

    # most likely to pay first; drafts already caught up before those that must catch up
    order = sorted(range(n), key=lambda i: (lags[i] > 0, -alphas[i], i))
    best_rate, best = n / costs.target(n, 1, context), (0, 0)  # plain decoding: (depth, rows)
    nodes = 0
    for depth in range(1, len(widths) + 1):
        nodes += widths[depth - 1]
        verify = costs.target(n, 1 + nodes, context)
        tokens, behind = float(n), 0.0
        for m, i in enumerate(order, 1):  # the m first branches draft `depth`
            tokens += expected_tokens(alphas[i], depth) - 1
            if lags[i]:  # its share of the catch-up; the first one behind pays the forward's d0
                behind += (costs.d1 * lags[i] + (costs.d0 if behind == 0 else 0.0)) / rounds(i)
            rate = tokens / (verify + depth * costs.draft(m) + behind)
            if rate > best_rate:
                best_rate, best = rate, (depth, m)
    depth, m = best
    drafting = set(order[:m])
    return [depth if i in drafting else 0 for i in range(n)]
