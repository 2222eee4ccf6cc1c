"""`seedtree bench-run`: problems per hour at each P for each method, every record compared with
the method's own P = 1 records and with the first method's at the same P (tiny models)."""

import json

import pytest
from conftest import assert_one_line_error, run_cli

from seedtree.bench.run import RunBenchConfig, run_run_bench
from seedtree.errors import SeedtreeError
from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_bench_run_times_each_p_and_every_record_is_the_same(tmp_path, temperature, capsys):
    llm = LLM(models=tiny_pair(seed=0, context=4096))
    cfg = RunBenchConfig(
        task="gsm8k",
        limit=3,
        concurrency=(1, 3),
        search=SearchConfig(k=2, b=1, depth=2),
        sampling=EngineConfig(temperature=temperature, seed=1, max_new_tokens=6),
        dtype="float64",
    )
    try:
        report = run_run_bench(llm, cfg, out=tmp_path)
    finally:
        llm.close()
    saved = json.loads((tmp_path / "bench_run_gsm8k.json").read_text())
    assert saved["complete"] and saved["costs"] is not None
    assert set(saved["summary"]) == {"1", "3"}
    for p, rows in report["summary"].items():
        assert set(rows) == set(cfg.methods)
        for name, row in rows.items():
            assert row["problems_per_hour"] > 0
            assert row["records_equal_p1"] == "3/3", (p, name)
            assert row["records_equal_first_method"] == "3/3", (p, name)
            assert row[f"vs_{name}"] == 1.0
            labels = {row["vs_p1_label"], row["vs_first_method_label"]}
            assert labels <= {"yes", "-"}  # no divergence, or the run compared with itself
    # the diagnosis says how far it is, tree by tree: every run against the same method's at
    # P = 1 and the first method's at the same P (not itself), 3 trees each
    runs = 3 * len(cfg.methods) - 2
    err = capsys.readouterr().err
    assert (
        f"diagnosis: 1/{3 * runs} tree" in err and f"diagnosis: {3 * runs}/{3 * runs} tree" in err
    )
    table = (tmp_path / "bench_run_gsm8k.md").read_text()
    assert "| 3 | seed-batched |" in table and (tmp_path / "bench_run_gsm8k.png").exists()


def test_bench_run_config_checks():
    with pytest.raises(SeedtreeError, match="concurrency must be >= 1"):
        RunBenchConfig(concurrency=(0, 2))
    with pytest.raises(SeedtreeError, match="at least one"):
        RunBenchConfig(methods=())


def test_bench_run_bad_options_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench-run", "--concurrency", "1 two", "--out", tmp_path)
    assert_one_line_error(code, err, "--concurrency must be whole numbers")
    code, _, err = run_cli(capsys, "bench-run", "--methods", "ar fast", "--out", tmp_path)
    assert_one_line_error(code, err, "unknown method 'fast'")
