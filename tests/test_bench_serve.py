"""A CI-sized `seedtree bench-serve` on tiny float64 models: 2 GSM8K problems, depth 1, one pass
of the three modes (in-process, the server with n=1 requests, the server with n=k requests):
the files and their rows, the same trees at T=0, ratios computed from the measured times, the
requests each server mode sent; bad options are one line before any model loads."""

import json

import pytest
from conftest import DEVICE, assert_one_line_error, run_cli

from seedtree.bench.serve import MODES, ServeBenchConfig, run_serve_bench
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig, Tree

ROW_KEYS = {
    "wall_s",
    "generate_s",
    "evaluate_s",
    "new_tokens",
    "tokens_per_s",
    "http_requests",
    "score",
    "same_tree_as_inprocess",
    "x_inprocess",
    "http_overhead_pct",
    "x_singles",
}
K = 2


def load_trees(out, mode: str) -> list[Tree]:
    saved = json.loads((out / f"trees_serve_gsm8k_{mode}.json").read_text())
    return [Tree.from_dict(t) for t in saved]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_serve")
    llm = LLM(models=tiny_pair(seed=0, context=4096, device=DEVICE))
    cfg = ServeBenchConfig(
        task="gsm8k",
        limit=2,
        repeat=1,
        search=SearchConfig(k=K, b=1, depth=1),
        engine=EngineConfig(max_new_tokens=6),
        dtype="float64",
        draft_dtype="float64",
    )
    return run_serve_bench(llm, cfg, out=out, progress=False), out


def test_bench_serve_writes_the_json_the_table_and_the_trees(report):
    report, out = report
    saved = json.loads((out / "bench_serve_gsm8k.json").read_text())
    assert saved["examples"] == ["gsm8k-0", "gsm8k-1"] == report["examples"]
    assert saved["modes"] == list(MODES) == list(saved["median"])
    assert set(saved) >= {"config", "pair", "server", "machine", "median", "passes"}
    assert saved["server"]["method"] == "seed-batched" and saved["server"]["fresh_per_tree"]
    assert saved["pass_orders"] == [list(MODES)] and len(saved["passes"]) == 1
    for mode in MODES:
        row = saved["median"][mode]
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["wall_s"] > 0 and row["new_tokens"] > 0
        assert row["wall_s_min"] <= row["wall_s"] <= row["wall_s_max"]
    table = (out / "bench_serve_gsm8k.md").read_text()
    assert "same tree as inprocess" in table and "HTTP overhead" in table
    for mode in MODES:
        assert f"| {mode} |" in table
        trees = load_trees(out, mode)
        assert [t.example_id for t in trees] == ["gsm8k-0", "gsm8k-1"]
        assert {t.method for t in trees} == {"seed-batched" if mode == "inprocess" else "openai"}


def test_bench_serve_same_trees_at_t0_and_ratios_from_the_times(report):
    report, out = report
    [row] = report["passes"]
    assert all(row[m]["same_tree_as_inprocess"] is True for m in MODES)
    assert all(report["median"][m]["same_tree_as_inprocess"] is True for m in MODES)
    tokens = {row[m]["new_tokens"] for m in MODES}
    assert len(tokens) == 1  # the same trees: the same tokens
    base, singles = row["inprocess"]["wall_s"], row["server-singles"]["wall_s"]
    for mode in MODES:
        r = row[mode]
        assert r["x_inprocess"] == pytest.approx(r["wall_s"] / base)
        assert r["http_overhead_pct"] == pytest.approx(100 * (r["wall_s"] / base - 1))
    assert row["server-n"]["x_singles"] == pytest.approx(row["server-n"]["wall_s"] / singles)
    assert row["inprocess"]["x_singles"] is None and row["server-singles"]["x_singles"] is None
    # requests: one per (prompt, sample) with n=1; with n=k one per prompt (a run of equal
    # prompts in a call: the k samples of a state)
    trees = load_trees(out, "inprocess")
    jobs = sum(c.requests for t in trees for c in t.calls)
    prompts = sum(
        1 + sum(a != b for a, b in zip(c.prompt_ids, c.prompt_ids[1:], strict=False))
        for t in trees
        for c in t.calls
    )
    assert prompts < jobs  # some state had k samples
    assert row["inprocess"]["http_requests"] is None
    assert row["server-singles"]["http_requests"] == jobs
    assert row["server-n"]["http_requests"] == prompts


def test_bench_serve_config_refuses_a_method_the_server_cannot_run():
    with pytest.raises(SeedtreeError, match="--method ar does not run on the server's step"):
        ServeBenchConfig(engine=EngineConfig(method="ar"))


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--limit", "0"], ["--limit must be >= 1"]),
        (["--repeat", "0"], ["--repeat must be >= 1"]),
        (["--start", "100000"], ["--start 100000 is out of range"]),
        (["--temperature", "-1"], ["temperature"]),
        (["--task", "nope"], ["nope"]),
    ],
)
def test_bench_serve_bad_options_are_one_line(tmp_path, capsys, argv, needles):
    """Refused before any model loads (no --pair is prepared in the test)."""
    code, _, err = run_cli(capsys, "bench-serve", *argv, "--out", tmp_path)
    assert_one_line_error(code, err, *needles)
