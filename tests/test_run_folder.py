"""`seedtree run`'s folder: whole records, a partial last line mended on --resume, one run at a
time, and --resume only with the settings the folder was started with."""

import json

import pytest
from conftest import assert_one_line_error, run_cli, save_pair_folders

from seedtree.errors import SeedtreeError
from seedtree.files import folder_lock
from seedtree.search.results import load_results, open_run, read_results


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_pair_folders(root, seed=0, context=4096)
    return root


def run_argv(folders, out, *extra):
    models = ["--draft", str(folders / "draft"), "--target", str(folders / "target")]
    base = ["run", "--task", "gsm8k", "--out", str(out), *models, "--draft-dtype", "float32"]
    return [*base, "--method", "ar", "--depth", "1", "--k", "2", "--max-new-tokens", "4", *extra]


def run(capsys, argv):
    return run_cli(capsys, *argv)


def lines_of(path):
    return path.read_bytes().split(b"\n")


def test_partial_last_record_is_dropped_reported_and_redone(folders, tmp_path, capsys):
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "3"))
    assert code == 0, err
    results = tmp_path / "results.jsonl"
    whole = results.read_bytes()
    first_two = b"".join(line + b"\n" for line in lines_of(results)[:2])
    results.write_bytes(first_two + whole.split(b"\n")[2][:37])  # killed mid-write of record 3
    kept = [r["index"] for r in read_results(results)]  # finish order: P=8 trees at a time
    assert len(kept) == 2 and set(kept) < {0, 1, 2}
    code, out, err = run(capsys, run_argv(folders, tmp_path, "--limit", "3", "--resume"))
    assert code == 0, err
    assert "dropped a partial last record (37 bytes" in err and "runs again" in err
    records = read_results(results)
    assert [r["index"] for r in records] == [*kept, ({0, 1, 2} - set(kept)).pop()]
    assert results.read_bytes().endswith(b"\n") and len(lines_of(results)) == 4  # 3 + ""
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["examples"] == 3 and summary["ids"] == [r["id"] for r in records]
    assert f"/{summary['examples']} correct" in out


def test_complete_last_record_without_newline_is_kept(folders, tmp_path, capsys):
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "2"))
    results = tmp_path / "results.jsonl"
    results.write_bytes(results.read_bytes().rstrip(b"\n"))
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "3", "--resume"))
    assert code == 0 and "dropped" not in err, err
    indices = [r["index"] for r in read_results(results)]
    assert sorted(indices[:2]) == [0, 1] and indices[2] == 2  # records in finish order
    assert all(json.loads(line) for line in lines_of(results)[:3])  # nothing glued together


@pytest.mark.parametrize(
    "line, needle",
    [
        (b"not json", "not valid JSON"),
        (b'{"id": null}', "field 'id' is null"),
        (b'\xff{"id": "x"}', "not UTF-8"),
    ],
)
def test_bad_line_inside_results_is_an_error_naming_it(folders, tmp_path, capsys, line, needle):
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "2"))
    results = tmp_path / "results.jsonl"
    first, second = lines_of(results)[:2]
    results.write_bytes(first + b"\n" + line + b"\n" + second + b"\n")
    before = results.read_bytes()
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "2", "--resume"))
    assert_one_line_error(code, err, f"{results}:2 is not a result record", needle, "delete")
    assert results.read_bytes() == before


def test_repeated_problem_is_an_error(folders, tmp_path, capsys):
    run(capsys, run_argv(folders, tmp_path, "--limit", "1"))
    results = tmp_path / "results.jsonl"
    results.write_bytes(results.read_bytes() * 2)
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "2", "--resume"))
    assert_one_line_error(code, err, ":2 repeats problem gsm8k-0 (also on line 1)")


def test_second_run_on_a_busy_folder_is_refused(folders, tmp_path, capsys):
    with folder_lock(tmp_path, "--out"):  # another run holds the folder
        code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "1"))
        assert_one_line_error(code, err, "is in use by another seedtree run (pid ", "wait")
    assert not (tmp_path / "results.jsonl").exists()
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "1"))  # free again
    assert code == 0, err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--method", "seed"], 'method "seed" (was "ar")'),
        (["--k", "3"], "k 3 (was 2)"),
        (["--temperature", "0.5", "--seed", "7"], "temperature 0.5 (was 0.0), seed 7 (was 0)"),
        (["--dtype", "bfloat16"], 'dtype "bfloat16" (was "float32")'),
        (["--task", "blocksworld"], 'task "blocksworld" (was "gsm8k")'),
    ],
)
def test_resume_with_other_settings_is_refused(folders, tmp_path, capsys, extra, named):
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "1"))
    assert code == 0, err
    before = (tmp_path / "results.jsonl").read_bytes()
    code, _, err = run(capsys, run_argv(folders, tmp_path, "--limit", "2", "--resume", *extra))
    assert_one_line_error(code, err, "--resume with other settings", named, "--allow-mixed")
    assert (tmp_path / "results.jsonl").read_bytes() == before


def test_allow_mixed_lets_resume_continue(folders, tmp_path, capsys):
    run(capsys, run_argv(folders, tmp_path, "--limit", "1"))
    argv = run_argv(folders, tmp_path, "--limit", "2", "--resume", "--allow-mixed", "--k", "3")
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert [r["index"] for r in read_results(tmp_path / "results.jsonl")] == [0, 1]
    settings = json.loads((tmp_path / "run.json").read_text())["settings"]
    assert settings["k"] == 2  # the folder keeps its first run's settings


def test_run_folder_in_the_library(tmp_path):
    settings = {"method": "ar"}
    record = {
        "id": "a",
        "index": 0,
        "correct": True,
        "score": 1.0,
        "wall_s": 0.5,
        "new_tokens": 3,
        "unparsed_values": 0,
    }
    with open_run(tmp_path, settings) as folder:
        folder.append(record)
        with pytest.raises(SeedtreeError, match="in use by another seedtree run"):
            with open_run(tmp_path, settings, resume=True):
                pass
    assert (tmp_path / "results.jsonl").read_text() == json.dumps(record) + "\n"
    with pytest.raises(SeedtreeError, match="already holds 1 results: pass --resume"):
        with open_run(tmp_path, settings):
            pass
    with open_run(tmp_path, settings, resume=True) as folder:
        assert folder.records == [record]
    assert load_results(tmp_path / "results.jsonl").tail == b""
