"""The many-request benchmark's plumbing on a tiny pair (no timing is asserted)."""

from seedtree.bench.many import ManyBenchConfig, markdown_tables, run_many_bench
from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair


def test_many_bench_report_and_gantts(tmp_path, monkeypatch):
    llm = LLM(models=tiny_pair(seed=1, context=2048))
    monkeypatch.setattr(
        llm,
        "encode",
        lambda text, chat=False: llm.tokenizer(text.lower()[:60], add_special_tokens=False)[
            "input_ids"
        ],
    )
    cfg = ManyBenchConfig(
        n=2,
        max_new_tokens=10,
        repeat=1,
        dtype="float64",
        methods=("ar", "batched-ar", "seed-batched"),
    )
    report = run_many_bench(llm, cfg, out=tmp_path, progress=False)
    for kind in ("same", "different"):
        median = report["workloads"][kind]["median"]
        assert set(median) == {"ar", "batched-ar", "seed-batched"}
        assert all(row["identical_to_ar"] for row in median.values())
        assert median["ar"]["speedup_vs_ar"] == 1.0
        assert (tmp_path / f"gantt_{kind}_float64_seed-batched.png").exists()
    assert "| seed-batched |" in markdown_tables(report)
