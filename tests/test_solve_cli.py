"""`seedtree solve` and `seedtree run` on a tiny pair saved as local folders: outputs, resume,
Ctrl-C, and bad input as one-line errors."""

import json

import pytest
from conftest import save_pair_folders

from seedtree.cli import main
from seedtree.models.tiny import tiny_pair
from seedtree.search import EngineConfig, SearchConfig, Tree, solve
from seedtree.search.results import read_results
from seedtree.search.run import run_dataset
from seedtree.tasks import get_task


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_pair_folders(root, seed=0, context=4096)
    return root


def args(folders, *extra):
    models = ["--draft", str(folders / "draft"), "--target", str(folders / "target")]
    defaults = [*models, "--draft-dtype", "float32", "--max-new-tokens", "6", "--k", "2"]
    return [extra[0], *defaults, *extra[1:]]  # later options win


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_solve_prints_the_tree_and_writes_json_and_report(folders, tmp_path, capsys):
    argv = args(folders, "solve", "--task", "gsm8k", "--index", "3", "--depth", "2")
    code, out, err = run(capsys, [*argv, "--out", str(tmp_path)])
    assert code == 0, err
    tree = Tree.load(tmp_path / "tree.json")
    assert (
        tree.task == "gsm8k" and tree.example_id == "gsm8k-3" and len(tree.nodes) == 5
    )  # root + k + k
    assert "report.html" in out and (tmp_path / "report.html").stat().st_size > 1000
    assert "answer:" in out and "correct:" in out and tree.question.split()[0] in out
    assert sum(line.startswith("*") for line in out.splitlines()) == 2  # the chosen path


def test_run_appends_records_and_resumes(folders, tmp_path, capsys):
    argv = args(folders, "run", "--task", "blocksworld", "--limit", "2", "--out", str(tmp_path))
    code, out, err = run(capsys, [*argv, "--method", "seed-batched", "--depth", "1"])
    assert code == 0, err
    records = read_results(tmp_path / "results.jsonl")
    # appended as each tree finishes: up to --concurrency (default 8) trees are in flight
    assert sorted(r["index"] for r in records) == [0, 1]
    assert "0/2 correct" in out or "1/2 correct" in out or "2/2 correct" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["examples"] == 2 and summary["ids"] == [r["id"] for r in records]
    # without --resume an existing results file is not overwritten
    code, out, err = run(capsys, [*argv, "--depth", "1"])
    assert code == 2 and "pass --resume" in err and len(err.strip().splitlines()) == 1
    # --resume with a larger limit solves only the new problem
    argv3 = [*argv, "--depth", "1", "--resume", "--limit", "3"]
    argv3[argv3.index("--limit") + 1] = "3"
    code, out, err = run(capsys, argv3)
    assert code == 0, err
    indices = [r["index"] for r in read_results(tmp_path / "results.jsonl")]
    assert sorted(indices[:2]) == [0, 1] and indices[2] == 2  # the new one after the others


def test_ctrl_c_keeps_finished_problems(tmp_path):
    pair = tiny_pair(seed=0, context=4096)
    task = get_task("gsm8k")
    seen = []

    def interrupt_after_first(tree):
        seen.append(tree.example_id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    search, engine = SearchConfig(k=2, depth=1), EngineConfig(method="ar", max_new_tokens=4)
    examples = task.load()[:4]
    summary = run_dataset(
        pair,
        task,
        examples,
        tmp_path,
        search,
        engine,
        progress=False,
        on_tree=interrupt_after_first,
    )
    assert summary.interrupted and summary.examples == 2
    summary = run_dataset(
        pair, task, examples, tmp_path, search, engine, resume=True, progress=False
    )
    assert not summary.interrupted and summary.examples == 4
    assert [r["id"] for r in read_results(tmp_path / "results.jsonl")] == [e.id for e in examples]


def test_a_run_shares_one_prefix_cache_across_its_problems(tmp_path):
    """The second problem's first call finds the task's shared prompt text cached by the first,
    and every tree is the one a fresh cache builds."""
    pair = tiny_pair(seed=0, context=4096)
    task = get_task("gsm8k")
    search = SearchConfig(k=2, depth=1)
    engine = EngineConfig(method="seed-batched", max_new_tokens=4)
    examples = task.load()[:2]
    trees = []
    run_dataset(
        pair, task, examples, tmp_path, search, engine, progress=False, on_tree=trees.append
    )
    assert trees[0].calls[0].cached_tokens == 0
    assert trees[1].calls[0].cached_tokens > 0  # the few-shot prefix, prefilled once
    for tree, example in zip(trees, examples, strict=True):
        alone = solve(pair, task, example, search, engine)
        assert tree.signature() == alone.signature()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["solve", "--task", "chess"], "unknown task 'chess'"),
        (["solve", "--task", "gsm8k", "--index", "99999"], "out of range"),
        (["solve", "--k", "0"], "k must be >= 1"),
        (["solve", "--depth", "0"], "depth must be >= 1"),
        (["solve", "--temperature", "-1"], "temperature must be >= 0"),
        (["solve", "--data", "/nonexistent.jsonl"], "does not exist"),
        (["run", "--out", "x", "--limit", "0"], "--limit must be >= 1"),
        (["run", "--out", "x", "--start", "5000"], "--start 5000 is out of range"),
        (["bench", "--start", "5000"], "--start 5000 is out of range"),
        (["bench", "--methods", "ar fast"], "unknown method 'fast' in --methods"),
        (["bench", "--methods", "ar sd+lookahead"], "METHOD+nodedup or METHOD+massM"),
        (["bench", "--data", "/nonexistent.jsonl"], "does not exist"),
        (["bench", "--repeat", "0"], "--repeat must be >= 1"),
    ],
)
def test_bad_input_is_one_line(folders, capsys, extra, message):
    code, out, err = run(capsys, args(folders, *extra))
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
