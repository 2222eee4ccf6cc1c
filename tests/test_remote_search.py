"""The search on an OpenAI endpoint (`--backend openai`, `search.remote`) against the real
`seedtree serve` (uvicorn on a free loopback port, in a thread) on tiny float64 models: the trees
equal the in-process search's at T=0 and at T=0.7 with a seed (coupled sampling), through the
library and through `seedtree solve/run` (results, resume, settings); the requests of a level
are in flight together (or, with `samples_per_request="n"`, a prompt's k samples are one request
with n=k: the same tree at T=0); 429s are retried; every failure is one line."""

import http.server
import json
import socket
import threading

import pytest
import test_server
from conftest import DEVICE, assert_one_line_error, run_cli

from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig, Tree, solve
from seedtree.search.remote import Endpoint, connect
from seedtree.search.results import read_results
from seedtree.search.run import run_dataset
from seedtree.server import ServerConfig
from seedtree.tasks import get_task

MODEL = "tiny"
WAIT_S = 60


class Running(test_server.Running):
    """`seedtree serve`'s app on a free loopback port (test_server.py's harness); `url` is the
    OpenAI base URL (`.../v1`)."""

    def __init__(self, llm: LLM, config: ServerConfig) -> None:
        super().__init__(llm, config)
        self.url += "/v1"


@pytest.fixture(scope="module")
def llm():
    """Context 4096: the task prompts are long in character tokens."""
    return LLM(models=tiny_pair(seed=0, context=4096, device=DEVICE))


@pytest.fixture(scope="module")
def server(llm):
    running = Running(llm, ServerConfig(model=MODEL, max_queued=64, drain_s=5))
    yield running
    running.stop()


def varied(task):
    """The task with values/votes a fixed function of the model's text (a random tiny model
    rarely writes digits), so that selection depends on the outputs (as in test_search.py)."""

    class Varied(type(task)):
        def parse_value(self, text):
            return float(sum(map(ord, text)) % 11)

        def parse_vote(self, text, n):
            return sum(map(ord, text)) % n

    return Varied()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def both(llm, url, search, engine, index=0, **endpoint):
    """The tree of GSM8K problem `index` in-process and through the endpoint."""
    task = varied(get_task("gsm8k"))
    example = task.get(index)
    local = solve(llm.models, task, example, search, engine)
    remote = solve(None, task, example, search, engine, endpoint=Endpoint(url, MODEL, **endpoint))
    return local, remote


# -- the library ----------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_the_endpoint_builds_the_in_process_tree(llm, server, temperature):
    search = SearchConfig(k=3, b=2, depth=2)
    engine = EngineConfig(temperature=temperature, seed=5, max_new_tokens=8)
    local, remote = both(llm, server.url, search, engine)
    assert remote.signature() == local.signature()
    assert remote.method == "openai" and local.method == "seed-batched"
    assert remote.config["endpoint"] == {
        "backend": "openai",
        "base_url": server.url,
        "chat": False,  # the tiny tokenizer has no chat template: plain completions
        "samples_per_request": "single",
        "model": MODEL,
    }
    assert len(remote.calls) == len(local.calls)
    for a, b in zip(local.calls, remote.calls, strict=True):
        assert (b.phase, b.level, b.requests, b.seeds) == (a.phase, a.level, a.requests, a.seeds)
        assert b.new_tokens == a.new_tokens and b.prompt_tokens == a.prompt_tokens
        assert b.prompt_ids == [] and b.output_ids == []
    assert sum(c.drafted for c in remote.calls) > 0  # the server's per-choice stats, summed
    assert sum(c.accepted for c in remote.calls) > 0
    assert remote.new_tokens == local.new_tokens > 0


def test_a_level_s_requests_are_in_flight_together(llm, server):
    search = SearchConfig(k=3, b=1, depth=1)
    _, remote = both(llm, server.url, search, EngineConfig(max_new_tokens=8))
    generate = next(c for c in remote.calls if c.phase == "generate")
    intervals = generate.trace["intervals"]
    assert generate.requests == 3 and len(intervals) == 3
    assert {i["kind"] for i in intervals} == {"request"}
    assert max(i["start"] for i in intervals) < min(i["end"] for i in intervals)


def test_n_samples_per_request_builds_the_same_tree_at_t0(llm, server):
    """One request per prompt carrying n=k (what OpenAI ToT programs send): the tree of
    requests of n=1, every call's token counts, and one "request" interval over its k jobs."""
    search = SearchConfig(k=3, b=2, depth=2)
    engine = EngineConfig(seed=5, max_new_tokens=8)
    local, remote = both(llm, server.url, search, engine, samples_per_request="n")
    assert remote.signature() == local.signature()
    assert remote.config["endpoint"]["samples_per_request"] == "n"
    for a, b in zip(local.calls, remote.calls, strict=True):
        assert (b.phase, b.level, b.requests, b.seeds) == (a.phase, a.level, a.requests, a.seeds)
        assert b.new_tokens == a.new_tokens and b.prompt_tokens == a.prompt_tokens
        # one request per run of equal prompts (a state's k samples; at T=0 two states with
        # the same thoughts have the same prompt too)
        runs = 1 + sum(x != y for x, y in zip(a.prompt_ids, a.prompt_ids[1:], strict=False))
        assert len(b.trace["intervals"]) == runs
    first = remote.calls[0]  # level 1: one prompt, k samples
    assert first.phase == "generate" and first.requests == 3
    [request] = first.trace["intervals"]
    assert request["kind"] == "request" and tuple(request["branches"]) == (0, 1, 2)
    with pytest.raises(Exception, match="samples_per_request must be 'single' or 'n'"):
        Endpoint(server.url, MODEL, samples_per_request="k")


def test_max_concurrency_one_sends_one_at_a_time(llm, server):
    search = SearchConfig(k=3, b=1, depth=1)
    local, remote = both(llm, server.url, search, EngineConfig(max_new_tokens=8), max_concurrency=1)
    assert remote.signature() == local.signature()
    generate = next(c for c in remote.calls if c.phase == "generate")
    spans = sorted((i["start"], i["end"]) for i in generate.trace["intervals"])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_a_full_server_is_retried_after_retry_after(llm):
    """One running slot and no queue: two of three concurrent requests get 429 with
    Retry-After: 1 and are retried by the client; the tree is the same."""
    running = Running(llm, ServerConfig(model=MODEL, max_running=1, max_queued=0, drain_s=5))
    try:
        search = SearchConfig(k=3, b=1, depth=1)
        local, remote = both(llm, running.url, search, EngineConfig(max_new_tokens=8))
        assert remote.signature() == local.signature()
    finally:
        running.stop()


def test_connect_settles_chat_and_checks_the_model(server):
    assert connect(Endpoint(server.url, MODEL)).chat is False
    assert connect(Endpoint(server.url, MODEL, chat=True)).chat is True  # as given
    with pytest.raises(Exception, match="does not serve model 'nope' \\(it serves tiny\\)"):
        connect(Endpoint(server.url, "nope"))


def test_run_dataset_on_the_endpoint(llm, server, tmp_path):
    task, examples = get_task("gsm8k"), get_task("gsm8k").load()[:2]
    search, engine = SearchConfig(k=2, depth=1), EngineConfig(max_new_tokens=6)
    local = run_dataset(llm.models, task, examples, tmp_path / "a", search, engine, progress=False)
    endpoint = Endpoint(server.url, MODEL)
    remote = run_dataset(
        None, task, examples, tmp_path / "b", search, engine, progress=False, endpoint=endpoint
    )
    assert remote.method == "openai" and local.method == "seed-batched"
    a, b = (read_results(tmp_path / d / "results.jsonl") for d in "ab")
    assert [r["signature"] for r in b] == [r["signature"] for r in a]
    settings = json.loads((tmp_path / "b" / "run.json").read_text())["settings"]
    assert settings["backend"] == "openai" and settings["base_url"] == server.url
    assert settings["model"] == MODEL and settings["chat"] is False


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_p_trees_at_once_on_the_endpoint_give_the_records_of_one_at_a_time(
    llm, server, tmp_path, temperature
):
    """`run --backend openai --concurrency 3`: three trees' requests in flight on the server at
    once; every record equals the one-at-a-time run's (and the in-process tree at T=0)."""
    task, examples = get_task("gsm8k"), get_task("gsm8k").load()[:4]
    search = SearchConfig(k=2, b=1, depth=2)
    engine = EngineConfig(max_new_tokens=6, temperature=temperature, seed=2)
    endpoint = Endpoint(server.url, MODEL)
    for p in (1, 3):
        run_dataset(
            None, task, examples, tmp_path / str(p), search, engine, progress=False,
            endpoint=endpoint, concurrency=p,
        )  # fmt: skip
    one, three = (read_results(tmp_path / str(p) / "results.jsonl") for p in (1, 3))
    by_id = {r["id"]: r["signature"] for r in one}
    assert len(three) == 4 and {r["id"]: r["signature"] for r in three} == by_id
    if temperature == 0:  # the server samples its own way at T > 0 (search.remote)
        local = run_dataset(
            llm.models, task, examples, tmp_path / "local", search, engine, progress=False
        )
        assert local.examples == 4
        here = read_results(tmp_path / "local" / "results.jsonl")
        assert {r["id"]: r["signature"] for r in here} == by_id


def test_endpoint_checks_its_fields():
    with pytest.raises(Exception, match="not an http"):
        Endpoint("127.0.0.1:8000", MODEL)
    with pytest.raises(Exception, match="needs --model"):
        Endpoint("http://127.0.0.1:8000/v1", "")
    with pytest.raises(Exception, match="max_concurrency must be >= 1"):
        Endpoint("http://127.0.0.1:8000/v1", MODEL, max_concurrency=0)


# -- the command line -----------------------------------------------------------------------------
def remote_args(url, *extra):
    return ["--backend", "openai", "--base-url", url, "--model", MODEL, *extra]


TREE = ["--task", "gsm8k", "--k", "2", "--depth", "1", "--max-new-tokens", "6"]


def test_cli_run_equals_the_in_process_run_and_resumes(llm, server, tmp_path, capsys):
    task = get_task("gsm8k")
    search = SearchConfig(k=2, depth=1)
    engine = EngineConfig(temperature=0.7, seed=3, max_new_tokens=6)
    examples = task.load()[:2]
    run_dataset(llm.models, task, examples, tmp_path / "local", search, engine, progress=False)
    reference = read_results(tmp_path / "local" / "results.jsonl")

    out = tmp_path / "remote"
    argv = ["run", *TREE, "--temperature", "0.7", "--seed", "3", "--out", out]
    code, stdout, err = run_cli(capsys, *argv, *remote_args(server.url), "--limit", "1")
    assert code == 0, err
    assert "gsm8k [openai]" in stdout
    code, stdout, err = run_cli(capsys, *argv, *remote_args(server.url), "--limit", "2", "--resume")
    assert code == 0, err
    records = read_results(out / "results.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in reference]
    assert [r["signature"] for r in records] == [r["signature"] for r in reference]
    assert [r["answer"] for r in records] == [r["answer"] for r in reference]
    assert all(r["method"] == "openai" and r["new_tokens"] > 0 for r in records)
    # resuming the endpoint's run with local models is a mixed run: refused before any load
    code, _, err = run_cli(capsys, *argv, "--limit", "3", "--resume")
    assert_one_line_error(code, err, "--resume with other settings", 'backend "local"')


def test_cli_solve_writes_the_tree_and_report(llm, server, tmp_path, capsys):
    code, stdout, err = run_cli(
        capsys, "solve", *TREE, "--index", "1", "--out", tmp_path, *remote_args(server.url)
    )
    assert code == 0, err
    tree = Tree.load(tmp_path / "tree.json")
    assert tree.method == "openai" and len(tree.nodes) == 3  # root + k
    assert (tmp_path / "report.html").stat().st_size > 1000
    task = get_task("gsm8k")
    local = solve(
        llm.models, task, task.get(1), SearchConfig(k=2, depth=1), EngineConfig(max_new_tokens=6)
    )
    assert tree.signature() == local.signature()


def test_cli_no_server_listening_is_one_line(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, _, err = run_cli(capsys, "solve", *TREE, "--out", tmp_path, *remote_args(url))
    assert_one_line_error(code, err, "cannot reach", url, "seedtree serve", "--base-url")


def test_cli_wrong_key_is_one_line(llm, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    running = Running(llm, ServerConfig(model=MODEL, api_key="sekret", drain_s=5))
    try:
        argv = ["solve", *TREE, "--out", tmp_path, *remote_args(running.url)]
        code, _, err = run_cli(capsys, *argv, "--api-key", "wrong")
        assert_one_line_error(code, err, "refused the API key", running.url, "--api-key")
        code, _, err = run_cli(capsys, *argv)  # no key at all
        assert_one_line_error(code, err, "refused the API key")
        monkeypatch.setenv("OPENAI_API_KEY", "sekret")  # the key from the environment
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, err
    finally:
        running.stop()


def test_cli_unknown_model_is_one_line(server, tmp_path, capsys):
    argv = ["solve", *TREE, "--out", tmp_path, "--backend", "openai", "--base-url", server.url]
    code, _, err = run_cli(capsys, *argv, "--model", "nope")
    assert_one_line_error(code, err, "does not serve model 'nope'", "tiny", "--model")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["solve", "--backend", "openai"], ["needs --base-url"]),
        (["solve", "--backend", "openai", "--base-url", "http://127.0.0.1:1/v1"], ["--model"]),
        (["solve", "--backend", "openai", "--base-url", "localhost:8000"], ["not an http"]),
        (["solve", "--base-url", "http://127.0.0.1:1/v1"], ["--base-url", "--backend openai"]),
        (["run", "--out", "OUT", "--model", "x"], ["--model: only for --backend openai"]),
        (
            ["solve", *remote_args("http://127.0.0.1:1/v1"), "--method", "ar"],
            ["--method", "server's model and method"],
        ),
        (["solve", *remote_args("http://127.0.0.1:1/v1"), "--pair", "x"], ["--pair"]),
        (["solve", *remote_args("http://127.0.0.1:1/v1"), "--compare", "sd"], ["--compare"]),
        (["bench", *remote_args("http://127.0.0.1:1/v1")], ["bench", "--backend openai"]),
    ],
)
def test_cli_bad_backend_options_are_one_line(tmp_path, capsys, argv, needles):
    """All refused before any request or model load (port 1: nothing listens)."""
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    out = [] if argv[0] == "run" else ["--out", str(tmp_path)]
    code, _, err = run_cli(capsys, *argv, *out)
    assert_one_line_error(code, err, *needles)


class NotJson(http.server.BaseHTTPRequestHandler):
    """200 with an HTML page at every route, except (when `models_ok`) a valid /v1/models."""

    models_ok = False

    def _answer(self):
        if self.models_ok and self.path.endswith("/models"):
            body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            body = "<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("models_ok, route", [(False, "/models"), (True, "/chat/completions")])
def test_cli_a_200_that_is_not_json_is_one_line(tmp_path, capsys, models_ok, route):
    handler = type("Handler", (NotJson,), {"models_ok": models_ok})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        try:
            argv = ["solve", *TREE, "--out", tmp_path, *remote_args(url, "--chat")]
            code, _, err = run_cli(capsys, *argv)
        finally:
            httpd.shutdown()
    assert_one_line_error(code, err, f"{url}{route}", "not JSON", "--base-url")
