"""seedtree: reasoning trees made fast with scheduled speculative decoding.

SEED: Wang et al., arXiv 2406.18200 (COLING 2025).
"""

from seedtree.decoding import GenerationResult, SamplingParams, SpecConfig
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.models import ModelPair, load_pair

__version__ = "0.1.0"
__all__ = [
    "LLM",
    "GenerationResult",
    "ModelPair",
    "SamplingParams",
    "SeedtreeError",
    "SpecConfig",
    "load_pair",
]
