"""One model and the KV cache of one sequence, with every cache move explicit.

Invariant: the cache holds the keys/values of the first `length` tokens of the sequence. `forward`
appends tokens (positions continue from `length`); `crop` drops the newest entries, which is how a
rejected draft is rolled back.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel


class KVSequence:
    def __init__(self, model: PreTrainedModel, vocab_size: int) -> None:
        self.model = model
        self.vocab_size = vocab_size
        self.cache = DynamicCache(config=model.config)
        self.length = 0
        self.forwards = 0

    @torch.inference_mode()
    def forward(self, ids: list[int], keep: int = 1) -> torch.Tensor:
        """Feed `ids` after the cached prefix; return float logits [keep, V] of the last `keep`."""
        assert ids and 1 <= keep <= len(ids)
        x = torch.tensor([ids], dtype=torch.long)  # [1, T]
        out = self.model(input_ids=x, cache=self.cache, use_cache=True, logits_to_keep=keep)
        self.length += len(ids)
        self.forwards += 1
        return out.logits[0, :, : self.vocab_size].float()  # [keep, V]

    def crop(self, length: int) -> None:
        """Keep the first `length` cached tokens: KV rollback after a rejection."""
        drop = self.length - length
        if drop > 0:
            self.cache.crop(-drop)  # transformers 5: a negative count of tokens to remove
            self.length = length
