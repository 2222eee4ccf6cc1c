"""A branch: one request being decoded, with its speculative state.

Vocabulary (used across `decoding/` and `engine/`):
  - request: a prompt and its `SamplingParams`; a *branch* is one request in flight;
  - draft: the token tree q proposes for a branch in one *round* (a chain of gamma tokens for SD,
    the k_config tree for MCSD, the root alone for plain decoding);
  - verification: one target forward over the tree, then the accept rule (`tree.walk`):
    *accepted* draft tokens, then one *recovered* (after a rejection) or *bonus* token.

Cache invariant between rounds: the target's cache `p` holds every committed token but the last
(the *pending* token, the root of the next tree), except before the first round, when it may hold
only a prefix of the prompt (the first verification feeds the rest before the tree); the draft's
cache `q` holds a prefix of the committed tokens (the draft sees the rest at its next round).
The branch owns both caches and its sequence; batch code only feeds and scores
(`decoding.speculative`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from seedtree.decoding.adaptive import AcceptanceEstimate, best_gamma, lookup_length
from seedtree.decoding.kv import KVSequence
from seedtree.decoding.logprobs import token_logprobs
from seedtree.decoding.lookup import LookupIndex
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult, TokenLogprob
from seedtree.decoding.sampling import Sampler, Verdict
from seedtree.decoding.sequence import Sequence
from seedtree.decoding.tree import LOOKUP, MODEL, TokenTree
from seedtree.models.loader import ModelPair


@dataclass(frozen=True)
class Request:
    """One prompt to decode; `params.seed` makes its samples reproducible."""

    prompt_ids: list[int]
    params: SamplingParams


class Branch:
    def __init__(
        self,
        index: int,
        pair: ModelPair,
        request: Request,
        spec: SpecConfig,
        shape: tuple[int, ...],
        method: str,
    ) -> None:
        """`shape`: the method's draft tree, children per depth ((1,)*gamma: a chain; the
        k_config: MCSD; (): no draft, plain decoding)."""
        self.index = index
        self.params = request.params
        self.spec = spec
        self.shape = shape
        self.seq = Sequence(
            request.prompt_ids, request.params, pair.tokenizer, pair.eos_token_ids, pair.max_context
        )
        self.sampler = Sampler(request.params)
        self.p = KVSequence(pair.target, pair.vocab_size)
        self.q = KVSequence(pair.draft, pair.vocab_size) if shape else None
        self.stats = DecodeStats(method=method, prompt_tokens=len(request.prompt_ids))
        self.acceptance = AcceptanceEstimate()
        self.start = time.perf_counter()
        self.cancelled = False
        self.error: str | None = None
        self.tree: TokenTree | None = None  # this round's draft, until verified
        self.q_base = 0  # draft cache position of tree node 1 (node i sits at q_base + i - 1)
        self.q_fed = 0  # tree nodes fed to the draft this round (the last level is not)
        self.lookup: LookupIndex | None = None  # lookup drafting (`attach_lookup`)
        self.doc = -1  # this branch's document in the lookup index
        self.lookup_acceptance = AcceptanceEstimate()
        self.planned_depth: int | None = None  # this round's, from the engine's batch policy
        # one per generated token, when the request asks for them (SamplingParams.logprobs)
        self.logprobs: list[TokenLogprob] | None = None if self.params.logprobs is None else []

    def attach_lookup(self, index: LookupIndex) -> None:
        """Draft from text already written too (SpecConfig.lookup > 0; not with speculative
        sampling, which needs each candidate's proposal distribution)."""
        sampler = self.sampler
        if self.spec.lookup and self.shape and (sampler.params.greedy or sampler.coupled):
            self.lookup, self.doc = index, index.register(self.seq.tokens)

    @property
    def done(self) -> bool:
        return self.seq.finished or self.cancelled or self.error is not None

    @property
    def root_pos(self) -> int:
        """Position of the pending token, the root of this round's tree."""
        return len(self.seq.tokens) - 1

    @property
    def position(self) -> int:
        """Output position of the token after the pending one (where this round's tree starts
        predicting; coupled sampling keys its noise by it)."""
        return len(self.seq.generated)

    def lookup_proposal(self) -> list[int]:
        """This round's lookup candidates (a chain below the pending token; [] without lookup):
        as many as the branch's lookup record makes worth verifying, never past what may still
        be generated."""
        if self.lookup is None:
            return []
        limit = self.spec.lookup
        if self.spec.adaptive:
            limit = lookup_length(self.lookup_acceptance.alpha, limit)
        return self.lookup.propose(self.doc, min(limit, self.seq.remaining - 1))

    def round_shape(self) -> tuple[int, ...]:
        """This round's model-draft shape: the method's, as deep as adaptive speculation finds
        worth it from the draft model's own acceptance, never past what may still be generated
        (a round emits at most depth + 1 tokens). Lookup candidates do not shorten it: they are
        free extra rows beside the model's chain (see `adaptive.best_gamma`)."""
        depth = len(self.shape)
        if self.planned_depth is not None:  # the engine planned the whole batch's round
            depth = min(depth, self.planned_depth)
        elif self.spec.adaptive and depth:
            depth = best_gamma(self.acceptance.alpha, self.spec.c, depth)
        return self.shape[: max(0, min(depth, self.seq.remaining - 1))]

    def unseen(self) -> list[int]:
        """Committed tokens the draft has not cached yet (they end with the pending token)."""
        return self.seq.tokens[self.q.length :]

    def unread_prompt(self) -> list[int]:
        """Prompt tokens before the pending one the target has not cached: what its first
        verification feeds before the tree ([] once it has run, or where prefill fed p)."""
        return self.seq.tokens[self.p.length : -1]

    def fail(self, error: str) -> None:
        self.error = error
        self.tree = None

    def accept(
        self,
        path: list[int],
        verdict: Verdict,
        logits: torch.Tensor,  # [N+1, V] the target's logits after each node of this round's tree
    ) -> None:
        """Commit a verification's outcome: the accepted nodes, then the recovered/bonus token.
        The target's cache already holds the pending token and the accepted path
        (`RaggedBatch.commit`); here the draft's cache drops every rejected node it was fed."""
        tree = self.tree
        self.stats.rounds += 1
        self.stats.drafted += tree.n_drafted
        self.stats.accepted += verdict.n_accepted
        lookup_only = [n for n in range(1, len(tree)) if tree.sources[n] == LOOKUP]
        self.stats.lookup_drafted += len(lookup_only)
        self.stats.lookup_accepted += len(set(path) & set(lookup_only))
        # alpha per source and depth: a source's chain is rejected only where the path leaves it
        # above its deepest candidate
        self.acceptance.update(tree.depth_of(MODEL), tree.count(MODEL, path))
        self.lookup_acceptance.update(tree.depth_of(LOOKUP), tree.count(LOOKUP, path))
        if self.q is not None and tree.n_drafted:
            # KV rollback of q: keep its prefix, then the accepted nodes it was fed
            fed = [n for n in path if n <= self.q_fed]
            self.q.keep(self.q_base, [self.q_base + n - 1 for n in fed])
        tokens = [tree.tokens[n] for n in path] + [verdict.token]
        committed = self.seq.commit(tokens)  # fewer where eos or a stop string ends the request
        if self.logprobs is not None:  # token j was emitted after node ([0] + path)[j]
            rows = [0, *path][:committed]
            self.logprobs += token_logprobs(logits[rows], tokens[:committed], self.params.logprobs)
        self.sampler.forget(self.position)
        self.tree = None

    def result(self) -> GenerationResult:
        if self.lookup is not None:  # its text stays for later lookups
            self.lookup.release(self.doc)
        self.stats.new_tokens = len(self.seq.generated)
        self.stats.target_forwards = self.p.forwards
        self.stats.draft_forwards = self.q.forwards if self.q is not None else 0
        self.stats.wall_s = time.perf_counter() - self.start
        reason = self.seq.finish_reason or ("cancelled" if self.cancelled else "error")
        return GenerationResult(
            self.seq.generated, self.seq.text(), reason, self.stats, error=self.error,
            logprobs=self.logprobs,
        )  # fmt: skip
