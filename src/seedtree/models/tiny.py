"""Tiny randomly initialised draft/target pairs with a character tokenizer, built in memory.

For tests and smoke runs: no download, milliseconds per forward, float64 for exact comparisons.
The draft q is the target p with noise added to its weights, so the two agree often but not
always, which exercises both acceptance and rejection.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from seedtree.models.loader import ModelPair

SPECIALS = ["<pad>", "<eos>", "<unk>"]
CHARS = string.ascii_lowercase + string.digits + " .,?!:+-*=$#\n"


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(CHARS))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_model(
    vocab_size: int,
    seed: int,
    dtype: torch.dtype,
    init_std: float,
    layers: int = 2,
    context: int = 512,
) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        initializer_range=init_std,
        tie_word_embeddings=False,
        eos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).to(dtype).eval()


def tiny_pair(
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    init_std: float = 0.3,
    draft_noise: float = 0.1,
    context: int = 512,
    device: str = "cpu",
) -> ModelPair:
    """A tiny pair; `draft_noise` is the relative weight noise that makes q differ from p."""
    tokenizer = char_tokenizer()
    target = tiny_model(len(tokenizer), seed, dtype, init_std, context=context)
    draft = tiny_model(len(tokenizer), seed, dtype, init_std, context=context)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in draft.parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float64).to(dtype)
            param.add_(draft_noise * param.abs().mean() * noise)
    pair = ModelPair(draft=draft, target=target, tokenizer=tokenizer, name=f"tiny-{seed}")
    return pair.to(device) if device != "cpu" else pair
