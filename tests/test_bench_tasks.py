"""A CI-sized `seedtree bench` on tiny models: 2 problems, 2 methods; JSON schema, same tree."""

import json
from dataclasses import replace
from importlib.resources import files

import pytest

from seedtree.bench.tasks import TaskBenchConfig, markdown_table, parse_variant, run_task_bench
from seedtree.decoding import SpecConfig
from seedtree.errors import SeedtreeError
from seedtree.models.tiny import tiny_pair
from seedtree.search import SearchConfig, Tree

ROW_KEYS = {
    "wall_s",
    "generate_s",
    "evaluate_s",
    "finish_s",
    "new_tokens",
    "tokens_per_s",
    "target_forwards",
    "alpha",
    "peak_rss_mb",
    "score",
    "correct",
    "unparsed_values",
    "same_tree_as_ar",
    "speedup_vs_ar",
    "x_bound",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = TaskBenchConfig(
        task="gsm8k",
        limit=2,
        methods=("ar", "seed-batched"),
        repeat=2,
        search=SearchConfig(k=2, b=1, depth=2),
        max_new_tokens=6,
        dtype="float64",
        draft_dtype="float64",
    )
    pair = tiny_pair(seed=0, context=4096)
    return run_task_bench(pair, cfg, out=out, progress=False), out


def test_bench_json_schema_and_same_tree(report):
    report, out = report
    saved = json.loads((out / "bench_gsm8k.json").read_text())
    assert saved["examples"] == ["gsm8k-0", "gsm8k-1"] == report["examples"]
    assert set(saved) >= {"config", "pair", "machine", "c", "bound_s", "median", "passes"}
    assert set(saved["machine"]) >= {"cores", "ram_gib", "torch_threads"}
    assert saved["c"]["c"] > 0 and saved["bound_s"] > 0
    assert len(saved["passes"]) == 2
    for method in ("ar", "seed-batched"):
        row = saved["median"][method]
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["same_tree_as_ar"] is True
        assert row["new_tokens"] > 0 and row["target_forwards"] > 0
        assert row["wall_s_min"] <= row["wall_s"] <= row["wall_s_max"]
        assert row["x_bound"] > 0
    assert saved["median"]["ar"]["speedup_vs_ar"] == 1.0
    assert saved["median"]["ar"]["alpha"] is None  # ar drafts nothing
    assert 0 <= saved["median"]["seed-batched"]["alpha"] <= 1
    # AR: one target forward per generated token plus one prefill per request
    for p in saved["passes"]:
        assert p["ar"]["new_tokens"] == p["seed-batched"]["new_tokens"]


def test_bench_writes_table_plots_and_gantts(report):
    _, out = report
    table = (out / "bench_gsm8k.md").read_text()
    assert "| ar |" in table and "| seed-batched |" in table and "same tree as ar" in table
    for name in ("bench_gsm8k.png", "gantt_gsm8k_ar.png", "gantt_gsm8k_seed-batched.png"):
        assert (out / name).stat().st_size > 5_000
    saved = json.loads((out / "trees_gsm8k_seed-batched.json").read_text())
    trees = [Tree.from_dict(t) for t in saved]
    assert [t.example_id for t in trees] == ["gsm8k-0", "gsm8k-1"]
    assert all(t.calls and t.calls[0].output_ids for t in trees)


def test_bench_takes_sampling_and_data(tmp_path):
    """T > 0: the run samples (seeded); with coupled sampling (default) every method builds
    AR's trees, with speculative sampling "same tree as ar" is not claimed; --data is read."""
    from seedtree.search import EngineConfig

    lines = (files("seedtree") / "data" / "gsm8k" / "test.jsonl").read_text().splitlines()
    data = tmp_path / "two.jsonl"
    data.write_text("\n".join(lines[5:7]) + "\n")
    cfg = TaskBenchConfig(
        task="gsm8k",
        limit=5,
        methods=("ar", "seed"),
        search=SearchConfig(k=2, b=1, depth=1),
        max_new_tokens=4,
        dtype="float64",
        draft_dtype="float64",
        sampling=EngineConfig(temperature=0.8, seed=3),
        data=str(data),
    )
    report = run_task_bench(tiny_pair(seed=0, context=4096), cfg, progress=False)
    assert len(report["examples"]) == 2  # the file's two problems, not the bundled 1319
    assert all(row["same_tree_as_ar"] is True for row in report["median"].values())
    assert report["agreement"]["seed"]["verdict"] == "yes"
    assert report["config"]["sampling"]["temperature"] == 0.8
    assert "T=0.8 (coupled, seed 3)" in markdown_table(report)
    speculative = replace(
        cfg, sampling=EngineConfig(temperature=0.8, seed=3, sampling="speculative")
    )
    report = run_task_bench(tiny_pair(seed=0, context=4096), speculative, progress=False)
    assert all(row["same_tree_as_ar"] is None for row in report["median"].values())
    assert not report["agreement"] and "T=0.8 (speculative, seed 3)" in markdown_table(report)
    with pytest.raises(SeedtreeError, match="no gsm8k problems from index 2"):
        run_task_bench(tiny_pair(seed=0, context=4096), replace(cfg, start=2), progress=False)


def test_a_method_with_and_without_lookup_and_dedup_in_one_pass():
    """`seed-batched+lookup6` is seed-batched with lookup drafting, `+nodedup` without identical
    greedy requests decoded once: rows in one pass, the same trees as ar, the lookup row with
    candidates accepted from lookup, copied tokens only where dedup is on."""
    cfg = TaskBenchConfig(
        task="gsm8k",
        limit=2,  # one problem's tree gives lookup a single chance at most since session 12
        methods=("ar", "seed-batched", "seed-batched+lookup6", "seed-batched+lookup6+nodedup"),
        search=SearchConfig(k=3, b=2, depth=2),
        max_new_tokens=16,
        dtype="float64",
        draft_dtype="float64",
    )
    report = run_task_bench(tiny_pair(seed=0, context=4096), cfg, progress=False)
    rows = report["median"]
    assert rows["seed-batched"]["accepted_lookup"] == 0
    assert rows["seed-batched+lookup6"]["accepted_lookup"] > 0
    assert report["agreement"]["seed-batched+lookup6"]["verdict"] == "yes"
    assert report["agreement"]["seed-batched+lookup6+nodedup"]["verdict"] == "yes"
    assert rows["seed-batched"]["copied_tokens"] > 0 and rows["ar"]["copied_tokens"] == 0
    assert rows["seed-batched+lookup6+nodedup"]["copied_tokens"] == 0
    assert rows["seed-batched+lookup6+nodedup"]["accepted_lookup"] > 0
    assert "dedup on" in markdown_table(report)
    with pytest.raises(SeedtreeError, match="METHOD\\+nodedup"):
        parse_variant("sd+nodup", SpecConfig())
    assert parse_variant("mcsd-batched+mass0.8", SpecConfig())[1].tree_mass == 0.8
    with pytest.raises(SeedtreeError, match="tree_mass must be in"):
        parse_variant("mcsd-batched+mass2", SpecConfig())
    with pytest.raises(SeedtreeError, match="METHOD\\+massM"):
        parse_variant("mcsd-batched+massive", SpecConfig())


def test_a_stopped_bench_keeps_its_passes_and_shows_a_line_per_tree(tmp_path, monkeypatch, capsys):
    """Each finished pass is in bench_<task>.json at once (written whole); stderr, not a
    terminal here, has one progress line per tree."""
    import seedtree.bench.tasks as bench

    solve, calls = bench.solve, []

    def stopped_in_pass_two(*args, **kw):
        calls.append(1)
        if len(calls) == 5:  # 2 warm-ups, pass 1's 2 trees, then pass 2's first
            raise KeyboardInterrupt
        return solve(*args, **kw)

    monkeypatch.setattr(bench, "solve", stopped_in_pass_two)
    cfg = TaskBenchConfig(
        task="gsm8k",
        limit=1,
        methods=("ar", "seed-batched"),
        repeat=2,
        search=SearchConfig(k=2, b=1, depth=1),
        max_new_tokens=4,
        dtype="float64",
        draft_dtype="float64",
    )
    with pytest.raises(KeyboardInterrupt):
        run_task_bench(tiny_pair(seed=0, context=4096), cfg, out=tmp_path)
    saved = json.loads((tmp_path / "bench_gsm8k.json").read_text())
    assert saved["complete"] is False and len(saved["passes"]) == 1
    assert set(saved["passes"][0]) == {"ar", "seed-batched"}
    assert saved["pass_orders"] == [["ar", "seed-batched"]]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith("bench gsm8k")] == [
        "bench gsm8k: 1/4 tree",
        "bench gsm8k: 2/4 tree",
    ]
