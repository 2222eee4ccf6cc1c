"""`seedtree bench`, `solve --compare`: the method order rotates between passes, the "same tree as
ar" column says `yes`, `tie (...)` or `DEFECT (...)`, and a DEFECT makes the command exit 1."""

import json

import pytest
import torch
from conftest import save_pair_folders
from test_agreement import planted, target_ranking

import seedtree.bench.tasks as bench_tasks
import seedtree.search as search_module
from seedtree.bench.tasks import TaskBenchConfig, markdown_table, run_task_bench
from seedtree.cli import main
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig, solve
from seedtree.tasks import get_task

CALL, REQUEST, POSITION = 1, 0, 1  # the evaluation call of level 1


def config(methods, repeat=1) -> TaskBenchConfig:
    return TaskBenchConfig(
        task="gsm8k",
        limit=1,
        methods=methods,
        repeat=repeat,
        search=SearchConfig(k=2, b=1, depth=1),
        max_new_tokens=6,
        dtype="float64",
        draft_dtype="float64",
    )


def plant_in(monkeypatch, module, method: str, rank: int = 1, token: int | None = None) -> None:
    """`method`'s trees (after the warm-up, whose budget is 4) get the target's `rank`-th token
    (or `token`) at CALL, REQUEST, POSITION: a method that commits a non-argmax token."""
    real = module.solve

    def solve(pair, task, example, search, engine, spec=None, **kwargs):
        tree = real(pair, task, example, search, engine, spec, **kwargs)
        if engine.method != method or engine.max_new_tokens == 4:
            return tree
        choice, call = token, tree.calls[CALL]
        if choice is None:
            prefix = call.output_ids[REQUEST][:POSITION]
            choice = target_ranking(pair, call.prompt_ids[REQUEST], prefix)[rank]
        return planted(tree, CALL, REQUEST, POSITION, choice)

    monkeypatch.setattr(module, "solve", solve)


def test_method_order_rotates_and_identical_trees_say_yes(monkeypatch):
    order = []
    real = bench_tasks.solve

    def solve(pair, task, example, search, engine, spec=None):
        if engine.max_new_tokens != 4:  # not the warm-up
            order.append(engine.method)
        return real(pair, task, example, search, engine, spec)

    monkeypatch.setattr(bench_tasks, "solve", solve)
    methods = ("ar", "sd", "seed-batched")
    report = run_task_bench(tiny_pair(seed=0, context=4096), config(methods, 3), progress=False)
    expected = [["ar", "sd", "seed-batched"], ["sd", "seed-batched", "ar"]]
    expected.append(["seed-batched", "ar", "sd"])
    assert report["pass_orders"] == expected and order == sum(expected, [])
    assert list(report["median"]) == list(methods)  # the table keeps the configured order
    for method in methods:
        assert report["agreement"][method]["verdict"] == "yes"
        row = report["median"][method]
        assert row["same_tree_as_ar"] is True
    rows = report["median"]
    assert rows["ar"]["mean_draft_len"] is None  # ar verifies no drafts
    assert rows["sd"]["mean_draft_len"] > 0 and rows["sd"]["prefix_hit_rate"] == 0
    assert rows["seed-batched"]["prefix_hit_rate"] > 0  # later calls reuse earlier prompts' KV
    table = markdown_table(report)
    assert "| prefix hit | draft len |" in table
    assert "Method order per pass: ar sd seed-batched; sd seed-batched ar;" in table


def test_engine_statistics_are_read_when_calls_carry_them(monkeypatch):
    real = bench_tasks.solve

    def solve(pair, task, example, search, engine, spec=None, **kwargs):
        tree = real(pair, task, example, search, engine, spec, **kwargs)
        for call in tree.calls:  # hits and rounds as the engine records them
            call.prompt_tokens, call.cached_tokens = 10, 5
            call.drafted, call.rounds = 6, 2
        return tree

    monkeypatch.setattr(bench_tasks, "solve", solve)
    report = run_task_bench(tiny_pair(seed=0, context=4096), config(("ar",)), progress=False)
    assert report["median"]["ar"]["prefix_hit_rate"] == 0.5
    assert "| 0.50 | 3.00 |" in markdown_table(report)


def test_forced_tie_shows_as_tie_in_the_table(monkeypatch):
    """AR's token at the planted position gets a twin with the same lm_head row (a higher id, so
    AR keeps its own token): a method emitting the twin is a tie, with gap exactly 0."""
    pair = tiny_pair(seed=0, context=4096)
    task, cfg = get_task("gsm8k"), config(("ar", "sd"))
    tree = solve(pair, task, task.get(0), cfg.search, EngineConfig(method="ar", max_new_tokens=6))
    token, twin = tree.calls[CALL].output_ids[REQUEST][POSITION], pair.vocab_size - 1
    assert token < twin
    with torch.no_grad():
        pair.target.lm_head.weight[twin] = pair.target.lm_head.weight[token]
    plant_in(monkeypatch, bench_tasks, "sd", token=twin)
    report = run_task_bench(pair, cfg, progress=False)
    verdict = report["agreement"]["sd"]
    assert verdict["verdict"] == "tie" and verdict["label"].startswith("tie (gap 0 <= noise")
    d = verdict["divergences"][0]
    assert (d["call"], d["request"], d["diagnosis"]["position"]) == (CALL, REQUEST, POSITION)
    assert "| tie (gap 0 <= noise" in markdown_table(report)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_pair_folders(root, seed=0, context=4096)
    return root


def cli_args(folders, *extra):
    models = ["--draft", str(folders / "draft"), "--target", str(folders / "target")]
    return [*extra, *models, "--draft-dtype", "float32", "--max-new-tokens", "6", "--k", "2"]


def test_bench_exits_1_on_a_defect_and_names_it(folders, tmp_path, monkeypatch, capsys):
    plant_in(monkeypatch, bench_tasks, "sd", rank=1)
    argv = cli_args(folders, "bench", "--limit", "1", "--depth", "1", "--methods", "ar sd")
    code = main([*argv, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1 and "DEFECT: sd" in err
    assert "| DEFECT (gap " in out and f"call {CALL} (evaluate, level 1), request 0" in out
    saved = json.loads((tmp_path / "bench_gsm8k.json").read_text())
    d = saved["agreement"]["sd"]["divergences"][0]
    assert d["verdict"] == "DEFECT" and d["diagnosis"]["position"] == POSITION
    assert saved["agreement"]["ar"]["verdict"] == "yes"


def test_solve_compare_says_yes_or_defect(folders, tmp_path, monkeypatch, capsys):
    argv = cli_args(folders, "solve", "--depth", "1", "--compare", "seed-batched")
    code = main([*argv, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "same tree as ar (thoughts, values, selection, answer): yes" in out
    assert (tmp_path / "tree.json").exists() and (tmp_path / "tree_ar.json").exists()
    plant_in(monkeypatch, search_module, "sd", rank=1)
    code = main(
        [*cli_args(folders, "solve", "--depth", "1", "--compare", "sd"), "--out", str(tmp_path)]
    )
    out, _ = capsys.readouterr()
    assert code == 1 and "same tree as ar (thoughts, values, selection, answer): DEFECT" in out
    assert "request 0, token 1" in out


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--compare", "fast"], "unknown method 'fast' for --compare"),
        (
            ["--compare", "sd", "--temperature", "0.5", "--sampling", "speculative"],
            "--compare at --temperature > 0 needs --sampling coupled",
        ),
    ],
)
def test_solve_compare_bad_input_is_one_line(folders, capsys, extra, needle):
    code = main(cli_args(folders, "solve", *extra))
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and needle in err
    assert len(err.strip().splitlines()) == 1


def test_solve_compare_at_temperature_with_progress(folders, tmp_path, capsys):
    """T=0.7, seed 1 (coupled sampling): `--compare` builds ar's sampled tree too and says yes;
    each engine call is shown on stderr as it completes, with the elapsed time."""
    argv = cli_args(folders, "solve", "--depth", "1", "--compare", "seed-batched")
    code = main([*argv, "--temperature", "0.7", "--seed", "1", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "same tree as ar (thoughts, values, selection, answer): yes" in out
    assert "[seed-batched] level 1 generate:" in err and "[ar] level 1 evaluate:" in err
    assert "(elapsed " in err
