"""Speculative decoding (SD, Leviathan et al. 2023) and multi-candidate SD (MCSD, Yang et al.,
arXiv 2401.06706) draft a chain of gamma tokens per round (SD) or a token tree
(`SpecConfig.k_config`, MCSD) scored in ONE target forward with a tree mask; both run on the one
speculative core (`seedtree.decoding.speculative`) through the engine (`engine.generate_sd`).
Here: whether a request's token tree fits the context."""

from __future__ import annotations

from seedtree.decoding.params import SpecConfig
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair


def check_tree_fits(pair: ModelPair, prompt_ids: list[int], spec: SpecConfig) -> None:
    if len(prompt_ids) + 1 + spec.tree_nodes > pair.max_context:
        raise SeedtreeError(
            f"k_config {','.join(map(str, spec.k_config))} drafts {spec.tree_nodes} tree nodes "
            f"per round but the prompt leaves {pair.max_context - len(prompt_ids) - 1} positions "
            f"of the {pair.max_context}-token context: use a smaller k_config"
        )
