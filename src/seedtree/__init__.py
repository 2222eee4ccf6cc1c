"""seedtree: reasoning trees made fast with scheduled speculative decoding.

SEED: Wang et al., arXiv 2406.18200 (COLING 2025).
"""

from importlib import import_module

from seedtree.errors import SeedtreeError

__version__ = "0.1.0"

# Imported on first use (PEP 562), so `import seedtree.cli` stays light until the command runs
# and a Ctrl-C while torch loads is handled like any other.
_LAZY = {
    "GenerationResult": "seedtree.decoding",
    "LLM": "seedtree.llm",
    "LLMEngine": "seedtree.engine",
    "ModelPair": "seedtree.models",
    "SamplingParams": "seedtree.decoding",
    "SpecConfig": "seedtree.decoding",
    "load_pair": "seedtree.models",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seedtree' has no attribute '{name}'")


__all__ = [
    "LLM",
    "LLMEngine",
    "GenerationResult",
    "ModelPair",
    "SamplingParams",
    "SeedtreeError",
    "SpecConfig",
    "load_pair",
]
