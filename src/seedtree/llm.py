"""The public entry point, shaped like vLLM: `LLM(...).generate(prompts, SamplingParams(...))`.

from seedtree import LLM, SamplingParams
llm = LLM("qwen2.5-coder", dtype="bfloat16")
[out] = llm.generate(["Q: 2+3=?"], SamplingParams(max_new_tokens=32), method="sd")
"""

from __future__ import annotations

from dataclasses import dataclass

from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.engine import ManyResult, PrefixCache, expand_requests, generate_many, get_method
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair, check_device, encode_prompt, load_pair
from seedtree.models.registry import DEFAULT_PAIR
from seedtree.validate import check_generate_args, check_optional_str, check_size_mb


class LLM:
    def __init__(
        self,
        pair: str | None = None,
        *,
        draft: str | None = None,
        target: str | None = None,
        dtype: str = "float32",
        draft_dtype: str | None = "int8",
        models: ModelPair | None = None,
        progress: bool = True,
        cache_mb: float = 1024.0,
        device: str = "cpu",
    ) -> None:
        for name, value in (("pair", pair), ("draft", draft), ("target", target)):
            check_optional_str(name, value)
        check_optional_str("dtype", dtype)
        check_optional_str("draft_dtype", draft_dtype)
        check_device(device)
        check_size_mb("cache_mb", cache_mb)
        self.last_run: ManyResult | None = None  # the trace and stats of the last generate()
        self.models = models or load_pair(
            pair, draft, target, dtype=dtype, draft_dtype=draft_dtype, progress=progress
        )
        if device != "cpu":
            self.models.to(device)
        self.prefix_cache = PrefixCache(cache_mb)  # KV of prompt prefixes, across calls

    @property
    def tokenizer(self):
        return self.models.tokenizer

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        """Prompt text -> token ids, through the chat template when `chat` is set."""
        return encode_prompt(self.models, prompt, chat)

    def generate(
        self,
        prompts: str | list[str],
        params: SamplingParams | None = None,
        *,
        method: str = "sd",
        spec: SpecConfig | None = None,
        chat: bool = False,
    ) -> list[GenerationResult]:
        """`params.n` results per prompt, in prompt order, all as one run of `method` (any
        registered method; its trace and stats are kept in `self.last_run`)."""
        check_generate_args(prompts, params, spec, chat, one_allowed=True)
        prompts = [prompts] if isinstance(prompts, str) else prompts
        return self.generate_many(prompts, params, method=method, spec=spec, chat=chat).results

    def generate_many(
        self,
        prompts: list[str],
        params: SamplingParams | None = None,
        *,
        method: str = "seed-batched",
        spec: SpecConfig | None = None,
        chat: bool = False,
        cancelled: set[int] | None = None,
    ) -> ManyResult:
        """All prompts (x params.n samples) as one many-request run; returns the `ManyResult`
        (results in prompt order, the timeline trace, run stats), also kept in `last_run`."""
        check_generate_args(prompts, params, spec, chat, one_allowed=False)
        get_method(method)
        params = params or SamplingParams()
        prompts = list(prompts)
        if not prompts:
            raise SeedtreeError("no prompts: pass at least one prompt")
        ids = [self.encode(p, chat=chat) for p in prompts]
        self.last_run = generate_many(
            self.models,
            expand_requests(ids, params),
            method,
            spec,
            cancelled=cancelled,
            prefix_cache=self.prefix_cache,
        )
        for i, result in enumerate(self.last_run.results):
            result.prompt = prompts[i // params.n]
        return self.last_run


@dataclass(frozen=True)
class ModelSettings:
    """What an `LLM` loads, as plain data: the CLI builds one from its model options, and a Ray
    replica gets one (never the models) and loads its own pair with the same `load`."""

    pair: str | None = None
    draft: str | None = None
    target: str | None = None
    dtype: str = "float32"
    draft_dtype: str | None = "int8"
    device: str = "cpu"

    def load(self, progress: bool = True) -> LLM:
        return LLM(
            self.pair,
            draft=self.draft,
            target=self.target,
            dtype=self.dtype,
            draft_dtype=self.draft_dtype,
            progress=progress,
            device=self.device,
        )

    def label(self) -> str:
        """The pair's name as `load_pair` gives it, known before it loads."""
        return f"{self.draft} -> {self.target}" if self.draft else (self.pair or DEFAULT_PAIR)
