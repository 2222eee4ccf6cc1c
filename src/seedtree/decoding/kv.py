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
        x = torch.tensor([ids], dtype=torch.long, device=self.device)  # [1, T]
        out = self.model(input_ids=x, cache=self.cache, use_cache=True, logits_to_keep=keep)
        self.length += len(ids)
        self.forwards += 1
        return out.logits[0, :, : self.vocab_size].float()  # [keep, V]

    @property
    def device(self) -> torch.device:
        return self.model.device

    def keep(self, start: int, indices: list[int]) -> None:
        """Compact the cache: keep the first `start` entries, then only `indices` (absolute
        positions >= start, ascending) — the accepted path of a token tree. A contiguous run
        right after `start` (a chain's accepted prefix) is a plain crop."""
        if indices == list(range(start, start + len(indices))):
            self.crop(start + len(indices))
            return
        idx = torch.tensor(list(range(start)) + indices, dtype=torch.long, device=self.device)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(-2, idx)
            layer.values = layer.values.index_select(-2, idx)
        self.length = len(idx)

    def copy_from(self, other: KVSequence) -> None:
        """Shared-prompt reuse: take a copy of another sequence's cache (same model)."""
        self.cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(other.cache.layers):
            if layer.is_initialized:
                self.cache.update(layer.keys.clone(), layer.values.clone(), i)
        self.length = other.length

    def append_kv(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Append per-layer [1, H, n, D] entries computed elsewhere (a batched forward)."""
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            self.cache.update(k, v, i)
        self.length += keys[0].shape[-2]

    def reset(self) -> None:
        """Free the cache (a finished or aborted request)."""
        self.cache = DynamicCache(config=self.model.config)
        self.length = 0

    def crop(self, length: int) -> None:
        """Keep the first `length` cached tokens: KV rollback after a rejection."""
        drop = self.length - length
        if drop > 0:
            self.cache.crop(-drop)  # transformers 5: a negative count of tokens to remove
            self.length = length
