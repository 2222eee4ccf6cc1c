"""The public entry point, shaped like vLLM: `LLM(...).generate(prompts, SamplingParams(...))`.

from seedtree import LLM, SamplingParams
llm = LLM("qwen2.5-coder", dtype="bfloat16")
[out] = llm.generate(["Q: 2+3=?"], SamplingParams(max_new_tokens=32), method="sd")
"""

from __future__ import annotations

from dataclasses import dataclass

from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.engine import (
    LLMEngine,
    ManyResult,
    expand_requests,
    get_method,
    run_many,
    run_off_main_thread,
)
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair, check_device, load_pair
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
        # loaded on a short-lived thread: the engine's thread is the process's one torch thread
        self.models = models or run_off_main_thread(
            lambda: load_pair(
                pair, draft, target, dtype=dtype, draft_dtype=draft_dtype, progress=progress
            )
        )
        if device != "cpu":
            self.models.to(device)
        self.cache_mb = cache_mb
        self._engine: LLMEngine | None = None

    def engine(self, method: str = "seed-batched", spec: SpecConfig | None = None) -> LLMEngine:
        """THE engine of this process (`LLMEngine`), built on first use. Another method or spec
        closes it and builds that one, which keeps its prefix cache: one engine thread at a
        time (see `engine.run_off_main_thread`)."""
        spec = spec or SpecConfig()
        current = self._engine
        if current is not None and current.method.name == method and current.spec == spec:
            return current
        cache = None
        if current is not None:
            current.close()
            cache = current.prefix_cache
        self._engine = LLMEngine(
            self.models, method, spec, cache_mb=self.cache_mb, prefix_cache=cache
        )
        return self._engine

    @property
    def prefix_cache(self):
        """KV of prompt prefixes, kept across calls (the engine's)."""
        return (self._engine or self.engine()).prefix_cache

    def close(self) -> None:
        """Stop the engine thread (it also stops with the process)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    @property
    def tokenizer(self):
        return self.models.tokenizer

    def encode(self, prompt: str, chat: bool | None = False) -> list[int]:
        """Prompt text -> token ids, through the chat template when `chat` is set (None: when
        the pair has one; the engine's one rule)."""
        return (self._engine or self.engine()).encode(prompt, chat)

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
        engine = self.engine(method, spec)
        ids = [engine.encode(p, chat=chat) for p in prompts]
        self.last_run = run_many(engine, expand_requests(ids, params), cancelled)
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
