"""Speculative decoding (SD): the draft q proposes gamma tokens, the target p scores them all in
one forward, and speculative sampling keeps p's output distribution (Leviathan et al. 2023).

Cache invariant at the start of a round: the target's cache holds every committed token but the
last (the *pending* token, fed again at verification); the draft's cache holds a prefix of the
committed tokens (it lags by one more token after a round where every draft was accepted).
"""

from __future__ import annotations

import time

import torch

from seedtree.decoding.kv import KVSequence
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import (
    Verdict,
    greedy_verify,
    make_generator,
    probs_from_logits,
    sample,
    speculative_verify,
)
from seedtree.decoding.sequence import Sequence
from seedtree.models.loader import ModelPair


def draft_tokens(
    q: KVSequence, seq: Sequence, gamma: int, params: SamplingParams, gen: torch.Generator
) -> tuple[list[int], torch.Tensor | None]:
    """gamma draft forwards; returns the drafts and (T > 0) their distributions q [gamma, V]."""
    drafts: list[int] = []
    q_probs: list[torch.Tensor] = []
    ids = seq.tokens[q.length :]  # committed tokens the draft has not seen (1 or 2)
    for _ in range(gamma):
        logits = q.forward(ids)[-1]  # [V]
        if params.greedy:
            x = int(logits.argmax())
        else:
            q_probs.append(probs_from_logits(logits, params))
            x = sample(q_probs[-1], gen)
        drafts.append(x)
        ids = [x]
    if params.greedy:
        return drafts, None
    return drafts, torch.stack(q_probs) if q_probs else torch.empty(0, q.vocab_size).double()


def verify(
    p: KVSequence,
    seq: Sequence,
    drafts: list[int],
    q_probs: torch.Tensor | None,
    params: SamplingParams,
    gen: torch.Generator,
) -> Verdict:
    """One target forward over [pending token, drafts] -> gamma+1 distributions -> verdict."""
    logits = p.forward(seq.tokens[p.length :] + drafts, keep=len(drafts) + 1)  # [gamma+1, V]
    if params.greedy:
        return greedy_verify(logits.argmax(-1).tolist(), drafts)
    return speculative_verify(probs_from_logits(logits, params), q_probs, drafts, gen)


def generate_sd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    spec = spec or SpecConfig()
    start = time.perf_counter()
    stats = DecodeStats(method="sd")
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
        # never draft past the end: the round yields at most gamma + 1 tokens
        gamma = min(spec.gamma, seq.remaining - 1)
        # 2) draft gamma tokens with q
        t = time.perf_counter()
        drafts, q_probs = draft_tokens(q, seq, gamma, params, gen)
        stats.draft_s += time.perf_counter() - t
        # 3) verify all of them with one forward of p
        t = time.perf_counter()
        verdict = verify(p, seq, drafts, q_probs, params, gen)
        stats.verify_s += time.perf_counter() - t
        stats.rounds += 1
        stats.drafted += gamma
        stats.accepted += verdict.n_accepted
        # 4) KV rollback: keep the committed tokens plus the accepted drafts; the recovered or
        #    bonus token becomes the pending token, not yet in either cache
        kept = len(seq.tokens) + verdict.n_accepted
        p.crop(kept)
        q.crop(min(q.length, kept))
        seq.commit(drafts[: verdict.n_accepted] + [verdict.token])

    stats.new_tokens = len(seq.generated)
    stats.target_forwards = p.forwards
    stats.draft_forwards = q.forwards
    stats.wall_s = time.perf_counter() - start
    return GenerationResult(seq.generated, seq.text(), seq.finish_reason, stats)
