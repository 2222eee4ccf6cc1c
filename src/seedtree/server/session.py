"""One HTTP request's run on the engine loop: its prompts encoded, its n choices per prompt
submitted as engine requests, their outputs awaited (asyncio) and turned into text.

    Model       what the HTTP side knows of the models: tokenizers of its own (copies, so the
                event loop never shares the engine thread's; prompts are encoded on a thread of
                their own, off the event loop), the context, the checks
    Completion  one request: `start()` submits every choice or none; `events()` yields
                (choice index, RequestOutput) as the engine thread delivers them; `close()`
                aborts whatever has not finished (client gone, error, shutdown)
    TextStream  a choice's text as it grows: never sends what a stop string may still cut
    LogprobStream  a choice's logprobs (when asked) in the response shape, piece by piece
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from seedtree.decoding.params import SamplingParams
from seedtree.decoding.result import TokenLogprob
from seedtree.decoding.sd import check_tree_fits
from seedtree.engine import RequestOutput, expand_requests, get_method
from seedtree.engine.step import check_prompt
from seedtree.errors import SeedtreeError
from seedtree.models.loader import ModelPair
from seedtree.server.config import DEFAULT_COMPLETION_TOKENS, ServerConfig
from seedtree.server.loop import EngineLoop, Job, QueueFull, ShuttingDown
from seedtree.server.protocol import (
    ApiError,
    ApiRequest,
    bad,
    chat_logprobs,
    completion_logprobs,
)

RETRY_AFTER_S = "1"


class Model:
    def __init__(self, pair: ModelPair, config: ServerConfig) -> None:
        self.name, self.config = config.model, config
        self.tokenizer = copy.deepcopy(pair.tokenizer)  # the event loop's own (decoding)
        # prompts are encoded on one thread of their own, with a tokenizer of its own: a long
        # prompt takes seconds, and the event loop (health checks, streams) must not wait
        self._encoder = copy.deepcopy(pair.tokenizer)
        self._encoding = ThreadPoolExecutor(1, thread_name_prefix="seedtree-encode")
        self.pair = pair
        self.max_model_len = min(config.max_model_len or pair.max_context, pair.max_context)
        self.tree = get_method(config.method).draft == "tree"  # drafts token trees
        self._token_text: dict[int, str] = {}  # token id -> its string (logprobs), at most V

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token_text(self, token_id: int) -> str:
        """One token decoded alone, special tokens included (the `token` of a logprob)."""
        if token_id not in self._token_text:
            self._token_text[token_id] = self.tokenizer.decode([token_id])
        return self._token_text[token_id]

    async def encode_off_loop(self, req: ApiRequest) -> list[list[int]]:
        """`encode` on the encoding thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._encoding, self.encode, req)

    def encode(self, req: ApiRequest) -> list[list[int]]:
        """Every prompt's token ids (one for a chat), checked against the context."""
        param = "messages" if req.chat else "prompt"
        ids = [self._chat_ids(req)] if req.chat else [self._ids(p) for p in req.prompts]
        for prompt in ids:
            try:
                check_prompt(self.pair, prompt)
                if self.tree:
                    check_tree_fits(self.pair, prompt, self.config.spec)
            except SeedtreeError as exc:
                raise bad(param, str(exc)) from None
            if len(prompt) >= self.max_model_len:
                raise bad(
                    param,
                    f"the prompt has {len(prompt)} tokens but this server's max model length is "
                    f"{self.max_model_len}: shorten it",
                )
        return ids

    def _ids(self, prompt: str | tuple[int, ...]) -> list[int]:
        if isinstance(prompt, tuple):
            return list(prompt)
        return [int(i) for i in self._encoder(prompt, add_special_tokens=False)["input_ids"]]

    def _chat_ids(self, req: ApiRequest) -> list[int]:
        """Through the model's chat template; a model without one (the tiny test pairs) reads
        `role: content` lines ending in `assistant:`."""
        tok, messages = self._encoder, [dict(m) for m in req.messages]
        if not getattr(tok, "chat_template", None):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return self._ids(text)
        try:
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        except Exception as exc:  # the template's own checks (e.g. roles that must alternate)
            raise bad("messages", f"the chat template refused the messages: {exc}") from None
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        return [int(i) for i in ids]

    def params(self, req: ApiRequest, prompts: list[list[int]]) -> SamplingParams:
        """The request's sampling, its max_tokens checked against the context."""
        longest = max(len(p) for p in prompts)
        room = self.max_model_len - longest
        max_tokens = req.max_tokens
        if max_tokens is None:
            max_tokens = room if req.chat else min(DEFAULT_COMPLETION_TOKENS, room)
        elif max_tokens > room:
            raise bad(
                req.max_tokens_param,
                f"{req.max_tokens_param} is {max_tokens} but the prompt's {longest} tokens leave "
                f"{room} of the {self.max_model_len}-token context: ask for at most {room}",
            )
        try:
            return SamplingParams(
                temperature=req.temperature,
                top_p=req.top_p,
                max_new_tokens=max_tokens,
                stop=req.stop,
                ignore_eos=req.ignore_eos,
                seed=req.seed,
                n=req.n,
                sampling=req.sampling,
                logprobs=req.logprobs,
            )
        except SeedtreeError as exc:
            raise bad(None, str(exc)) from None


class Completion:
    def __init__(
        self, model: Model, loop: EngineLoop, req: ApiRequest, prompt_ids: list[list[int]]
    ) -> None:
        """`prompt_ids`: `model.encode(req)`."""
        self.req, self.loop = req, loop
        self.prompt_ids = prompt_ids
        params = model.params(req, self.prompt_ids)
        self.requests = expand_requests(self.prompt_ids, params)  # prompt-major, n per prompt
        if len(self.requests) > loop.capacity:
            raise bad(
                "n",
                f"{len(self.requests)} choices exceed this server's {loop.capacity} "
                "(--max-queued plus running slots): ask for fewer",
            )
        self.id = f"{'chatcmpl' if req.chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.open = set(range(len(self.requests)))
        self._queue: asyncio.Queue = asyncio.Queue()  # at most one item per choice per round

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompt_ids)

    def _rid(self, i: int) -> str:
        return f"{self.id}-{i}"

    def start(self) -> None:
        """Submit every choice (or none: 429 when the server is full, 503 when stopping)."""
        aio = asyncio.get_running_loop()
        jobs = [
            Job(self._rid(i), r.prompt_ids, r.params, self._sink(aio, i))
            for i, r in enumerate(self.requests)
        ]
        try:
            self.loop.submit_jobs(jobs)
        except QueueFull as exc:
            headers = {"Retry-After": RETRY_AFTER_S}
            raise ApiError(429, str(exc), None, "rate_limit_error", "queue_full", headers) from None
        except ShuttingDown as exc:
            headers = {"Retry-After": RETRY_AFTER_S}
            raise ApiError(503, str(exc), None, "server_error", "shutting_down", headers) from None

    def _sink(self, aio: asyncio.AbstractEventLoop, i: int):
        def sink(out: RequestOutput | BaseException) -> None:  # runs on the engine thread
            try:
                aio.call_soon_threadsafe(self._queue.put_nowait, (i, out))
            except RuntimeError:  # the event loop is closed: nobody is waiting any more
                pass

        return sink

    async def events(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        """(choice, output) until every choice has finished; a failed choice raises ApiError."""
        while self.open:
            i, out = await self._queue.get()
            if isinstance(out, BaseException):
                self.open.discard(i)
                raise _engine_error(out)
            if out.finished:
                self.open.discard(i)
                _check_result(out)
            yield i, out

    def close(self) -> None:
        """Abort every choice that has not finished (their KV is freed at the next step)."""
        for i in sorted(self.open):
            self.loop.abort(self._rid(i))
        self.open.clear()


def _engine_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ShuttingDown):
        return ApiError(503, str(exc), None, "server_error", "shutting_down")
    if isinstance(exc, SeedtreeError):
        return bad(None, str(exc))
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return ApiError(500, f"the engine failed: {message}", None, "server_error")


def _check_result(out: RequestOutput) -> None:
    result = out.result
    if result.finish_reason == "error":
        raise ApiError(500, f"decoding failed: {result.error}", None, "server_error")
    if result.finish_reason == "cancelled":  # not by us: the server is stopping
        raise ApiError(503, "the server shut down before this request finished", None,
                       "server_error", "shutting_down")  # fmt: skip


class TextStream:
    """A choice's streamed text. The text of a token prefix is decoded whole each time; the last
    (longest stop - 1) characters, and a trailing incomplete character, wait until the choice
    has finished, so what was sent is always a prefix of the final text."""

    def __init__(self, model: Model, stop: tuple[str, ...]) -> None:
        self.model = model
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.sent = ""

    def update(self, token_ids: list[int]) -> str:
        text = self.model.decode(token_ids)
        safe = text[: len(text) - self.hold] if self.hold else text
        safe = safe.rstrip("\ufffd")
        if len(safe) <= len(self.sent) or not safe.startswith(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta

    def final(self, text: str) -> str:
        delta = text[len(self.sent) :] if text.startswith(self.sent) else ""
        self.sent = text
        return delta


class LogprobStream:
    """A choice's logprobs in its endpoint's shape (None when the request did not ask). A
    stream's chunk carries the tokens committed since the previous chunk of the choice (their
    text may still be held back by `TextStream`), its last chunk the rest: the pieces add up
    to the whole answer's logprobs."""

    def __init__(self, model: Model, req: ApiRequest) -> None:
        self.model, self.chat = model, req.chat
        self.on = req.logprobs is not None
        self.pending: list[TokenLogprob] = []
        self.offset = 0  # characters of the token strings sent (completions' text_offset)

    def add(self, entries: list[TokenLogprob] | None) -> None:
        if self.on:
            self.pending += entries or []

    def take(self) -> dict | None:
        """The pending tokens' logprobs in the response shape; they are then sent."""
        if not self.on:
            return None
        entries, self.pending = self.pending, []
        if self.chat:
            return chat_logprobs(entries, self.model.token_text)
        body = completion_logprobs(entries, self.model.token_text, self.offset)
        self.offset += sum(len(t) for t in body["tokens"])
        return body
