"""Decoding one request: sampling rules, AR, speculative decoding (SD) and multi-candidate SD."""

from seedtree.decoding.ar import generate_ar
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult, TokenLogprob
from seedtree.decoding.sd import generate_mcsd, generate_sd

__all__ = [
    "DecodeStats",
    "GenerationResult",
    "SamplingParams",
    "SpecConfig",
    "TokenLogprob",
    "generate_ar",
    "generate_mcsd",
    "generate_sd",
]
