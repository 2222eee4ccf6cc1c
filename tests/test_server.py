"""`seedtree serve` on tiny float64 models: the real server (uvicorn on a free loopback port, in
a thread) driven by the official `openai` client (sync, async, streaming) and by raw HTTP
(httpx) for the error cases. At T=0 (and at T>0 with a seed, coupled sampling) every response
equals the in-process `LLM.generate` output; errors come in the OpenAI shape and leave the
server serving; a client that goes away has its request aborted."""

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch
from conftest import DEVICE, assert_one_line_error, run_cli, save_pair_folders
from test_step_engine import LOGPROB_TOL, target_logprobs

from seedtree.decoding import SamplingParams
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair
from seedtree.server import ServerConfig
from seedtree.server.run import build_server
from seedtree.validate import SEED_MAX

MODEL = "tiny"
PROMPTS = ["q: 2+3=? a:", "the cat sat on", "list: 1, 2, 3,", "hello world. ", "x = 7 * 6"]
WAIT_S = 60  # any single wait in these tests


class Running:
    """A server on a free loopback port (uvicorn in a thread); `stop()` as on SIGTERM."""

    def __init__(self, llm: LLM, config: ServerConfig) -> None:
        self.server = build_server(llm, config, "127.0.0.1", 0, log_level="warning")
        self.loop = self.server.engine_loop
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def client(self, **kw) -> "openai.OpenAI":
        kw.setdefault("api_key", "none")
        return openai.OpenAI(base_url=self.url + "/v1", max_retries=0, timeout=WAIT_S, **kw)

    def async_client(self) -> "openai.AsyncOpenAI":
        return openai.AsyncOpenAI(
            base_url=self.url + "/v1", api_key="none", max_retries=0, timeout=WAIT_S
        )

    def stop(self) -> None:
        self.server.handle_exit(signal.SIGTERM, None)
        self.thread.join(timeout=WAIT_S)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def llm():
    return LLM(models=tiny_pair(seed=0, context=2048, device=DEVICE))


@pytest.fixture(scope="module")
def server(llm):
    running = Running(llm, ServerConfig(model=MODEL, max_queued=64, drain_s=5))
    yield running
    running.stop()


def offline(llm, prompts, **kw):
    """In-process results of the server's method, for comparison."""
    kw.setdefault("temperature", 0.0)
    return llm.generate(prompts, SamplingParams(**kw), method="seed-batched")


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_serving(server) -> None:
    r = server.client().completions.create(model=MODEL, prompt="ok", max_tokens=2, temperature=0)
    assert len(r.choices) == 1


# -- answers -------------------------------------------------------------------------------------
def test_models_and_health(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert httpx.get(server.url + "/health").status_code == 200


def test_completions_at_t0_equal_the_offline_outputs(server, llm):
    client = server.client()
    for prompt in PROMPTS:
        [ref] = offline(llm, prompt, max_new_tokens=24)
        r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0)
        [c] = r.choices
        assert c.text == ref.text and c.finish_reason == ref.finish_reason, prompt
        assert r.usage.prompt_tokens == len(llm.encode(prompt))
        assert r.usage.completion_tokens == len(ref.token_ids)
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        spec = c.model_extra["speculative"]
        assert 0 <= spec["accepted"] <= spec["drafted"] and spec["rounds"] >= 1
        assert spec["target_forwards"] >= 1


def test_chat_at_t0_equals_the_offline_output(server, llm):
    messages = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "2+3?"}]
    # the tiny tokenizer has no chat template: the server reads `role: content` lines
    prompt = "system: be brief.\nuser: 2+3?\nassistant:"
    [ref] = offline(llm, prompt, max_new_tokens=20)
    r = server.client().chat.completions.create(
        model=MODEL, messages=messages, max_completion_tokens=20, temperature=0
    )
    [c] = r.choices
    assert c.message.role == "assistant" and c.message.content == ref.text
    assert c.finish_reason == ref.finish_reason
    assert r.usage.prompt_tokens == len(llm.encode(prompt))


def test_n_choices_per_prompt_equal_the_offline_samples(server, llm):
    """Two prompts x n=3 at T=0.8 with a seed: choice i = prompt i // 3, sample i % 3, each the
    sample `LLM.generate` draws for it (coupled sampling, hashed seeds per sample)."""
    prompts = PROMPTS[:2]
    refs = offline(llm, prompts, temperature=0.8, seed=5, n=3, max_new_tokens=16)
    r = server.client().completions.create(
        model=MODEL, prompt=prompts, n=3, temperature=0.8, seed=5, max_tokens=16
    )
    assert [c.index for c in r.choices] == list(range(6))
    assert [c.text for c in r.choices] == [ref.text for ref in refs]
    assert r.usage.prompt_tokens == sum(len(llm.encode(p)) for p in prompts)
    assert r.usage.completion_tokens == sum(len(ref.token_ids) for ref in refs)
    # each choice's own count (`usage` only sums them)
    counts = [c.model_extra["speculative"]["completion_tokens"] for c in r.choices]
    assert counts == [len(ref.token_ids) for ref in refs]


def test_stop_and_max_tokens_end_choices_with_the_right_reason(server, llm):
    client = server.client()
    [ref] = offline(llm, PROMPTS[1], max_new_tokens=40, ignore_eos=True)
    stop = ref.text[6:8]
    assert len(stop) == 2, ref.text
    cut = ref.text[: ref.text.find(stop)]
    r = client.completions.create(
        model=MODEL, prompt=PROMPTS[1], max_tokens=40, temperature=0, stop=[stop, "@@"],
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert r.choices[0].text == cut and r.choices[0].finish_reason == "stop"
    r = client.completions.create(
        model=MODEL, prompt=PROMPTS[1], max_tokens=5, temperature=0,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


def test_streams_add_up_to_the_whole_answer(server, llm):
    client = server.client()
    [ref] = offline(llm, PROMPTS[0], max_new_tokens=30, stop=("=",), ignore_eos=True)
    chunks = list(
        client.completions.create(
            model=MODEL, prompt=PROMPTS[0], max_tokens=30, temperature=0, stop="=", stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        )
    )  # fmt: skip
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == ref.text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == ref.finish_reason and all(r is None for r in reasons[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(ref.token_ids)


def test_chat_stream_opens_with_the_role(server, llm):
    [ref] = offline(llm, "user: hi\nassistant:", max_new_tokens=16)
    stream = server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=16, temperature=0,
        stream=True,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == ref.text
    assert chunks[-1].choices[0].finish_reason == ref.finish_reason


def test_async_concurrent_requests_equal_the_offline_outputs(server, llm):
    refs = [offline(llm, p, max_new_tokens=20)[0].text for p in PROMPTS]

    async def main():
        client = server.async_client()
        calls = [
            client.completions.create(model=MODEL, prompt=p, max_tokens=20, temperature=0)
            for p in PROMPTS
        ]
        return await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)

    answers = asyncio.run(main())
    assert [a.choices[0].text for a in answers] == refs


# -- logprobs --------------------------------------------------------------------------------------
def expected_logprobs(llm, prompt: str, ref) -> torch.Tensor:
    """[n, V]: the tiny target's log_softmax where each of the reference's tokens was emitted,
    computed here in float64 (the server's are the target's raw log-softmax)."""
    return target_logprobs(llm.models, llm.encode(prompt), ref.token_ids)


def token_texts(llm, ids) -> list[str]:
    return [llm.tokenizer.decode([i]) for i in ids]


def assert_completion_logprobs(llm, prompt: str, ref, lp, k: int) -> None:
    """The legacy shape: tokens, token_logprobs, top_logprobs (top-k and the chosen token),
    text_offset."""
    expected = expected_logprobs(llm, prompt, ref)
    assert lp.tokens == token_texts(llm, ref.token_ids)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:j]) for j in range(len(lp.tokens))]
    for j, token in enumerate(ref.token_ids):
        assert abs(lp.token_logprobs[j] - float(expected[j, token])) < LOGPROB_TOL
        ids = {*expected[j].topk(k).indices.tolist(), token}
        want = {llm.tokenizer.decode([i]): float(expected[j, i]) for i in ids}
        assert lp.top_logprobs[j].keys() == want.keys(), j
        assert all(abs(lp.top_logprobs[j][t] - v) < LOGPROB_TOL for t, v in want.items())


def assert_chat_logprobs(llm, prompt: str, ref, content, k: int) -> None:
    """The chat shape: per token {token, logprob, bytes, top_logprobs: k of {token, ...}}."""
    expected = expected_logprobs(llm, prompt, ref)
    assert [c.token for c in content] == token_texts(llm, ref.token_ids)
    for j, (token, c) in enumerate(zip(ref.token_ids, content, strict=True)):
        assert abs(c.logprob - float(expected[j, token])) < LOGPROB_TOL
        assert c.bytes == list(c.token.encode())
        top = expected[j].topk(k)
        assert [t.token for t in c.top_logprobs] == token_texts(llm, top.indices.tolist()), j
        for t, v in zip(c.top_logprobs, top.values.tolist(), strict=True):
            assert abs(t.logprob - v) < LOGPROB_TOL and t.bytes == list(t.token.encode())
        assert int(expected[j].argmax()) == token  # T=0: the emitted token is the argmax


def test_completion_logprobs_are_the_targets_log_softmax(server, llm):
    """At T=0, whole and streamed: every token's logprob and top 3 (with the chosen token, as
    OpenAI's legacy shape has it) are the target's log-softmax where it was emitted; the
    stream's pieces add up to the whole answer's."""
    client, prompt = server.client(), PROMPTS[2]
    [ref] = offline(llm, prompt, max_new_tokens=12, ignore_eos=True)
    kw = {"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0, "logprobs": 3}
    kw["extra_body"] = {"ignore_eos": True}
    [c] = client.completions.create(**kw).choices
    assert c.text == ref.text
    assert_completion_logprobs(llm, prompt, ref, c.logprobs, k=3)
    pieces = [ch.choices[0].logprobs for ch in client.completions.create(**kw, stream=True)]
    pieces = [lp for lp in pieces if lp is not None]
    assert len(pieces) > 1  # logprobs come with the chunks, not all at the end
    joined = {
        name: sum((getattr(lp, name) for lp in pieces), [])
        for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset")
    }
    assert_completion_logprobs(llm, prompt, ref, SimpleNamespace(**joined), k=3)
    [plain] = client.completions.create(**kw | {"logprobs": None}).choices
    assert plain.logprobs is None and plain.text == ref.text


def test_chat_logprobs_are_the_targets_log_softmax(server, llm):
    """At T=0, whole and streamed: `logprobs: true` with `top_logprobs: 5` gives each token's
    logprob, bytes and top 5 from the target's log-softmax; the stream's pieces add up."""
    client, prompt = server.client(), "user: hi\nassistant:"
    [ref] = offline(llm, prompt, max_new_tokens=10, ignore_eos=True)
    kw = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    kw |= {"temperature": 0, "logprobs": True, "top_logprobs": 5}
    kw["extra_body"] = {"ignore_eos": True}
    [c] = client.chat.completions.create(**kw).choices
    assert c.message.content == ref.text
    assert_chat_logprobs(llm, prompt, ref, c.logprobs.content, k=5)
    chunks = list(client.chat.completions.create(**kw, stream=True))
    pieces = [ch.choices[0].logprobs for ch in chunks if ch.choices[0].logprobs is not None]
    assert chunks[0].choices[0].logprobs is None and len(pieces) > 1
    assert_chat_logprobs(llm, prompt, ref, sum((lp.content for lp in pieces), []), k=5)
    [alone] = client.chat.completions.create(**kw | {"top_logprobs": None}).choices
    assert all(not t.top_logprobs for t in alone.logprobs.content)  # logprobs alone: k = 0
    assert_chat_logprobs(llm, prompt, ref, alone.logprobs.content, k=0)


# -- errors ----------------------------------------------------------------------------------------
def raw(body: dict) -> bytes:
    """`body` as JSON bytes, escapes kept (a lone surrogate is "\\ud800", as a client sends)."""
    return json.dumps(body).encode()


GOOD = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
ERRORS = [  # (path, body, status, param)
    ("/v1/completions", b"{not json", 400, None),
    ("/v1/completions", b"[1, 2]", 400, None),
    ("/v1/completions", GOOD | {"model": "gpt-4"}, 404, "model"),
    ("/v1/completions", {"prompt": "hi"}, 400, "model"),
    ("/v1/completions", GOOD | {"model": 5}, 400, "model"),
    ("/v1/completions", raw(GOOD | {"prompt": "a\ud800b"}), 400, "prompt"),
    ("/v1/completions", raw(GOOD | {"prompt": ["ok", "\udfff"]}), 400, "prompt"),
    ("/v1/completions", raw(GOOD | {"stop": ["\ud800"]}), 400, "stop"),
    ("/v1/completions", GOOD | {"seed": SEED_MAX + 1}, 400, "seed"),
    ("/v1/completions", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("/v1/chat/completions", raw({"model": MODEL, "messages": [{"role": "user",
     "content": "x\ud800"}]}), 400, "messages[0].content"),
    ("/v1/chat/completions", raw({"model": MODEL, "messages": [{"role": "user",
     "content": [{"type": "text", "text": "\ud800"}]}]}), 400, "messages[0].content"),
    ("/v1/completions", {"model": MODEL}, 400, "prompt"),
    ("/v1/completions", GOOD | {"frobnicate": 1}, 400, "frobnicate"),
    ("/v1/completions", GOOD | {"gamma": 3}, 400, "gamma"),
    ("/v1/completions", GOOD | {"tree_mass": 0.8}, 400, "tree_mass"),
    ("/v1/completions", GOOD | {"method": "ar"}, 400, "method"),
    ("/v1/completions", GOOD | {"logprobs": 6}, 400, "logprobs"),
    ("/v1/completions", GOOD | {"logprobs": -1}, 400, "logprobs"),
    ("/v1/completions", GOOD | {"logprobs": True}, 400, "logprobs"),
    ("/v1/completions", GOOD | {"echo": True}, 400, "echo"),
    ("/v1/completions", GOOD | {"presence_penalty": 0.5}, 400, "presence_penalty"),
    ("/v1/completions", GOOD | {"n": 0}, 400, "n"),
    ("/v1/completions", GOOD | {"n": 100_000}, 400, "n"),
    ("/v1/completions", GOOD | {"n": "3"}, 400, "n"),
    ("/v1/completions", GOOD | {"max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", GOOD | {"max_tokens": 5000}, 400, "max_tokens"),
    ("/v1/completions", GOOD | {"prompt": "a" * 3000}, 400, "prompt"),
    ("/v1/completions", GOOD | {"prompt": ""}, 400, "prompt"),
    ("/v1/completions", GOOD | {"prompt": [[5, 10**6]]}, 400, "prompt"),
    ("/v1/completions", GOOD | {"temperature": -1}, 400, "temperature"),
    ("/v1/completions", GOOD | {"top_p": 0}, 400, "top_p"),
    ("/v1/completions", GOOD | {"seed": -1}, 400, "seed"),
    ("/v1/completions", GOOD | {"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("/v1/completions", GOOD | {"sampling": "magic"}, 400, "sampling"),
    ("/v1/completions", GOOD | {"stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"content": "x"}]}, 400,
     "messages[0].role"),
    ("/v1/chat/completions", CHAT | {"top_logprobs": 2}, 400, "top_logprobs"),
    ("/v1/chat/completions", CHAT | {"logprobs": False, "top_logprobs": 0}, 400, "top_logprobs"),
    ("/v1/chat/completions", CHAT | {"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
    ("/v1/chat/completions", CHAT | {"logprobs": True, "top_logprobs": -1}, 400, "top_logprobs"),
    ("/v1/chat/completions", CHAT | {"logprobs": 2}, 400, "logprobs"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
     "max_completion_tokens": 5000}, 400, "max_completion_tokens"),
]  # fmt: skip


@pytest.mark.parametrize("path, body, status, param", ERRORS)
def test_errors_come_in_the_openai_shape_and_the_server_goes_on(server, path, body, status, param):
    if isinstance(body, bytes):
        r = httpx.post(server.url + path, content=body, timeout=WAIT_S)
    else:
        r = httpx.post(server.url + path, json=body, timeout=WAIT_S)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"] and "\n" not in error["message"]
    if param:  # the message names the field too
        assert param.split(".")[-1].split("[")[0] in error["message"]
    assert_serving(server)


def test_a_model_that_is_not_a_string_is_named_as_such(server):
    r = httpx.post(server.url + "/v1/completions", json=GOOD | {"model": 5}, timeout=WAIT_S)
    assert r.status_code == 400 and "model must be a string" in r.json()["error"]["message"]


def test_a_lone_surrogate_is_a_400_naming_the_field(server):
    r = httpx.post(server.url + "/v1/completions", content=raw(GOOD | {"prompt": "a\ud800"}))
    error = r.json()["error"]
    assert r.status_code == 400 and "prompt[0] is not valid Unicode" in error["message"]


def test_json_nested_too_deeply_is_a_400_not_valid_json(server):
    body = b'{"model": "tiny", "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(server.url + "/v1/completions", content=body, timeout=WAIT_S)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(llm):
    running = Running(llm, ServerConfig(model=MODEL, max_body_mb=1, drain_s=5))
    big = b'{"model": "tiny", "prompt": "' + b"a" * (3 << 20) + b'"}'
    try:
        for content in (big, iter([big[: 1 << 20], big[1 << 20 :]])):  # sized, then chunked
            start = time.monotonic()
            r = httpx.post(running.url + "/v1/completions", content=content, timeout=WAIT_S)
            assert r.status_code == 413, r.text
            error = r.json()["error"]
            assert error["code"] == "request_too_large" and "--max-body-mb" in error["message"]
            assert time.monotonic() - start < 5
        r = httpx.post(running.url + "/v1/completions", json=GOOD | {"prompt": "a" * 1000})
        assert r.status_code == 200  # under the limit: answered
    finally:
        running.stop()
    assert ServerConfig(model=MODEL).max_body_mb == 8
    with pytest.raises(SeedtreeError, match="--max-body-mb"):
        ServerConfig(model=MODEL, max_body_mb=0)


def test_a_long_prompt_is_encoded_off_the_event_loop(server, monkeypatch):
    """Encoding a long prompt takes seconds; /health is answered meanwhile."""
    from seedtree.server.session import Model

    ids = Model._ids

    def slow(self, prompt):
        if len(prompt) > 500:
            time.sleep(2)
        return ids(self, prompt)

    monkeypatch.setattr(Model, "_ids", slow)
    body = GOOD | {"prompt": "a" * 600}
    answer = {}
    post = threading.Thread(
        target=lambda: answer.update(r=httpx.post(server.url + "/v1/completions", json=body))
    )
    post.start()
    time.sleep(0.3)  # the prompt is being encoded
    start = time.monotonic()
    assert httpx.get(server.url + "/health", timeout=WAIT_S).status_code == 200
    assert time.monotonic() - start < 1.0 and post.is_alive()
    post.join(WAIT_S)
    assert answer["r"].status_code == 200


def test_unknown_route_is_a_404_in_the_openai_shape(server):
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_api_key(llm):
    running = Running(llm, ServerConfig(model=MODEL, api_key="sekret", drain_s=5))
    try:
        url = running.url + "/v1/models"
        assert httpx.get(url).status_code == 401
        r = httpx.get(url, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(url, headers={"Authorization": "Bearer sekret"}).status_code == 200
        assert httpx.get(running.url + "/health").status_code == 200  # open to probes
        with pytest.raises(openai.AuthenticationError):
            running.client(api_key="wrong").models.list()
        r = running.client(api_key="sekret").completions.create(
            model=MODEL, prompt="hi", max_tokens=3, temperature=0
        )
        assert len(r.choices) == 1
    finally:
        running.stop()


@pytest.fixture
def slow_steps(monkeypatch):
    """Each engine step takes 20 ms longer, so a 1500-token request is still decoding (for
    seconds) when the test acts: tiny models alone decode it in well under a second."""
    from seedtree.engine.step import StepEngine

    step = StepEngine.step

    def slow(self):
        time.sleep(0.02)
        return step(self)

    monkeypatch.setattr(StepEngine, "step", slow)


def test_a_full_queue_answers_429_with_retry_after(llm, slow_steps):
    running = Running(llm, ServerConfig(model=MODEL, max_running=1, max_queued=0, drain_s=5))
    long = GOOD | {"max_tokens": 1500, "ignore_eos": True, "stream": True}
    try:
        with httpx.stream("POST", running.url + "/v1/completions", json=long, timeout=WAIT_S) as s:
            assert s.status_code == 200
            next(s.iter_lines())  # the long request holds the one slot
            r = httpx.post(running.url + "/v1/completions", json=GOOD, timeout=WAIT_S)
            assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
            assert r.json()["error"]["code"] == "queue_full"
            r = httpx.post(running.url + "/v1/completions", json=GOOD | {"n": 2})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n"  # never fits
        wait_until(lambda: running.loop.pending == 0, "the aborted stream to leave")
        assert httpx.post(running.url + "/v1/completions", json=GOOD).status_code == 200
    finally:
        running.stop()


# -- clients that go away -------------------------------------------------------------------------
def test_a_client_that_disconnects_mid_stream_is_aborted(server, slow_steps):
    loop = server.loop
    before = loop.stats.finished["cancelled"]
    long = GOOD | {"max_tokens": 1500, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=long, timeout=WAIT_S) as s:
        lines = s.iter_lines()
        next(lines)
        next(lines)  # decoding has begun; now the client goes away
    wait_until(lambda: loop.stats.finished["cancelled"] == before + 1, "the abort")
    wait_until(lambda: loop.pending == 0 and loop.running == 0, "the engine to empty")
    metrics = httpx.get(server.url + "/metrics").text
    assert 'seedtree_choices_finished_total{reason="cancelled"}' in metrics
    assert_serving(server)


def test_a_client_that_gives_up_on_a_whole_answer_is_aborted(server, slow_steps):
    loop = server.loop
    before = loop.stats.finished["cancelled"]
    long = GOOD | {"max_tokens": 1500, "ignore_eos": True}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/completions", json=long, timeout=0.3)
    wait_until(lambda: loop.stats.finished["cancelled"] == before + 1, "the abort")
    wait_until(lambda: loop.pending == 0, "the engine to empty")
    assert_serving(server)


def test_metrics(server):
    assert_serving(server)
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "seedtree_queue_depth", "seedtree_running_branches", "seedtree_tokens_per_second",
        "seedtree_acceptance_rate", "seedtree_prefix_cache_hit_rate",
        "seedtree_generation_tokens_total",
    ):  # fmt: skip
        assert name in text, name
    generated = [line for line in text.splitlines() if line.startswith("seedtree_generation_tok")]
    assert float(generated[0].split()[-1]) > 0


# -- load and shutdown ----------------------------------------------------------------------------
def test_load_every_request_answered_once_and_equal_offline(server, llm):
    """32 requests from 8 concurrent clients: all answered, once, equal to the offline outputs;
    requests that arrive while others decode share verification rounds (continuous batching)."""
    prompts = [f"{p} {i}" for i in range(8) for p in PROMPTS[:4]]
    refs = offline(llm, prompts, max_new_tokens=24)
    answers: dict[int, str] = {}
    seen = len(server.loop.engine.trace.intervals)

    async def client_task(client, todo: list[int]):
        for i in todo:
            r = await client.completions.create(
                model=MODEL, prompt=prompts[i], max_tokens=24, temperature=0, user=str(i)
            )
            assert i not in answers
            answers[i] = r.choices[0].text

    async def main():
        client = server.async_client()
        tasks = [client_task(client, list(range(k, len(prompts), 8))) for k in range(8)]
        await asyncio.wait_for(asyncio.gather(*tasks), 4 * WAIT_S)

    start = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - start
    assert sorted(answers) == list(range(len(prompts)))
    assert [answers[i] for i in range(len(prompts))] == [r.text for r in refs]
    verifies = [i for i in server.loop.engine.trace.intervals[seen:] if i.kind == "verify"]
    widest = max(len(v.branches) for v in verifies)
    assert widest > 1  # concurrent requests were verified together
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"load: {len(prompts)} requests in {wall:.1f} s, peak RSS {peak:.0f} MB")


def test_sigterm_finishes_in_flight_requests_then_exits(llm):
    running = Running(llm, ServerConfig(model=MODEL, drain_s=30))
    body = GOOD | {"max_tokens": 200, "ignore_eos": True, "stream": True}
    lines: list[str] = []
    with httpx.stream("POST", running.url + "/v1/completions", json=body, timeout=WAIT_S) as s:
        it = s.iter_lines()
        lines.append(next(it))
        running.server.handle_exit(signal.SIGTERM, None)  # as `kill -TERM` does
        assert not running.loop.admitting
        lines += list(it)
    assert [line for line in lines if line][-1] == "data: [DONE]"
    assert any('"finish_reason": "length"' in line for line in lines)
    running.thread.join(timeout=WAIT_S)
    assert not running.thread.is_alive() and running.loop.pending == 0


def test_requests_past_the_drain_end_in_the_openai_shape_and_503s_meanwhile(llm, slow_steps):
    """SIGTERM with a stream and a whole answer still decoding past drain_s: the listener stays
    open (health and new requests: 503) until the drain ends; then the stream's last event is
    an error and [DONE], the whole answer an OpenAI-shaped 503."""
    running = Running(llm, ServerConfig(model=MODEL, drain_s=1))
    long = GOOD | {"max_tokens": 1500, "ignore_eos": True}
    whole = {}
    post = threading.Thread(
        target=lambda: whole.update(r=httpx.post(running.url + "/v1/completions", json=long))
    )
    lines: list[str] = []
    with httpx.stream(
        "POST", running.url + "/v1/completions", json=long | {"stream": True}, timeout=WAIT_S
    ) as s:
        it = s.iter_lines()
        lines.append(next(it))
        post.start()
        wait_until(lambda: running.loop.pending == 2, "both requests to decode")
        running.server.handle_exit(signal.SIGTERM, None)
        health = httpx.get(running.url + "/health", timeout=WAIT_S)
        assert health.status_code == 503
        late = httpx.post(running.url + "/v1/completions", json=GOOD, timeout=WAIT_S)
        assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
        lines += list(it)
    post.join(WAIT_S)
    events = [line for line in lines if line]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "shutting_down"
    assert whole["r"].status_code == 503
    assert whole["r"].json()["error"]["type"] == "server_error"
    running.thread.join(timeout=WAIT_S)
    assert not running.thread.is_alive()


SLOW_SERVE = """
import sys, time
from seedtree.engine.step import StepEngine
step = StepEngine.step
StepEngine.step = lambda self: (time.sleep(0.02), step(self))[1]
from seedtree.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_on_the_seedtree_serve_process_past_the_drain(tmp_path):
    """`seedtree serve` as a process (tiny folders, steps slowed): SIGTERM with a stream still
    decoding past --drain: 503 on /health meanwhile, the stream ends with an error event and
    [DONE], the process exits, and its log has no traceback."""
    save_pair_folders(tmp_path, seed=0, context=4096)
    port = free_port()
    models = ["--draft", tmp_path / "draft", "--target", tmp_path / "target"]
    argv = ["serve", *models, "--draft-dtype", "float32", "--served-model-name", MODEL]
    argv += ["--port", port, "--drain", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVE, *map(str, argv)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 2 * WAIT_S
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health").status_code == 200:
                    break
            time.sleep(0.1)
        long = GOOD | {"max_tokens": 1500, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=long, timeout=WAIT_S) as s:
            it = s.iter_lines()
            lines = [next(it), next(it)]
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert httpx.get(url + "/health", timeout=WAIT_S).status_code == 503
            lines += list(it)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    events = [line for line in lines if line]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "shutting_down"
    assert "Traceback" not in err and "CancelledError" not in err, err


def test_serve_checks_the_address_before_loading_the_models(capsys):
    """A busy port, or a host that is not this machine's: one line, status 2, and no model
    loads (the model folders do not exist)."""
    models = ["--draft", "/nonexistent/draft", "--target", "/nonexistent/target"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, "serve", *models, "--port", port)
        assert_one_line_error(code, err, f"cannot listen on 127.0.0.1:{port}", "--port")
    code, _, err = run_cli(capsys, "serve", *models, "--host", "192.0.2.1", "--port", port)
    assert_one_line_error(code, err, "cannot listen on 192.0.2.1", "--host")
    code, _, err = run_cli(capsys, "serve", *models, "--host", "no.such.host.invalid")
    assert_one_line_error(code, err, "--host no.such.host.invalid")


def test_run_off_main_thread_returns_and_raises_on_the_caller():
    import threading

    from seedtree.errors import SeedtreeError
    from seedtree.server.run import run_off_main_thread

    seen = []
    assert run_off_main_thread(lambda: seen.append(threading.current_thread()) or 7) == 7
    assert seen[0] is not threading.main_thread() and not seen[0].is_alive()  # gone after

    def fail():
        raise SeedtreeError("models missing: run seedtree models prepare")

    with pytest.raises(SeedtreeError, match="models missing"):
        run_off_main_thread(fail)
