"""The FastAPI app: `create_app(llm, config)`.

    GET  /v1/models             the one served model
    POST /v1/completions        prompt (string, list, token ids), n, max_tokens, stream, ...
    POST /v1/chat/completions   messages, n, max_tokens / max_completion_tokens, stream, ...
    GET  /health                200 while admitting, 503 once shutting down
    GET  /metrics               Prometheus text

Every error is answered in the OpenAI shape `{"error": {message, type, param, code}}`. Streams
are server-sent events ending in `data: [DONE]`. A request whose client goes away is aborted
(its choices leave the engine at the next round). Each choice carries a `speculative` field:
its completion tokens, drafted, accepted, acceptance_rate, rounds, target and draft forwards,
cached prompt tokens. Asked for, each choice (each stream chunk: its new tokens) carries
`logprobs`: the target's raw log-softmax where each token was emitted, before temperature and
top-p (`protocol`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from seedtree.decoding.result import GenerationResult
from seedtree.server.config import ServerConfig
from seedtree.server.loop import EngineLoop
from seedtree.server.metrics import Metrics
from seedtree.server.protocol import (
    ApiError,
    ApiRequest,
    choice,
    chunk_choice,
    envelope,
    parse_chat,
    parse_completion,
    speculative_stats,
    usage,
)
from seedtree.server.session import Completion, LogprobStream, Model, TextStream

DISCONNECT_POLL_S = 0.5  # a non-streamed request checks this often whether its client is gone
DISCARD_BYTES = 64 << 20  # of a body over the limit, read and dropped at most this many more


def create_app(llm, config: ServerConfig) -> FastAPI:
    """An app serving `llm`'s pair (any object with `.models`, e.g. `seedtree.LLM`). The engine
    thread starts with the app (lifespan) and stops with it: in-flight requests get
    `config.drain_s` to finish."""
    model = Model(llm.models, config)
    loop = EngineLoop(llm.models, config)
    metrics = Metrics(loop)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop.start()
        yield
        await asyncio.to_thread(loop.stop)

    app = FastAPI(title="seedtree", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine_loop, app.state.model = loop, model
    _add_error_handlers(app)

    def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip(), config.api_key):
            raise ApiError(
                401, "missing or wrong API key: send Authorization: Bearer <key>", None,
                "invalid_request_error", "invalid_api_key",
            )  # fmt: skip

    @app.get("/health")
    async def health() -> Response:
        if not loop.admitting:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        authorize(request)
        card = {
            "id": model.name,
            "object": "model",
            "created": 0,
            "owned_by": "seedtree",
            "max_model_len": model.max_model_len,
            # whether /v1/chat/completions goes through the model's chat template: the search
            # on this endpoint (--backend openai) then chats exactly when it would in-process
            "chat_template": bool(getattr(model.tokenizer, "chat_template", None)),
        }
        return JSONResponse({"object": "list", "data": [card]})

    limit = int(config.max_body_mb * 2**20)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        authorize(request)
        return await _answer(request, parse_completion(await _json(request, limit)), model, loop)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        return await _answer(request, parse_chat(await _json(request, limit)), model, loop)

    return app


# -- plumbing -------------------------------------------------------------------------------------
def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return _error_response(ApiError(exc.status_code, message, None, kind))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(ApiError(400, f"invalid request: {exc.errors()[:1]}"))


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the request body is larger than this server's {limit / 2**20:g} MB limit: send "
        "less, or restart seedtree serve with a larger --max-body-mb", None,
        "invalid_request_error", "request_too_large",
    )  # fmt: skip


async def _body(request: Request, limit: int) -> bytes:
    """The body, at most `limit` bytes (else 413, before any of it is parsed). A body that is
    too large is read on and dropped (up to `DISCARD_BYTES`), so the client can read the 413."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        too_large = too_large or size > limit
        if too_large:
            chunks = []
            if size > limit + DISCARD_BYTES:
                break
        else:
            chunks.append(chunk)
    if too_large:
        raise _too_large(limit)
    return b"".join(chunks)


async def _json(request: Request, limit: int):
    raw = await _body(request, limit)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(
            400, "the request body is not valid JSON for this server: it is nested too deeply"
        ) from None


def _check_model(req: ApiRequest, model: Model) -> None:
    if req.model != model.name:
        raise ApiError(
            404, f"the model '{req.model}' does not exist: this server serves '{model.name}'",
            "model", "invalid_request_error", "model_not_found",
        )  # fmt: skip


async def _answer(request: Request, req: ApiRequest, model: Model, loop: EngineLoop) -> Response:
    _check_model(req, model)
    prompt_ids = await model.encode_off_loop(req)  # a long prompt never blocks the event loop
    run = Completion(model, loop, req, prompt_ids)
    run.start()
    if req.stream:
        events = _sse(run, model)
        return StreamingResponse(events, media_type="text/event-stream")
    try:
        return JSONResponse(await _until_done(request, _whole(run, model)))
    finally:
        run.close()


async def _until_done(request: Request, work):
    """Await `work`; if the client disconnects first, cancel it (the caller aborts)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                return {}  # nobody reads it
    finally:
        if not task.done():
            task.cancel()


async def _whole(run: Completion, model: Model) -> dict:
    """The non-streamed body: every choice once it has finished."""
    results = {}
    async for i, out in run.events():
        if out.finished:
            results[i] = out.result
    chat = run.req.chat
    choices = []
    for i, r in sorted(results.items()):
        logprobs = LogprobStream(model, run.req)
        logprobs.add(r.logprobs)
        extra = {"speculative": _speculative(r)}
        choices.append(choice(chat, i, r.text, r.finish_reason, extra, logprobs.take()))
    completion_tokens = sum(len(r.token_ids) for r in results.values())
    head = envelope(chat, False, run.id, run.created, model.name)
    return head | {"choices": choices, "usage": usage(run.prompt_tokens, completion_tokens)}


def _speculative(result: GenerationResult) -> dict:
    return speculative_stats(result.stats, len(result.token_ids))


def _event(body: dict | str) -> str:
    return f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n"


async def _sse(run: Completion, model: Model) -> AsyncIterator[str]:
    """Server-sent events: per choice its text as it grows (chat: a role delta first; with their
    logprobs when asked), a last chunk with its finish_reason and speculative stats, then usage
    when asked, then [DONE]."""
    req, chat = run.req, run.req.chat
    head = envelope(chat, True, run.id, run.created, model.name)
    if req.include_usage:
        head["usage"] = None
    streams = [TextStream(model, req.stop) for _ in run.requests]
    logprobs = [LogprobStream(model, req) for _ in run.requests]
    completion_tokens = 0
    try:
        if chat:
            opening = [chunk_choice(True, i, None, None) for i in range(len(run.requests))]
            yield _event(head | {"choices": opening})
        async for i, out in run.events():
            logprobs[i].add(out.new_logprobs)
            if out.finished:
                r = out.result
                completion_tokens += len(r.token_ids)
                text = streams[i].final(r.text)
                last = chunk_choice(chat, i, text, r.finish_reason, logprobs[i].take())
                last["speculative"] = _speculative(r)
                yield _event(head | {"choices": [last]})
            elif text := streams[i].update(out.token_ids):
                piece = chunk_choice(chat, i, text, None, logprobs[i].take())
                yield _event(head | {"choices": [piece]})
        if req.include_usage:
            total = usage(run.prompt_tokens, completion_tokens)
            yield _event(head | {"choices": [], "usage": total})
    except ApiError as exc:  # headers are sent: the error goes into the stream
        yield _event(exc.body())
    finally:
        run.close()
    yield _event("[DONE]")
