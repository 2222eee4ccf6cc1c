"""The OpenAI wire format: request bodies -> frozen `ApiRequest`s, results -> response bodies.

Every check names the field it rejects (`ApiError.param`) in a one-line message. Parameters
seedtree does not implement are refused unless they hold their neutral value (`echo: false`,
`presence_penalty: 0`, ...): a request is never silently answered as if it had asked for less.
Logprobs (chat: `logprobs: true` + `top_logprobs` 0..20; completions: `logprobs` 0..5) are the
target's raw log-softmax where each token was emitted, before temperature and top-p (vLLM's
default); token strings are each token decoded alone (special tokens included), `bytes` their
UTF-8 encoding.
Our own knobs come as extra body fields (as vLLM's do): `sampling` ("coupled" | "speculative")
and `ignore_eos` per request; the method and its draft settings are the server's.
This module knows nothing about models, tokenizers or the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seedtree.decoding.params import SAMPLING_MODES
from seedtree.decoding.result import DecodeStats, TokenLogprob
from seedtree.errors import SeedtreeError
from seedtree.validate import (
    MAX_FANOUT,
    MAX_LOGPROBS,
    check_bool,
    check_int,
    check_real,
    check_seed,
    check_text,
    str_tuple,
)

ROLES = ("system", "developer", "user", "assistant", "tool")
SERVER_KNOBS = {  # set for the whole server: field -> `seedtree serve` option
    "method": "--method",
    "gamma": "--gamma",
    "k_config": "--k-config",
    "tree_mass": "--tree-mass",
    "lookup": "--lookup",
}
MAX_STOP = 4  # stop strings per request (OpenAI's limit)
MAX_COMPLETION_LOGPROBS = 5  # /v1/completions `logprobs` at most (OpenAI's legacy limit)
LOGPROB_FLOOR = -9999.0  # a logprob of -inf is sent as this (JSON has no infinity; as vLLM)


class ApiError(Exception):
    """An error answered in the OpenAI shape: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind, self.code, self.headers = kind, code, headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def bad(param: str | None, message: str) -> ApiError:
    return ApiError(400, message, param)


@dataclass(frozen=True)
class ApiRequest:
    """One /v1/completions or /v1/chat/completions request, checked. `prompts`: text or token
    ids, one per prompt (completions); `messages`: the chat (chat completions)."""

    chat: bool
    model: str
    prompts: tuple[str | tuple[int, ...], ...] = ()
    messages: tuple[dict[str, str], ...] = ()
    n: int = 1
    max_tokens: int | None = None  # None: the server's default
    max_tokens_param: str = "max_tokens"
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    sampling: str = "coupled"
    ignore_eos: bool = False
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # top alternatives per token (0: the token's own); None: off


# -- checks that name their field ---------------------------------------------------------------
def _checked(param: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except SeedtreeError as exc:
        raise bad(param, str(exc)) from None


def _neutral(body: dict, name: str, ok: Callable[[Any], bool]) -> None:
    if name in body and not ok(body[name]):
        raise bad(name, f"'{name}' is not supported yet by seedtree serve: leave it out")


_IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls"}
_NEUTRAL_COMMON: dict[str, Callable[[Any], bool]] = {
    "presence_penalty": lambda v: v in (None, 0),
    "frequency_penalty": lambda v: v in (None, 0),
    "logit_bias": lambda v: not v,
}
_NEUTRAL_COMPLETION = _NEUTRAL_COMMON | {
    "echo": lambda v: v in (None, False),
    "suffix": lambda v: v is None,
    "best_of": lambda v: v in (None, 1),
}
_NEUTRAL_CHAT = _NEUTRAL_COMMON | {
    "tools": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none"),
    "functions": lambda v: not v,
    "response_format": lambda v: v is None or v == {"type": "text"},
}
_SAMPLING = {
    "model", "n", "max_tokens", "temperature", "top_p", "stop", "seed", "stream",
    "stream_options", "sampling", "ignore_eos",
}  # fmt: skip
_COMPLETION_FIELDS = _SAMPLING | {"prompt", "logprobs"} | _IGNORED | set(_NEUTRAL_COMPLETION)
_CHAT_FIELDS = (
    _SAMPLING | {"messages", "max_completion_tokens", "logprobs", "top_logprobs"} | _IGNORED
    | set(_NEUTRAL_CHAT)
)  # fmt: skip


def _check_fields(body: dict, allowed: set[str], neutral: dict) -> None:
    for name in body:
        if name in SERVER_KNOBS:
            raise bad(
                name,
                f"'{name}' is set for the whole server, not per request: restart seedtree serve "
                f"with {SERVER_KNOBS[name]}",
            )
        if name not in allowed:
            raise bad(name, f"unsupported parameter '{name}': leave it out")
    for name, ok in neutral.items():
        _neutral(body, name, ok)


def _number(body: dict, name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    _checked(name, lambda: check_real(name, value))
    return float(value)


def _optional_int(body: dict, name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is not None:
        _checked(name, lambda: check_int(name, value, low, high))
    return value


def _bool(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    _checked(name, lambda: check_bool(name, value))
    return value


def _seed(body: dict) -> int | None:
    value = body.get("seed")
    _checked("seed", lambda: check_seed("seed", value))
    return value


def _stop(body: dict) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stop = _checked("stop", lambda: str_tuple("stop", value))
    if len(stop) > MAX_STOP:
        raise bad("stop", f"stop takes at most {MAX_STOP} strings, got {len(stop)}")
    if any(not s for s in stop):
        raise bad("stop", "stop strings must be non-empty")
    return tuple(_text("stop", s) for s in stop)


def _text(param: str, value: str, name: str | None = None) -> str:
    """A string of the body, checked to be valid Unicode (JSON allows a lone "\\ud800")."""
    _checked(param, lambda: check_text(name or param, value))
    return value


def _model(body: dict) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise bad("model", "'model' is required: name the served model (GET /v1/models)")
    if not isinstance(model, str):
        kind = type(model).__name__
        raise bad("model", f"model must be a string, got {kind}: name the served model")
    return _text("model", model)


def _include_usage(body: dict, stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise bad("stream_options", "stream_options is only allowed with stream: true")
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise bad("stream_options", "stream_options takes one field, include_usage (a boolean)")
    return _bool(options, "include_usage")


def _chat_logprobs(body: dict) -> int | None:
    """`logprobs: true` turns them on; `top_logprobs` (0..20) adds alternatives, only with it."""
    top = _optional_int(body, "top_logprobs", 0, MAX_LOGPROBS)
    if _bool(body, "logprobs"):
        return top or 0
    if top is not None:
        raise bad("top_logprobs", "top_logprobs needs logprobs set to true: add it or leave it out")
    return None


def _common(body: dict, chat: bool) -> dict:
    """The sampling fields both endpoints share, checked."""
    temperature = _number(body, "temperature", 1.0)
    if not 0 <= temperature <= 2:
        raise bad("temperature", f"temperature must be in [0, 2], got {temperature}")
    top_p = _number(body, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise bad("top_p", f"top_p must be in (0, 1], got {top_p}")
    sampling = body.get("sampling", "coupled")
    if sampling not in SAMPLING_MODES:
        raise bad("sampling", f"sampling must be one of {', '.join(SAMPLING_MODES)}")
    stream = _bool(body, "stream")
    param = "max_tokens"
    if chat and body.get("max_completion_tokens") is not None:
        param = "max_completion_tokens"
    return {
        "model": _model(body),
        "n": _optional_int(body, "n", 1, MAX_FANOUT) or 1,
        "max_tokens": _optional_int(body, param, 1),
        "max_tokens_param": param,
        "temperature": temperature,
        "top_p": top_p,
        "stop": _stop(body),
        "seed": _seed(body),
        "sampling": sampling,
        "ignore_eos": _bool(body, "ignore_eos"),
        "stream": stream,
        "include_usage": _include_usage(body, stream),
        "logprobs": (
            _chat_logprobs(body) if chat
            else _optional_int(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS)
        ),
    }  # fmt: skip


# -- the two endpoints ----------------------------------------------------------------------------
def _prompts(value: Any) -> tuple[str | tuple[int, ...], ...]:
    """`prompt`: a string, a list of strings, a list of token ids or a list of such lists."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad("prompt", "prompt must be a string or a non-empty list of strings")
    prompts: list[str | tuple[int, ...]] = []
    for i, p in enumerate(value):
        if isinstance(p, str):
            if not p:
                raise bad("prompt", f"prompt[{i}] is empty: give some text")
            prompts.append(_text("prompt", p, f"prompt[{i}]"))
        elif isinstance(p, list) and p and all(type(t) is int for t in p):
            prompts.append(tuple(p))
        else:
            raise bad("prompt", f"prompt[{i}] must be a string or a list of token ids")
    return tuple(prompts)


def parse_completion(body: Any) -> ApiRequest:
    if not isinstance(body, dict):
        raise bad(None, "the request body must be a JSON object")
    _check_fields(body, _COMPLETION_FIELDS, _NEUTRAL_COMPLETION)
    if "prompt" not in body:
        raise bad("prompt", "'prompt' is required")
    return ApiRequest(chat=False, prompts=_prompts(body["prompt"]), **_common(body, chat=False))


def _content(i: int, content: Any) -> str:
    """A message's text: a string or a list of text parts."""
    if isinstance(content, str):
        return _text(f"messages[{i}].content", content)
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad(f"messages[{i}].content", "only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise bad(f"messages[{i}].content", "a text part needs a 'text' string")
            parts.append(_text(f"messages[{i}].content", part["text"]))
        return "".join(parts)
    raise bad(f"messages[{i}].content", "content must be a string or a list of text parts")


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise bad("messages", "messages must be a non-empty list of {role, content} objects")
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}]", "a message must be an object with role and content")
        if m.get("role") not in ROLES:
            raise bad(f"messages[{i}].role", f"role must be one of {', '.join(ROLES)}")
        messages.append({"role": m["role"], "content": _content(i, m.get("content"))})
    return tuple(messages)


def parse_chat(body: Any) -> ApiRequest:
    if not isinstance(body, dict):
        raise bad(None, "the request body must be a JSON object")
    _check_fields(body, _CHAT_FIELDS, _NEUTRAL_CHAT)
    if "messages" not in body:
        raise bad("messages", "'messages' is required")
    return ApiRequest(chat=True, messages=_messages(body["messages"]), **_common(body, chat=True))


# -- responses ------------------------------------------------------------------------------------
def speculative_stats(stats: DecodeStats, completion_tokens: int) -> dict:
    """Per choice: what the draft proposed and the target kept (vLLM hides this when n > 1), and
    the choice's own completion tokens (`usage` sums them over the choices of a request)."""
    return {
        "completion_tokens": completion_tokens,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "acceptance_rate": stats.alpha,
        "rounds": stats.rounds,
        "target_forwards": stats.target_forwards,
        "draft_forwards": stats.draft_forwards,
        "cached_prompt_tokens": stats.cached_tokens,
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def choice(
    chat: bool,
    index: int,
    text: str,
    finish_reason: str | None,
    extra: dict,
    logprobs: dict | None = None,
) -> dict:
    """A whole choice (non-streamed response)."""
    body: dict[str, Any] = {"index": index}
    if chat:
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["text"] = text
    return body | {"logprobs": logprobs, "finish_reason": finish_reason} | extra


def chunk_choice(
    chat: bool,
    index: int,
    text: str | None,
    finish_reason: str | None,
    logprobs: dict | None = None,
) -> dict:
    """One choice's piece of a stream chunk (`text` None: the opening chat delta, the role)."""
    body: dict[str, Any] = {"index": index}
    if chat:
        body["delta"] = {"role": "assistant", "content": ""} if text is None else {}
        if text:
            body["delta"] = {"content": text}
    else:
        body["text"] = text or ""
    return body | {"logprobs": logprobs, "finish_reason": finish_reason}


def _logprob(value: float) -> float:
    return max(value, LOGPROB_FLOOR)


def chat_logprobs(entries: list[TokenLogprob], token_text: Callable[[int], str]) -> dict:
    """The chat shape: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob,
    bytes}]}]}, one item per token; `token_text(id)`: the token's string."""

    def item(token_id: int, logprob: float) -> dict:
        token = token_text(token_id)
        return {"token": token, "logprob": _logprob(logprob), "bytes": list(token.encode())}

    content = [
        item(e.token_id, e.logprob) | {"top_logprobs": [item(i, lp) for i, lp in e.top]}
        for e in entries
    ]
    return {"content": content}


def completion_logprobs(
    entries: list[TokenLogprob], token_text: Callable[[int], str], offset: int = 0
) -> dict:
    """The legacy completions shape: {tokens, token_logprobs, top_logprobs: [{token: logprob}],
    text_offset}. As OpenAI's, each top_logprobs dict holds the top alternatives and the chosen
    token (up to logprobs + 1 entries). text_offset: where each token starts in the choice's
    text, counting the token strings before it from `offset` (a stream's earlier tokens)."""
    tokens = [token_text(e.token_id) for e in entries]
    offsets, at = [], offset
    for token in tokens:
        offsets.append(at)
        at += len(token)
    tops = []
    for e in entries:
        top: dict[str, float] = {}
        for token_id, logprob in (*e.top, (e.token_id, e.logprob)):
            top.setdefault(token_text(token_id), _logprob(logprob))
        tops.append(top)
    return {
        "tokens": tokens,
        "token_logprobs": [_logprob(e.logprob) for e in entries],
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def envelope(chat: bool, stream: bool, rid: str, created: int, model: str) -> dict:
    kind = {
        (False, False): "text_completion",
        (False, True): "text_completion",
        (True, False): "chat.completion",
        (True, True): "chat.completion.chunk",
    }[(chat, stream)]
    return {"id": rid, "object": kind, "created": created, "model": model}
