"""The decode benchmark's plumbing on a tiny pair (no timing is asserted)."""

from seedtree.bench.decode import DecodeBenchConfig, markdown_tables, run_decode_bench
from seedtree.llm import LLM
from seedtree.models.tiny import tiny_pair


def test_decode_bench_report_shape():
    llm = LLM(models=tiny_pair(seed=1, context=2048))
    cfg = DecodeBenchConfig(
        n_prompts=2, max_new_tokens=12, repeat=1, dtype="float64", methods=("ar", "sd", "mcsd:2,1")
    )
    report = run_decode_bench(llm, cfg, progress=False)
    median = report["median"]
    assert set(median) == {"t_target_step_s", "ar", "sd", "mcsd:2,1"}
    assert median["ar"]["speedup_vs_ar"] == 1.0
    for name in ("sd", "mcsd:2,1"):
        assert median[name]["identical_to_ar"]
        assert 0 <= median[name]["alpha"] <= 1
        assert median[name]["tokens"] == median["ar"]["tokens"]
    assert len(report["agreement"]["sd"]) == 2
    table = markdown_tables(report)
    assert "| mcsd:2,1 |" in table and "Leviathan ceiling" in table


def test_decode_bench_at_temperature_compares_sampling_modes():
    """T=0.7: coupled variants equal AR token for token; `@speculative` variants sample the
    target's distribution with their own draws and are marked as such, not diagnosed."""
    llm = LLM(models=tiny_pair(seed=1, context=2048))
    cfg = DecodeBenchConfig(
        n_prompts=2,
        max_new_tokens=12,
        repeat=1,
        dtype="float64",
        methods=("ar", "sd", "sd@speculative"),
        temperature=0.7,
        seed=3,
    )
    report = run_decode_bench(llm, cfg, progress=False)
    assert report["median"]["sd"]["identical_to_ar"]
    assert set(report["agreement"]) == {"sd"}
    table = markdown_tables(report)
    assert "T=0.7 (seed 3)" in table and "| sd@speculative |" in table
    assert "- (speculative)" in table


def test_decode_bench_rejects_a_bad_sampling_suffix():
    import pytest

    from seedtree.bench.decode import parse_method
    from seedtree.errors import SeedtreeError

    assert parse_method("mcsd:2,1@speculative", 4).sampling == "speculative"
    with pytest.raises(SeedtreeError, match="@coupled or @speculative"):
        parse_method("sd@gumbel", 4)
