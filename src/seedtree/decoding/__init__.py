"""Decoding: sampling rules, AR, and the one speculative core (SD chains and MCSD token trees)
that every engine runs; `seedtree.engine.generate_sd` / `generate_mcsd` decode one request."""

from seedtree.decoding.ar import generate_ar
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult, TokenLogprob

__all__ = [
    "DecodeStats",
    "GenerationResult",
    "SamplingParams",
    "SpecConfig",
    "TokenLogprob",
    "generate_ar",
]
