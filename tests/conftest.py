import pytest
import torch

from seedtree.models.tiny import tiny_pair

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pair():
    """Tiny float64 target p and draft q (q = p with weight noise), character tokenizer."""
    return tiny_pair(seed=0)


def encode(pair, text: str) -> list[int]:
    return pair.tokenizer(text, add_special_tokens=False)["input_ids"]
