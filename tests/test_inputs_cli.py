"""Bad input at the command line: text files that are not UTF-8, JSONL fields of the wrong type,
numbers out of range, model paths that do not exist, outputs that cannot be written. Each is one
line `error: <problem>: <fix>` with exit status 2, before any model loads."""

import json
import time

import pytest
from conftest import assert_one_line_error, run_cli, save_pair_folders

from seedtree.tasks import get_task


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_pair_folders(root, seed=0, context=4096)
    return root


def models(folders) -> list[str]:
    return ["--draft", str(folders / "draft"), "--target", str(folders / "target")]


def run(capsys, *argv):
    return run_cli(capsys, *argv)


NO_MODELS = ["--draft", "/no/such/draft", "--target", "/no/such/target"]


def test_prompts_file_that_is_not_utf8_names_file_and_line(capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"first prompt\nsecond \xff\xfe prompt\n")
    code, _, err = run(capsys, "generate", "--prompts-file", prompts)
    assert_one_line_error(code, err, f"{prompts}:2 is not UTF-8", "save the file as UTF-8")


@pytest.mark.parametrize("value", ["null", "42", '["a"]'])
def test_jsonl_prompt_of_the_wrong_type(capsys, tmp_path, value):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(f'{{"prompt": "fine"}}\n{{"prompt": {value}}}\n')
    code, _, err = run(capsys, "generate", "--prompts-file", prompts)
    assert_one_line_error(code, err, f"{prompts}:2: 'prompt' must be a string, got {value}")


def test_prompts_file_that_is_a_folder(capsys, tmp_path):
    code, _, err = run(capsys, "generate", "--prompts-file", tmp_path)
    assert_one_line_error(code, err, "is not a file")


def test_data_lines_that_are_bad_are_skipped_with_file_and_line(capsys, tmp_path, folders):
    bundled = get_task("gsm8k").load()[:2]
    records = [{"question": p.question, "answer": p.answer} for p in bundled]
    data = tmp_path / "data.jsonl"
    data.write_bytes(
        json.dumps(records[0]).encode()
        + b"\n\xff\xfe not utf-8\n"
        + b'{"question": null, "answer": "#### 3"}\n'
        + json.dumps(records[1]).encode()
        + b"\n"
    )
    out = tmp_path / "out"
    argv = ["solve", *models(folders), "--data", data, "--index", 1, "--out", out]
    code, stdout, err = run(capsys, *argv, "--depth", 1, "--k", 2, "--max-new-tokens", 4)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert f"{data}:2: skipped" in warnings[0] and "not UTF-8" in warnings[0]
    assert f"{data}:3: skipped" in warnings[1] and "'question' must be a string" in warnings[1]
    tree = json.loads((out / "tree.json").read_text())
    assert tree["question"] == bundled[1].question  # index 1 = the second good record


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["generate", "--prompt", "x", "--seed", 2**64], ["seed must be <= 9223372036854775807"]),
        (["generate", "--prompt", "x", "--seed", -3], ["seed must be >= 0"]),
        (["generate", "--prompt", "x", "--n", 100_000], ["n must be <= 256"]),
        (["generate", "--prompt", "x", "--temperature", "nan"], ["finite number"]),
        (["generate", "--prompt", "x", "--top-p", "inf"], ["top_p must be a finite number"]),
        (["generate", "--prompt", "x", "--k-config", "64,64"], ["draft-tree nodes"]),
        (["generate", "--prompt", "x", "--tree-mass", 0], ["tree_mass must be in (0, 1]"]),
        (["solve", "--tree-mass", "nan"], ["tree_mass must be a finite number", "nan"]),
        (["solve", "--seed", 10**20], ["seed must be <= 9223372036854775807"]),
        (["solve", "--k", 10**9], ["k must be <= 256"]),
        (["solve", "--depth", 10**9], ["depth must be <= 256"]),
        (["solve", "--n-evaluate", 0], ["n_evaluate must be >= 1"]),
        (["solve", "--threshold", "nan"], ["threshold must be a finite number"]),
        (["solve", "--index", 10**30], ["out of range"]),
        (["run", "--out", "x", "--start", -1], ["--start >= 0"]),
    ],
)
def test_numbers_out_of_range(capsys, argv, needles):
    code, _, err = run(capsys, *argv, *NO_MODELS)
    assert_one_line_error(code, err, *needles)


def test_missing_local_path_fails_at_once(capsys, tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    for path in ("models/drafty", "./drafty", "~/surely-no-such-model", "a/b/c"):
        code, _, err = run(capsys, "generate", "--prompt", "x", "--draft", path, "--target", path)
        assert_one_line_error(code, err, "does not exist", "pass an existing folder")


def test_hugging_face_id_is_resolved_offline_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    code, _, err = run(
        capsys, "generate", "--prompt", "x", "--draft", "nobody/none", "--target", "nobody/none"
    )
    assert time.perf_counter() - start < 10  # no network retries
    assert_one_line_error(code, err, "'nobody/none' is neither a local folder nor in the local")
    assert "HF_HUB_OFFLINE=0" in err


def test_model_path_that_is_a_file(capsys, folders):
    config = folders / "draft" / "config.json"
    code, _, err = run(capsys, "generate", "--prompt", "x", "--draft", config, "--target", config)
    assert_one_line_error(code, err, "is a file: pass the model's folder")


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "--out", "{file}/sub"],
        ["run", "--out", "{file}/sub"],
        ["run", "--out", "{file}"],
        ["bench", "--out", "{file}/sub"],
        ["demo", "--out", "{file}/sub"],
        ["generate", "--prompt", "x", "--trace", "{file}/trace.json"],
        ["generate", "--prompt", "x", "--gantt", "{file}/g.png"],
        ["generate", "--prompt", "x", "--trace", "{dir}"],
        ["solve", "--out", "{dir}/has-tree-folder"],
    ],
)
def test_unwritable_outputs_fail_before_models_load(capsys, tmp_path, argv):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    (tmp_path / "has-tree-folder" / "tree.json").mkdir(parents=True)
    argv = [a.format(file=a_file, dir=tmp_path) for a in argv]
    code, _, err = run(capsys, *argv, *NO_MODELS)  # the models would fail: outputs come first
    assert_one_line_error(code, err, "--")
    assert "/no/such" not in err and ("is a file" in err or "is a folder" in err)
    assert a_file.read_text() == "not a folder"


def test_a_prompts_file_over_the_limit_is_refused_while_read(capsys, tmp_path):
    """A million-line file: one line naming the limit, read in bounded memory and refused
    before any model loads (NO_MODELS would fail after)."""
    from seedtree.cli.decode import MAX_PROMPTS

    path = tmp_path / "many.txt"
    path.write_text("2+2?\n" * 1_000_000)
    start = time.monotonic()
    code, _, err = run(capsys, "generate", "--prompts-file", path, *NO_MODELS)
    assert_one_line_error(code, err, f"more than {MAX_PROMPTS} prompts", str(path), "split")
    assert time.monotonic() - start < 10


def test_bench_refuses_an_empty_method_list(capsys, tmp_path):
    code, _, err = run(capsys, "bench", "--methods", "", "--out", tmp_path, *NO_MODELS)
    assert_one_line_error(code, err, "--methods is empty")
