"""Decoding one request: sampling rules, AR and speculative decoding (SD)."""

from seedtree.decoding.ar import generate_ar
from seedtree.decoding.params import SamplingParams, SpecConfig
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sd import generate_sd

METHODS = ("ar", "sd")

__all__ = [
    "METHODS",
    "DecodeStats",
    "GenerationResult",
    "SamplingParams",
    "SpecConfig",
    "generate_ar",
    "generate_sd",
]
