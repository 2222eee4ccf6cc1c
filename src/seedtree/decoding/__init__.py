"""Decoding one request: sampling rules, AR, speculative decoding (SD) and multi-candidate SD."""

from seedtree.decoding.ar import generate_ar
from seedtree.decoding.mcsd import generate_mcsd
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sd import generate_sd

ENGINES = {
    "ar": lambda pair, ids, params, spec: generate_ar(pair, ids, params),
    "sd": generate_sd,
    "mcsd": generate_mcsd,
}
METHODS = tuple(ENGINES)

__all__ = [
    "METHODS",
    "ENGINES",
    "DecodeStats",
    "GenerationResult",
    "SamplingParams",
    "SpecConfig",
    "generate_ar",
    "generate_mcsd",
    "generate_sd",
]
