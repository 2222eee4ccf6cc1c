"""The search's one door to the models: a batch of prompts -> THE engine of the process
(`engine.LLMEngine`, shared with every other tree in flight) -> texts, or, with an `Endpoint`
instead, concurrent requests to an OpenAI-compatible
server (`search.remote`): the same seeds, prompts and budgets, so the same tree where the server
samples as we do.

The search hands over a whole level at once (all thought generations, then all evaluations), so
the scheduler sees every branch of the level. The method is a name; the search never knows which.
Each call's timeline trace and counts are recorded as a `Call` for the tree's report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from seedtree.decoding import SamplingParams
from seedtree.decoding.result import GenerationResult
from seedtree.engine import METHODS, LLMEngine, Request, get_method, sample_seed
from seedtree.engine.reads import ReadCache
from seedtree.errors import SeedtreeError
from seedtree.search import remote
from seedtree.search.logprob import TokenIds, label_probabilities, prefixes_to_read
from seedtree.search.remote import Endpoint
from seedtree.search.tree import Call
from seedtree.tasks.base import Prompt

SEARCH_METHODS = METHODS  # every registered method


class Stopped(Exception):
    """A tree stopped before it finished (its run was interrupted)."""


@dataclass(frozen=True)
class EngineConfig:
    method: str = "seed-batched"
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    sampling: str = "coupled"  # T > 0: "coupled" (every method builds AR's tree) | "speculative"
    max_new_tokens: int | None = None  # caps every prompt's own budget when set


class Engine:
    def __init__(
        self,
        engine: LLMEngine | None,
        config: EngineConfig,
        progress: Callable[[Call], None] | None = None,
        endpoint: Endpoint | None = None,
        stop: threading.Event | None = None,
    ):
        """`progress(call)`: told after every engine call (a level's generation, evaluation).
        Exactly one of `engine` (THE engine of this process: its method must be the config's;
        other trees may share it) and `endpoint` (an OpenAI-compatible server; the method and
        speculation are then the server's, `config.method` unused)."""
        get_method(config.method)
        if (engine is None) == (endpoint is None):
            raise SeedtreeError(
                "the search needs either a model engine or an OpenAI endpoint: pass exactly one"
            )
        if engine is not None and engine.method.name != config.method:
            raise SeedtreeError(
                f"the engine runs '{engine.method.name}' but the search asks for "
                f"'{config.method}': build the engine with that method"
            )
        if endpoint is not None and endpoint.chat is None:
            endpoint = remote.connect(endpoint)
        self.progress, self.stop = progress, stop
        self.engine, self.config, self.endpoint = engine, config, endpoint
        self.chat = endpoint.chat if endpoint is not None else engine.chat_template
        self.calls: list[Call] = []
        self._encoded: dict[str, list[int]] = {}
        self._reads = ReadCache()  # this tree's value prompts' common start (logprob values)

    @property
    def method(self) -> str:
        """The method trees and records name: the config's, or "openai" on an endpoint."""
        return remote.METHOD if self.endpoint is not None else self.config.method

    def _params(self, prompt: Prompt, seed: int) -> SamplingParams:
        cap = self.config.max_new_tokens
        tokens = prompt.max_new_tokens if cap is None else min(cap, prompt.max_new_tokens)
        return SamplingParams(
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            sampling=self.config.sampling,
            max_new_tokens=tokens,
            stop=prompt.stop,
            seed=seed,
        )

    def _encode(self, text: str) -> list[int]:
        if text not in self._encoded:
            self._encoded[text] = self.engine.encode(text)  # the engine's chat rule
        return self._encoded[text]

    def run(
        self, prompts: list[Prompt], n: int = 1, phase: str = "", level: int = 0
    ) -> list[list[GenerationResult]]:
        """n results per prompt, prompts in order. Sample j of prompt i of call c is seeded by a
        hash of (seed, c, i, j): the tree is a function of (seed, problem, settings), the same
        for every method (coupled sampling makes their tokens equal)."""
        if self.stop is not None and self.stop.is_set():
            raise Stopped("the run stopped this tree")
        call = len(self.calls)
        jobs = [
            (p.text, self._params(p, sample_seed(self.config.seed, call, i, j)))
            for i, p in enumerate(prompts)
            for j in range(n)
        ]
        generate = self._run_local if self.endpoint is None else self._run_remote
        results, record = generate(jobs, phase, level)
        self.calls.append(record)
        if self.progress is not None:
            self.progress(record)
        return [results[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _run_local(self, jobs, phase: str, level: int) -> tuple[list[GenerationResult], Call]:
        requests = [Request(self._encode(text), params) for text, params in jobs]
        start = time.perf_counter()
        results, trace = self.engine.generate(requests)  # other trees' requests may join it
        wall = time.perf_counter() - start
        copies = [(q, r) for q, r in zip(requests, results, strict=True) if r.stats.copied]
        return results, Call(
            phase,
            level,
            len(requests),
            sum(len(r.token_ids) for r in results),
            wall,
            trace.to_dict(),
            target_forwards=self._target_forwards(results, trace),
            drafted=sum(r.stats.drafted for r in results),
            accepted=sum(r.stats.accepted for r in results),
            prompt_ids=[r.prompt_ids for r in requests],
            output_ids=[r.token_ids for r in results],
            rounds=sum(r.stats.rounds for r in results),
            prompt_tokens=sum(len(r.prompt_ids) for r in requests),
            cached_tokens=sum(r.stats.cached_tokens for r in results),
            seeds=[r.params.seed for r in requests],
            lookup_drafted=sum(r.stats.lookup_drafted for r in results),
            lookup_accepted=sum(r.stats.lookup_accepted for r in results),
            copied_tokens=sum(len(r.token_ids) for _, r in copies),
            copied_prompt_tokens=sum(len(q.prompt_ids) for q, _ in copies),
        )

    def _target_forwards(self, results: list[GenerationResult], trace) -> int:
        """Target forwards of a call: on the batched step engine, its verifications (one
        forward each, shared with whatever else ran in it); elsewhere each request's own."""
        if self.engine.method.schedule == "batched":
            return len(trace.of_kind("verify"))
        return sum(r.stats.target_forwards for r in results)

    def _run_remote(self, jobs, phase: str, level: int) -> tuple[list[GenerationResult], Call]:
        """Every job as its own concurrent request. No token ids (no tokenizer here): counts
        from the server's usage, speculative stats summed over the requests (our server's
        per-choice `speculative` field; zero from other servers)."""
        start = time.perf_counter()
        results, trace = remote.generate(self.endpoint, jobs)
        wall = time.perf_counter() - start
        stats = [r.stats for r in results]
        return results, Call(
            phase,
            level,
            len(jobs),
            sum(s.new_tokens for s in stats),
            wall,
            trace.to_dict(),
            target_forwards=sum(s.target_forwards for s in stats),
            drafted=sum(s.drafted for s in stats),
            accepted=sum(s.accepted for s in stats),
            rounds=sum(s.rounds for s in stats),
            prompt_tokens=sum(s.prompt_tokens for s in stats),
            cached_tokens=sum(s.cached_tokens for s in stats),
            seeds=[params.seed for _, params in jobs],
        )

    def ask(self, prompts: list[Prompt], n: int) -> list[list[str]]:
        """The task's `Ask`: texts only (used by `Task.finish`)."""
        return [[r.text for r in rs] for rs in self.run(prompts, n, phase="finish", level=-1)]

    # -- values from the target's probabilities (`--evaluation logprob`) ----------------------
    def score(self, prompts: list[Prompt], labels: list[str], level: int = 0) -> list[dict]:
        """For each prompt, each label's probability as the answer under the target p
        (`search.logprob`'s rules): the prompts (+ label tokens) read in one batched forward
        after this tree's cached common start (`engine.reads`), log-softmax in float64, no
        decoding, so the same for every method. Recorded as an "evaluate" call."""
        if self.endpoint is not None:
            raise SeedtreeError(
                "--evaluation logprob reads the target's logits: it needs local models, not "
                "--backend openai (use --evaluation value)"
            )
        label_ids = self._label_ids(labels)
        reads = prefixes_to_read(label_ids)
        start = time.perf_counter()
        encoded = [self._encode(prompt.text) for prompt in prompts]
        prompt_ids = [ids + list(prefix) for ids in encoded for prefix in reads]
        tails = [(ids + list(prefix), len(prefix) + 1) for ids in encoded for prefix in reads]
        done = self.engine.tail_logprobs(tails, self._reads).result()
        logps_all = iter(done.logprobs)  # one read per prompt and prefix
        out = []
        for _ in encoded:
            logps = {}  # prefix -> log-probs [V] after prompt + prefix[:i]
            for prefix in reads:
                logp = next(logps_all)  # [len(prefix) + 1, V]
                for i in range(len(prefix) + 1):
                    logps[prefix[:i]] = logp[i]
            out.append(label_probabilities(label_ids, lambda p, t, lp=logps: float(lp[p][t])))
        self.calls.append(
            Call(
                "evaluate",
                level,
                len(prompt_ids),
                0,
                time.perf_counter() - start,
                {},
                target_forwards=done.forwards,
                prompt_ids=prompt_ids,
                prompt_tokens=sum(map(len, prompt_ids)),
                cached_tokens=sum(map(len, prompt_ids)) - done.fed,  # the tree's cached start
            )
        )
        if self.progress is not None:
            self.progress(self.calls[-1])
        return out

    def _label_ids(self, labels: list[str]) -> dict[str, TokenIds]:
        label_ids = {
            label: tuple(self.engine.pair.tokenizer(label, add_special_tokens=False)["input_ids"])
            for label in labels
        }
        if not all(label_ids.values()) or len(set(label_ids.values())) < len(label_ids):
            raise SeedtreeError(
                f"value labels {labels} do not tokenize to distinct non-empty token sequences: "
                "give the task other labels"
            )
        return label_ids
