"""The public entry point, shaped like vLLM: `LLM(...).generate(prompts, SamplingParams(...))`.

from seedtree import LLM, SamplingParams
llm = LLM("qwen2.5-coder", dtype="bfloat16")
[out] = llm.generate(["Q: 2+3=?"], SamplingParams(max_new_tokens=32), method="sd")
"""

from __future__ import annotations

from seedtree.decoding import ENGINES, SamplingParams, SpecConfig
from seedtree.decoding.result import GenerationResult
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair, encode_prompt, load_pair
from seedtree.validate import check_generate_args


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
    ) -> None:
        self.last_run = None  # the ManyResult of the last many-request generate()
        self.models = models or load_pair(
            pair, draft, target, dtype=dtype, draft_dtype=draft_dtype, progress=progress
        )

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
        """`params.n` results per prompt, in prompt order. Single-request methods ("ar", "sd",
        "mcsd") with n = 1 decode prompt by prompt; any many-request method ("batched-ar",
        "seed", "mcsd-seed", "seed-batched") or n > 1 goes through `generate_many`, whose trace
        and stats are kept in `self.last_run`."""
        from seedtree.scheduling import MANY_METHODS

        check_generate_args(prompts, params, spec, chat, one_allowed=True)
        params = params or SamplingParams()
        spec = spec or SpecConfig()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise SeedtreeError("no prompts: pass at least one prompt")
        if method not in MANY_METHODS:
            raise SeedtreeError(
                f"unknown method '{method}': choose one of {', '.join(MANY_METHODS)}"
            )
        if method not in ENGINES or params.n > 1:
            return self.generate_many(prompts, params, method=method, spec=spec, chat=chat).results
        results = []
        for prompt in prompts:
            ids = self.encode(prompt, chat=chat)
            result = ENGINES[method](self.models, ids, params, spec)
            result.prompt = prompt
            results.append(result)
        return results

    def generate_many(
        self,
        prompts: list[str],
        params: SamplingParams | None = None,
        *,
        method: str = "seed-batched",
        spec: SpecConfig | None = None,
        chat: bool = False,
        cancelled: set[int] | None = None,
    ):
        """All prompts (x params.n samples) as one many-request run; returns the `ManyResult`
        (results in prompt order, the timeline trace, run stats), also kept in `last_run`."""
        from seedtree.scheduling import expand_requests, generate_many

        check_generate_args(prompts, params, spec, chat, one_allowed=False)
        params = params or SamplingParams()
        ids = [self.encode(p, chat=chat) for p in prompts]
        self.last_run = generate_many(
            self.models, expand_requests(ids, params), method, spec, cancelled=cancelled
        )
        for i, result in enumerate(self.last_run.results):
            result.prompt = prompts[i // params.n]
        return self.last_run
