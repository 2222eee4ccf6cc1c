"""Speculative decoding (SD, Leviathan et al. 2023) and multi-candidate SD (MCSD, Yang et al.,
arXiv 2401.06706) for one request: a branch of the one speculative core
(`seedtree.decoding.speculative`), decoded alone. SD drafts a chain of gamma tokens per round;
MCSD a token tree (`SpecConfig.k_config`) scored in ONE target forward with a tree mask."""

from __future__ import annotations

from seedtree.decoding.branch import Branch, Request
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.decoding.speculative import decode
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair


def check_tree_fits(pair: ModelPair, prompt_ids: list[int], spec: SpecConfig) -> None:
    if len(prompt_ids) + 1 + spec.tree_nodes > pair.max_context:
        raise SeedtreeError(
            f"k_config {','.join(map(str, spec.k_config))} drafts {spec.tree_nodes} tree nodes "
            f"per round but the prompt leaves {pair.max_context - len(prompt_ids) - 1} positions "
            f"of the {pair.max_context}-token context: use a smaller k_config"
        )


def generate_sd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    spec = spec or SpecConfig()
    branch = Branch(0, pair, Request(prompt_ids, params), spec, (1,) * spec.gamma, "sd")
    decode([branch])
    return branch.result()


def generate_mcsd(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams, spec: SpecConfig | None = None
) -> GenerationResult:
    spec = spec or SpecConfig()
    check_tree_fits(pair, prompt_ids, spec)
    branch = Branch(0, pair, Request(prompt_ids, params), spec, spec.k_config, "mcsd")
    decode([branch])
    return branch.result()
