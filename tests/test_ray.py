"""`seedtree run --ray` and `seedtree serve --ray` on a real local Ray (one instance for the
module, 4 logical CPUs) and a tiny pair saved as local folders that every replica loads itself.
At T=0 a run on two replicas writes the single-process run's records (but for timing and order),
each problem once: also when a replica is killed mid-run, and across Ctrl-C and --resume. Models
missing on a node are one line naming it. Two Ray Serve replicas answer the openai client with
`LLM.generate`'s text. The driver loop's corner cases, and a missing Ray: `test_ray_driver.py`."""

import logging
import socket

import openai
import pytest
import ray
from conftest import run_cli, save_pair_folders

from seedtree.cli import main
from seedtree.decoding import SamplingParams, SpecConfig
from seedtree.distributed import ray_serve
from seedtree.distributed.cluster import RayConfig
from seedtree.distributed.ray_run import run_on_ray
from seedtree.llm import ModelSettings
from seedtree.search import EngineConfig, SearchConfig
from seedtree.search.results import open_run, read_results
from seedtree.search.run import TIMING
from seedtree.server import ServerConfig
from seedtree.tasks import get_task

N = 6  # GSM8K problems per run
WAIT_S = 120
# the CLI's options below, as the library takes them
SEARCH, ENGINE = SearchConfig(k=2, depth=1), EngineConfig(method="ar", max_new_tokens=4)
PROMPTS = ["q: 2+3=? a:", "the cat sat on", "list: 1, 2, 3,", "hello world. ", "x = 7 * 6"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray for this module; its workers inherit this process's environment, so they
    import the seedtree the tests import."""
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_pair_folders(root, seed=0, context=4096)
    return root


def models_of(folders) -> ModelSettings:
    return ModelSettings(
        draft=str(folders / "draft"), target=str(folders / "target"), draft_dtype="float32"
    )


def run_argv(folders, out, *extra):
    models = ["--draft", folders / "draft", "--target", folders / "target"]
    base = ["run", "--task", "gsm8k", "--out", out, *models, "--draft-dtype", "float32"]
    return [*base, "--method", "ar", "--depth", 1, "--k", 2, "--max-new-tokens", 4, *extra]


@pytest.fixture(scope="module")
def reference(folders, tmp_path_factory):
    """The single-process run's records by id, timing left out."""
    out = tmp_path_factory.mktemp("single")
    assert main([str(a) for a in run_argv(folders, out, "--limit", N)]) == 0
    return by_id(read_results(out / "results.jsonl"))


def by_id(records: list[dict]) -> dict[str, dict]:
    """Records by id without their timing fields; every id must come once."""
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"a problem recorded twice: {ids}"
    return {r["id"]: {k: v for k, v in r.items() if k not in TIMING} for r in records}


def open_folder(out, resume=False):
    return open_run(out, {"test": "ray"}, resume)


def test_two_replicas_write_the_single_process_records_and_resume(
    cluster, folders, reference, tmp_path, capsys
):
    # an unfinished run (the first half), then --resume: only the rest is solved
    ray_options = ["--ray", "auto", "--replicas", 2]
    code, _, err = run_cli(capsys, *run_argv(folders, tmp_path, "--limit", N // 2, *ray_options))
    assert code == 0, err
    first = read_results(tmp_path / "results.jsonl")
    assert sorted(r["index"] for r in first) == list(range(N // 2))
    argv = run_argv(folders, tmp_path, "--limit", N, "--resume", *ray_options)
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    records = read_results(tmp_path / "results.jsonl")
    assert records[: N // 2] == first  # finished problems untouched, not solved again
    assert by_id(records) == reference
    assert f"/{N} correct" in out


def test_a_killed_replica_loses_nothing_and_records_nothing_twice(
    cluster, folders, reference, tmp_path
):
    killed: list[str] = []

    def kill_the_first_solver(record, actor):
        if not killed:
            killed.append(record["id"])
            ray.kill(actor)  # it is handed the next problem at once

    examples = get_task("gsm8k").load()[:N]
    with open_folder(tmp_path) as folder:
        run = run_on_ray(
            models_of(folders), get_task("gsm8k"), examples, folder, SEARCH, ENGINE,
            SpecConfig(), RayConfig(replicas=2), progress=False,
            on_record=kill_the_first_solver,
        )  # fmt: skip
    assert run.lost >= 1 and run.started >= 3 and run.retried
    assert run.summary.examples == N and run.summary.errors == 0
    assert by_id(read_results(tmp_path / "results.jsonl")) == reference


def test_ctrl_c_keeps_finished_work_and_resume_skips_it(cluster, folders, reference, tmp_path):
    def interrupt_after_two(record, actor):
        seen.append(record["id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    seen: list[str] = []
    task, models = get_task("gsm8k"), models_of(folders)
    examples = task.load()[:N]
    with open_folder(tmp_path) as folder:
        run = run_on_ray(
            models, task, examples, folder, SEARCH, ENGINE, None, RayConfig(replicas=2),
            progress=False, on_record=interrupt_after_two,
        )  # fmt: skip
    assert run.summary.interrupted and run.summary.ids == seen
    resumed: list[str] = []
    with open_folder(tmp_path, resume=True) as folder:
        run = run_on_ray(
            models, task, examples, folder, SEARCH, ENGINE, None, RayConfig(replicas=2),
            progress=False, on_record=lambda record, actor: resumed.append(record["id"]),
        )  # fmt: skip
    assert not run.summary.interrupted and sorted(seen + resumed) == sorted(reference)
    assert by_id(read_results(tmp_path / "results.jsonl")) == reference


def test_models_missing_on_a_node_name_the_node_and_the_fix(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEEDTREE_HOME", str(tmp_path / "empty"))  # the replicas get it too
    argv = ["run", "--task", "gsm8k", "--limit", 1, "--out", tmp_path / "out", "--ray"]
    code, _, err = run_cli(capsys, *argv, "--depth", 1, "--k", 2, "--max-new-tokens", 4)
    # one error line (Ray may print its own log lines on stderr too)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    node = ray.util.get_node_ip_address()
    fix = ["seedtree models prepare --pair qwen2.5-coder", "on that node", "SEEDTREE_HOME"]
    for needle in [f"replica on node {node}", "not prepared", *fix]:
        assert needle in errors[0], err
    assert read_results(tmp_path / "out" / "results.jsonl") == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_two_replicas_answers_like_llm_generate(cluster, folders):
    from ray import serve

    models = models_of(folders)
    config = ServerConfig(model="tiny", max_queued=16, drain_s=1)
    url = ray_serve.start(models, config, RayConfig(replicas=2), "127.0.0.1", free_port())
    try:
        states = serve.status().applications[ray_serve.APP].deployments[ray_serve.APP]
        running = [
            n for s, n in states.replica_states.items() if getattr(s, "value", s) == "RUNNING"
        ]
        assert running == [2], states
        llm = models.load(progress=False)
        params = SamplingParams(temperature=0.0, max_new_tokens=16)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=WAIT_S)
        for prompt in PROMPTS * 2:  # one at a time, as `generate` decodes it: same shapes
            [expected] = llm.generate(prompt, params, method="seed-batched")
            r = client.completions.create(model="tiny", prompt=prompt, max_tokens=16, temperature=0)
            assert r.choices[0].text == expected.text, prompt
            assert r.choices[0].finish_reason == expected.finish_reason
    finally:
        ray_serve.stop()
