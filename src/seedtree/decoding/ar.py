"""Autoregressive decoding (AR): the target p alone, one forward per token. The reference that
every other engine must reproduce (token for token at T=0, in distribution at T > 0)."""

from __future__ import annotations

import time

from seedtree.decoding.kv import KVSequence
from seedtree.decoding.logprobs import token_logprobs
from seedtree.decoding.params import SamplingParams
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import Sampler
from seedtree.decoding.sequence import Sequence
from seedtree.models.loader import ModelPair


def generate_ar(pair: ModelPair, prompt_ids: list[int], params: SamplingParams) -> GenerationResult:
    start = time.perf_counter()
    stats = DecodeStats(method="ar")
    seq = Sequence(prompt_ids, params, pair.tokenizer, pair.eos_token_ids, pair.max_context)
    sampler = Sampler(params)
    p = KVSequence(pair.target, pair.vocab_size)
    logprobs = None if params.logprobs is None else []  # one per token (SamplingParams.logprobs)

    # 1) prefill the prompt; its last position gives the first token's logits
    logits = p.forward(prompt_ids)[-1]  # [V]
    stats.prefill_s = time.perf_counter() - start
    # 2) decode: one target forward per token
    while True:
        token = sampler.token(logits, len(seq.generated))
        seq.commit([token])
        if logprobs is not None:
            logprobs += token_logprobs(logits[None], [token], params.logprobs)
        if seq.finished:
            break
        t = time.perf_counter()
        logits = p.forward(seq.tokens[-1:])[-1]
        stats.verify_s += time.perf_counter() - t

    stats.new_tokens = len(seq.generated)
    stats.target_forwards = p.forwards
    stats.wall_s = time.perf_counter() - start
    return GenerationResult(seq.generated, seq.text(), seq.finish_reason, stats, logprobs=logprobs)
