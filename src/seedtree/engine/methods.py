"""The one method registry: a method's name -> how it schedules and how it drafts.

Read by the CLI, `LLM`, the search and the benchmarks; nothing else compares method names.

  schedule   reference  the target alone, one token per forward, request after request (AR)
             serial     the speculative core, one request at a time
             batched    the step engine: every running branch drafts (one batched draft forward
                        per draft step) and is verified in ONE target forward per round;
                        requests join and leave between rounds (continuous batching)
             threads    SEED as in the paper, on the step engine: each round drafter threads
                        (at most 8) draft every branch and ONE verifier takes the drafts one at a
                        time, first come first served (`scheduling.fcfs`)
             hf         transformers' assisted generation, request after request (a peer)
  draft      none (plain decoding) | chain (gamma tokens) | tree (MCSD's k_config)
  prefix_cache   KV of prompt prefixes kept across requests and calls
  share_prefill  requests with the same prompt in one admission prefill once
"""

from __future__ import annotations

from dataclasses import dataclass

from seedtree.decoding.check import Scoring
from seedtree.decoding.params import SpecConfig
from seedtree.errors import SeedtreeError


@dataclass(frozen=True)
class Method:
    name: str
    schedule: str
    draft: str
    prefix_cache: bool = False
    share_prefill: bool = False
    about: str = ""

    def shape(self, spec: SpecConfig) -> tuple[int, ...]:
        """The draft tree of one round: children per depth."""
        return {"none": (), "chain": (1,) * spec.gamma, "tree": spec.k_config}[self.draft]


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ar", "reference", "none", about="target alone, request by request (reference)"),
        Method("sd", "serial", "chain", about="speculative decoding, request by request"),
        Method(
            "mcsd", "serial", "tree", about="multi-candidate SD (token tree), request by request"
        ),
        Method("batched-ar", "batched", "none", about="target alone, all requests as one batch"),
        Method(
            "batched-ar-cached",
            "batched",
            "none",
            prefix_cache=True,
            share_prefill=True,
            about="batched-ar with the prefix cache (vLLM without speculation)",
        ),
        Method("seed", "threads", "chain", share_prefill=True, about="SEED: drafter threads, FCFS"),
        Method("mcsd-seed", "threads", "tree", share_prefill=True, about="SEED with token trees"),
        Method(
            "seed-batched",
            "batched",
            "chain",
            prefix_cache=True,
            share_prefill=True,
            about="step engine: batched drafting, one verification per round, prefix cache",
        ),
        Method(
            "mcsd-batched",
            "batched",
            "tree",
            prefix_cache=True,
            share_prefill=True,
            about="seed-batched with MCSD token trees (k_config) instead of chains",
        ),
        Method("hf-assisted", "hf", "chain", about="transformers assisted generation (peer)"),
    )
}
METHODS = tuple(REGISTRY)


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise SeedtreeError(f"unknown method '{name}': choose one of {', '.join(METHODS)}")
    return REGISTRY[name]


def scoring_of(method: str, gamma: int = 4, k_config: tuple[int, ...] = (2, 1, 1)) -> Scoring:
    """How `method`'s target scores a token (for diagnosing a divergence from `ar`): its
    verification blocks (gamma + 1; adaptive speculation makes them at most that), its token
    trees, its batched rows. `hf-assisted`'s variable blocks are stood in for by gamma + 1."""
    m = get_method(method)
    batched = m.schedule == "batched"
    if m.draft == "tree":
        return Scoring(block=len(k_config) + 1, batched=batched, tree=tuple(k_config))
    return Scoring(block=gamma + 1 if m.draft == "chain" else 1, batched=batched)
