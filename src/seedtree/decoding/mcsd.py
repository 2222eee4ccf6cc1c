"""Multi-candidate speculative decoding (MCSD; Yang et al., arXiv 2401.06706): the draft q grows
a token tree level by level (one draft forward per level), the target p scores the whole tree in
ONE forward with a tree attention mask, and the verification walk keeps p's distribution.

Cache invariant at the start of a round is SD's: the target's cache holds every committed token
but the pending one; the draft's holds a prefix of the committed tokens. After a round each cache
holds that prefix plus tree nodes; both are compacted to the prefix plus the accepted path.
"""

from __future__ import annotations

from seedtree.decoding.branch import Branch, Request
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair


def generate_mcsd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    spec = spec or SpecConfig()
    if len(prompt_ids) + 1 + spec.tree_nodes > pair.max_context:
        raise SeedtreeError(
            f"k_config {','.join(map(str, spec.k_config))} drafts {spec.tree_nodes} tree nodes "
            f"per round but the prompt leaves {pair.max_context - len(prompt_ids) - 1} positions "
            f"of the {pair.max_context}-token context: use a smaller k_config"
        )
    branch = Branch(0, pair, Request(prompt_ids, params), spec.k_config, spec, method="mcsd")
    # 1) prefill both caches with the prompt minus its last token (the pending token)
    branch.prefill()
    while not branch.done:
        branch.draft()  # 2) draft the token tree with q, one forward per level
        branch.verify()  # 3) one target forward over the tree, walk, compact both caches
    return branch.result()
