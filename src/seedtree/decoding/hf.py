"""The peer baseline: Hugging Face assisted generation (`target.generate(...,
assistant_model=draft)`), one request at a time, as a user of transformers would run it.

Its output tokens go through our `Sequence.commit`, so eos, stop strings and the token budget end
it at the same token as every other engine (HF's own stop check runs on the text as well).
"""

from __future__ import annotations

import time

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from seedtree.decoding.params import SamplingParams
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.decoding.sampling import Sampler
from seedtree.decoding.sequence import Sequence
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair


class _StopStrings:
    """A transformers stopping criterion: stop once the generated text holds a stop string.
    (HF's own `stop_strings` fails inside assisted generation: the assistant has no tokenizer.)"""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_len: int) -> None:
        self.tokenizer, self.stop, self.prompt_len = tokenizer, stop, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        done = any(s in text for s in self.stop)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)


class _Coupled:
    """A transformers logits processor for coupled sampling: greedy decoding then picks our
    coupled sample x_t (`Sampler.token`) at every position, so assisted generation emits the
    tokens AR emits with the same seed. It returns 0 at x_t and -inf elsewhere: the choice is
    made in float64 once, never re-rounded by transformers' float32 logits."""

    def __init__(self, sampler: Sampler, prompt_len: int, vocab: int) -> None:
        self.sampler, self.prompt_len, self.vocab = sampler, prompt_len, vocab

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))  # [1, V']
        position = input_ids.shape[1] - self.prompt_len
        out[0, self.sampler.token(scores[0, : self.vocab].cpu(), position)] = 0.0
        return out


def generate_hf_assisted(
    pair: ModelPair, prompt_ids: list[int], params: SamplingParams
) -> GenerationResult:
    if params.logprobs is not None:
        raise SeedtreeError(
            "hf-assisted does not report logprobs: use another method or leave "
            "SamplingParams.logprobs at None"
        )
    start = time.perf_counter()
    seq = Sequence(prompt_ids, params, pair.tokenizer, pair.eos_token_ids, pair.max_context)
    if params.seed is not None:
        torch.manual_seed(params.seed)
    ids = torch.tensor([prompt_ids], device=pair.device)  # [1, T]
    sampling: dict = {"do_sample": False}
    if not params.greedy and params.sampling == "coupled":  # greedy on the coupled choice
        coupled = _Coupled(Sampler(params), len(prompt_ids), pair.vocab_size)
        sampling["logits_processor"] = LogitsProcessorList([coupled])
    elif not params.greedy:
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
    eos = None if params.ignore_eos else list(pair.eos_token_ids)
    stopping = None
    if params.stop:
        stopping = StoppingCriteriaList(
            [_StopStrings(pair.tokenizer, params.stop, len(prompt_ids))]
        )
    forwards = [0]  # transformers does not count its target forwards: a hook does

    def count(module, args) -> None:  # returns None: the inputs pass unchanged
        forwards[0] += 1

    hook = pair.target.register_forward_pre_hook(count)
    try:
        with torch.inference_mode():
            out = pair.target.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                assistant_model=pair.draft,
                max_new_tokens=seq.max_len - len(prompt_ids),
                eos_token_id=eos,
                pad_token_id=eos[0] if eos else pair.tokenizer.pad_token_id,
                stopping_criteria=stopping,
                top_k=None,
                **sampling,
            )  # [1, T + new]
    finally:
        hook.remove()
    for token in out[0, len(prompt_ids) :].tolist():
        seq.commit([token])
        if seq.finished:
            break
    if not seq.finished:  # HF stopped on its own rule before ours: count it as a stop
        seq.finish_reason = "stop"
    stats = DecodeStats(
        method="hf-assisted", new_tokens=len(seq.generated), target_forwards=forwards[0]
    )
    stats.wall_s = time.perf_counter() - start
    return GenerationResult(seq.generated, seq.text(), seq.finish_reason, stats)
