"""The search on any OpenAI-compatible endpoint (`--backend openai`): an engine call's requests
go out concurrently through the official `openai` async client, one request per (prompt, sample)
with n=1 and the sample's own seed, so a server with seeded sampling (`seedtree serve`) builds
the in-process tree; the answers come back as `GenerationResult`s and the rest of the search,
tasks, reports and resume are unchanged. `Endpoint.samples_per_request="n"` sends one request per
prompt with n = its samples instead (what ToT programs written for OpenAI do): the same tree at
T=0; at T>0 the server seeds its choices itself, so the samples may differ from in-process.

    Endpoint   where and how: base URL, model, key, chat or plain completions, concurrency
    connect    checks the endpoint answers and serves the model; settles `chat` when unset
    generate   one engine call: [(prompt text, SamplingParams)] -> results (in order), trace

Retries (429, 408, 5xx, connection errors, timeouts) are the openai client's: at most
`Endpoint.retries`, honouring Retry-After. Every failure is one `SeedtreeError` line naming the
URL and model and the fix. No model or tokenizer is needed here: token ids stay empty; token
counts come from `usage`, speculative stats from our server's per-choice `speculative` field.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

from seedtree.decoding.params import SamplingParams
from seedtree.decoding.result import DecodeStats, GenerationResult
from seedtree.errors import SeedtreeError
from seedtree.scheduling.trace import Trace
from seedtree.validate import check_int, check_real

BACKENDS = ("local", "openai")
METHOD = "openai"  # the method name trees built on an endpoint carry
MAX_CONCURRENCY = 1024
SAMPLES_PER_REQUEST = ("single", "n")
INSTALL = 'pip install openai (or pip install -e ".[server]")'


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server. `chat`: send each prompt as one user message to
    /chat/completions (True) or as text to /completions (False); None = `connect` decides:
    what `seedtree serve` says of its model (chat template or not, as the in-process search
    does), else chat. At most `max_concurrency` requests in flight; each may take `timeout_s`
    and is retried at most `retries` times. `samples_per_request`: "single" (one request per
    (prompt, sample), n=1, the sample's seed) or "n" (one request per prompt, n = its samples,
    the first sample's seed; `seedtree serve` seeds choice j from (seed, j), so at T>0 the
    samples differ from the search's own per-sample seeds; at T=0 the tree is the same)."""

    base_url: str
    model: str
    api_key: str | None = None
    chat: bool | None = None
    max_concurrency: int = 16
    timeout_s: float = 600.0
    retries: int = 3
    samples_per_request: str = "single"

    def __post_init__(self) -> None:
        url = self.base_url
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise SeedtreeError(
                f"--base-url {url!r} is not an http(s) URL: give the server's address, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise SeedtreeError(
                "--backend openai needs --model NAME: the model the server serves "
                f"(GET {url.rstrip('/')}/models lists them)"
            )
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise SeedtreeError("--api-key is empty: give the server's key or leave it out")
        if self.chat not in (None, True, False):
            raise SeedtreeError(f"chat must be True, False or None, got {self.chat!r}")
        check_int("max_concurrency", self.max_concurrency, 1, MAX_CONCURRENCY)
        check_int("retries", self.retries, 0, 20)
        check_real("timeout_s", self.timeout_s)
        if self.timeout_s <= 0:
            raise SeedtreeError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.samples_per_request not in SAMPLES_PER_REQUEST:
            raise SeedtreeError(
                f"samples_per_request must be 'single' or 'n', got {self.samples_per_request!r}"
            )

    def settings(self) -> dict[str, Any]:
        """What a run folder records (the key is left out: it is a secret, not a setting)."""
        return {
            "backend": METHOD,
            "base_url": self.base_url,
            "chat": self.chat,
            "samples_per_request": self.samples_per_request,
        }


# -- the client -----------------------------------------------------------------------------------
def _openai():
    try:
        import openai
    except ImportError:
        raise SeedtreeError(f"--backend openai needs the openai package: {INSTALL}") from None
    return openai


def _client(endpoint: Endpoint):
    return _openai().AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key or "none",  # a server without a key ignores it
        max_retries=endpoint.retries,
        timeout=endpoint.timeout_s,
    )


def _run(work: Coroutine) -> Any:
    """Run `work` to the end from synchronous code, also when an event loop already runs in
    this thread (a notebook): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _detail(exc: Exception) -> str:
    """The server's own message (OpenAI error body), else the cause, on one short line."""
    body = getattr(exc, "body", None)
    text = body.get("message") if isinstance(body, dict) else None
    text = text or str(exc.__cause__ or exc)
    text = " ".join(str(text).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _error(endpoint: Endpoint, exc: Exception) -> SeedtreeError:
    """The openai client's exception as one line naming the URL, the model and the fix."""
    openai, url, model = _openai(), endpoint.base_url, endpoint.model
    detail, tries = _detail(exc), f"after {endpoint.retries} retries"
    if isinstance(exc, openai.APITimeoutError):
        return SeedtreeError(
            f"{url} did not answer within {endpoint.timeout_s:g} s {tries}: check that the "
            "server is up and not overloaded, or lower --max-concurrency"
        )
    if isinstance(exc, openai.APIConnectionError):
        return SeedtreeError(
            f"cannot reach {url} ({detail}) {tries}: start the server (e.g. seedtree serve) "
            "or fix --base-url"
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return SeedtreeError(
            f"{url} refused the API key ({exc.status_code}: {detail}): pass the server's key "
            "with --api-key or OPENAI_API_KEY"
        )
    if isinstance(exc, openai.NotFoundError):
        return SeedtreeError(
            f"{url} has no model '{model}' or no such route (404: {detail}): check --model "
            "and that --base-url ends in /v1"
        )
    if isinstance(exc, openai.RateLimitError):
        return SeedtreeError(
            f"{url} is still busy {tries} (429: {detail}): lower --max-concurrency or retry later"
        )
    if isinstance(exc, openai.APIStatusError):
        return SeedtreeError(
            f"{url} refused a request for model '{model}' ({exc.status_code}: {detail}): "
            "fix what it names"
        )
    return SeedtreeError(f"{url} failed for model '{model}': {detail}")


def _not_json(endpoint: Endpoint, route: str) -> SeedtreeError:
    """A 200 whose body is not JSON: not an OpenAI-compatible server (or a proxy's page)."""
    return SeedtreeError(
        f"{endpoint.base_url.rstrip('/')}{route} answered with a body that is not JSON: check "
        "that --base-url is an OpenAI-compatible server's address ending in /v1"
    )


# -- connect: the endpoint answers and serves the model; chat or not ---------------------------
async def _cards(endpoint: Endpoint) -> dict[str, Any] | None:
    """The served models by id (None: the server has no /models route)."""
    openai = _openai()
    async with _client(endpoint) as client:
        try:
            page = await client.models.list()
        except openai.NotFoundError:
            return None
        except openai.APIError as exc:
            raise _error(endpoint, exc) from None
        except json.JSONDecodeError:
            raise _not_json(endpoint, "/models") from None
    return {card.id: card for card in page.data}


def connect(endpoint: Endpoint) -> Endpoint:
    """Check that `endpoint` answers (key included) and serves its model; the endpoint with
    `chat` settled (when None: our server's `chat_template` flag for the model, else True)."""
    cards = _run(_cards(endpoint))
    if cards and endpoint.model not in cards:
        served = ", ".join(sorted(cards)[:10]) + (", ..." if len(cards) > 10 else "")
        raise SeedtreeError(
            f"{endpoint.base_url} does not serve model '{endpoint.model}' (it serves {served}): "
            "pass one of those with --model"
        )
    if endpoint.chat is not None:
        return endpoint
    flag = getattr(cards.get(endpoint.model), "chat_template", None) if cards else None
    return replace(endpoint, chat=flag if isinstance(flag, bool) else True)


# -- generate: one engine call -------------------------------------------------------------------
@dataclass(frozen=True)
class _Request:
    """One HTTP request: the jobs it answers (indices into the call's jobs, one per choice), the
    prompt text, and the params (`n`: the number of jobs; the seed: the first job's)."""

    jobs: tuple[int, ...]
    text: str
    params: SamplingParams


def _requests(endpoint: Endpoint, jobs: list[tuple[str, SamplingParams]]) -> list[_Request]:
    """With samples_per_request "single", one request per job; with "n", each run of
    consecutive jobs that differ only in their seed (one prompt's samples, as `Engine.run` lists
    them, or of several states whose prompts are the same) is one request with
    n = its length and the run's first seed."""
    if endpoint.samples_per_request == "single":
        return [_Request((i,), text, params) for i, (text, params) in enumerate(jobs)]
    runs: list[tuple[list[int], str, SamplingParams]] = []
    for i, (text, params) in enumerate(jobs):
        if runs and runs[-1][1] == text and replace(runs[-1][2], seed=params.seed) == params:
            runs[-1][0].append(i)
        else:
            runs.append(([i], text, params))
    return [_Request(tuple(ids), text, replace(params, n=len(ids))) for ids, text, params in runs]


def _body(endpoint: Endpoint, text: str, params: SamplingParams) -> dict[str, Any]:
    """One request: n (1 unless samples_per_request is "n"), the (first) sample's seed;
    `sampling` (our extra field) only when it matters and differs from our server's default, so
    any OpenAI-compatible server accepts the rest."""
    body: dict[str, Any] = {
        "model": endpoint.model,
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    if params.temperature > 0 and params.sampling != "coupled":
        body["extra_body"] = {"sampling": params.sampling}
    if endpoint.chat:
        body["messages"] = [{"role": "user", "content": text}]
        body["max_completion_tokens"] = params.max_new_tokens
    else:
        body["prompt"] = text
        body["max_tokens"] = params.max_new_tokens
    return body


def _count(fields: dict, name: str) -> int | None:
    value = fields.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stats(choice: Any, new_tokens: int, usage: Any, wall_s: float) -> DecodeStats:
    """`new_tokens`: the choice's completion tokens; the prompt's from `usage` (one prompt per
    request); drafted, accepted, rounds, forwards and cached prompt tokens from the choice's
    `speculative` field when the server is ours (zero otherwise)."""
    spec = getattr(choice, "speculative", None)
    spec = spec if isinstance(spec, dict) else {}

    def count(name: str) -> int:
        return _count(spec, name) or 0

    return DecodeStats(
        method=METHOD,
        new_tokens=new_tokens,
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        wall_s=wall_s,
        drafted=count("drafted"),
        accepted=count("accepted"),
        rounds=count("rounds"),
        target_forwards=count("target_forwards"),
        draft_forwards=count("draft_forwards"),
        cached_tokens=count("cached_prompt_tokens"),
    )


def _choice_tokens(choices: list[Any], usage: Any) -> list[int]:
    """Each choice's completion tokens: our server's per-choice count, else `usage`'s total
    (n=1), else (another server, n > 1) that total shared evenly, the remainder to the first."""
    spec = [getattr(c, "speculative", None) for c in choices]
    own = [_count(s, "completion_tokens") if isinstance(s, dict) else None for s in spec]
    if all(t is not None for t in own):
        return own
    total, n = getattr(usage, "completion_tokens", 0) or 0, len(choices)
    return [total // n + (j < total % n) for j in range(n)]


def _results(
    endpoint: Endpoint, request: _Request, response: Any, wall_s: float
) -> list[GenerationResult]:
    """A result per choice, in choice order (one per job of `request`)."""
    n = len(request.jobs)
    if len(response.choices or []) != n:
        raise SeedtreeError(
            f"{endpoint.base_url} answered with {len(response.choices or [])} choices for "
            f"n={n} (model '{endpoint.model}'): check that the server is OpenAI-compatible"
        )
    choices = sorted(response.choices, key=lambda c: c.index or 0)
    results = []
    for choice, tokens in zip(choices, _choice_tokens(choices, response.usage), strict=True):
        out = (choice.message.content if endpoint.chat else choice.text) or ""
        stats = _stats(choice, tokens, response.usage, wall_s)
        reason = choice.finish_reason or "stop"
        results.append(GenerationResult([], out, reason, stats, prompt=request.text))
    return results


async def _one(client, gate, endpoint, request: _Request, trace) -> list[GenerationResult]:
    openai = _openai()
    body = _body(endpoint, request.text, request.params)
    create = client.chat.completions.create if endpoint.chat else client.completions.create
    async with gate:
        start = trace.now()
        try:
            response = await create(**body)
        except openai.APIError as exc:
            raise _error(endpoint, exc) from None
        except json.JSONDecodeError:
            route = "/chat/completions" if endpoint.chat else "/completions"
            raise _not_json(endpoint, route) from None
        end = trace.now()
    trace.add("request", request.jobs, start, end)
    return _results(endpoint, request, response, end - start)


async def _all(endpoint: Endpoint, jobs: list[tuple[str, SamplingParams]], trace: Trace):
    """Every request at once, at most `max_concurrency` in flight; the first failure cancels
    the rest and is raised. The results in job order."""
    gate = asyncio.Semaphore(endpoint.max_concurrency)
    requests = _requests(endpoint, jobs)
    async with _client(endpoint) as client:
        tasks = [
            asyncio.create_task(_one(client, gate, endpoint, request, trace))
            for request in requests
        ]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    results: list[GenerationResult | None] = [None] * len(jobs)
    for request, answer in zip(requests, answers, strict=True):
        for i, result in zip(request.jobs, answer, strict=True):
            results[i] = result
    return results


def generate(
    endpoint: Endpoint, jobs: list[tuple[str, SamplingParams]]
) -> tuple[list[GenerationResult], Trace]:
    """One engine call on the endpoint: a result per (prompt text, params), in order, and the
    call's timeline (one "request" interval per HTTP request, over the jobs it answers, from
    send to answer)."""
    if endpoint.chat is None:
        endpoint = connect(endpoint)
    trace = Trace(method=METHOD)
    results = _run(_all(endpoint, jobs, trace)) if jobs else []
    return list(results), trace
