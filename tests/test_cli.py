"""The command line: bad input gives one line on stderr and exit 2; --json output contract."""

import json

import pytest
from conftest import save_pair_folders

from seedtree.cli import main
from seedtree.models.tiny import char_tokenizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny pair saved as two local model folders (context 64), plus one with another vocab."""
    root = tmp_path_factory.mktemp("models")
    pair = save_pair_folders(root, seed=3, context=64)
    other = char_tokenizer()
    other.add_tokens(["<extra>"])
    pair.draft.save_pretrained(root / "other")
    other.save_pretrained(root / "other")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, needle):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err


def test_ar_and_sd_json_give_identical_token_ids(capsys, folders):
    base = [
        "generate",
        "--prompt",
        "the answer is",
        "--max-new-tokens",
        "20",
        "--json",
        "--draft",
        str(folders / "draft"),
        "--target",
        str(folders / "target"),
    ]
    code, out, _ = run(capsys, *base, "--method", "ar")
    assert code == 0
    ar = json.loads(out)
    code, out, _ = run(capsys, *base, "--method", "sd", "--gamma", "3")
    sd = json.loads(out)
    assert ar["token_ids"] == sd["token_ids"] and ar["text"] == sd["text"]
    assert set(sd) == {"text", "token_ids", "finish_reason", "stats"}
    assert sd["stats"]["accepted"] <= sd["stats"]["drafted"]
    assert sd["stats"]["target_forwards"] <= ar["stats"]["target_forwards"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--prompt", ""], "prompt is empty"),
        (["--prompt", "   "], "prompt is empty"),
        (["--prompt", "x", "--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
        (["--prompt", "x", "--gamma", "0"], "gamma must be in [1, 64]"),
        (["--prompt", "x", "--temperature", "-0.5"], "temperature must be >= 0"),
        (["--prompt", "x", "--pair", "nope"], "unknown model pair 'nope'"),
        (
            ["--prompt", "x", "--draft", "/no/such/dir", "--target", "/no/such/dir"],
            "does not exist",
        ),
        (["--prompt", "x", "--draft", "/no/such/dir"], "pass both --draft and --target"),
        (["--prompt", "x", "--device", "tpu"], "unknown device 'tpu'"),
        (["--prompt", "a\udcffb"], "--prompt is not valid Unicode"),  # argv bytes not UTF-8
    ],
)
def test_bad_input_is_one_line(capsys, args, needle):
    code, _, err = run(capsys, "generate", *args)
    assert_one_line_error(code, err, needle)


def test_mismatched_tokenizers_name_both(capsys, folders):
    code, _, err = run(
        capsys,
        "generate",
        "--prompt",
        "x",
        "--draft",
        str(folders / "other"),
        "--target",
        str(folders / "target"),
    )
    assert_one_line_error(code, err, "use different tokenizers")
    assert str(folders / "other") in err and str(folders / "target") in err


def test_prompt_longer_than_context(capsys, folders):
    code, _, err = run(
        capsys,
        "generate",
        "--prompt",
        "a" * 80,
        "--draft",
        str(folders / "draft"),
        "--target",
        str(folders / "target"),
    )
    assert_one_line_error(code, err, "prompt has 80 tokens but the model context is 64")


@pytest.mark.parametrize(
    "k_config, needle",
    [("2,x", "is not a list of integers"), ("2,0,1", "entries must be >= 1"), ("", "is empty")],
)
def test_bad_k_config_is_one_line(capsys, k_config, needle):
    code, _, err = run(
        capsys, "generate", "--method", "mcsd", "--prompt", "x", "--k-config", k_config
    )
    assert_one_line_error(code, err, needle)


def test_mcsd_json_equals_ar(capsys, folders):
    base = [
        "generate",
        "--prompt",
        "one two",
        "--max-new-tokens",
        "16",
        "--json",
        "--draft",
        str(folders / "draft"),
        "--target",
        str(folders / "target"),
    ]
    _, out, _ = run(capsys, *base, "--method", "ar")
    code, out2, _ = run(capsys, *base, "--method", "mcsd", "--k-config", "2,2,1")
    assert code == 0 and json.loads(out)["token_ids"] == json.loads(out2)["token_ids"]


def test_many_requests_jsonl_trace_and_gantt(capsys, folders, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first prompt\n\nsecond one\nthird\n")
    base = [
        "generate",
        "--prompts-file",
        str(prompts),
        "--max-new-tokens",
        "12",
        "--json",
        "--draft",
        str(folders / "draft"),
        "--target",
        str(folders / "target"),
    ]
    code, out, _ = run(capsys, *base, "--method", "ar")
    assert code == 0
    ar = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in ar] == [0, 1, 2] and ar[1]["prompt"] == "second one"
    trace, gantt = tmp_path / "trace.json", tmp_path / "gantt.png"
    code, out, err = run(
        capsys, *base, "--method", "seed-batched", "--trace", str(trace), "--gantt", str(gantt)
    )
    assert code == 0 and "target busy" in err
    seed = [json.loads(line) for line in out.splitlines()]
    assert [r["token_ids"] for r in seed] == [r["token_ids"] for r in ar]
    data = json.loads(trace.read_text())
    assert data["method"] == "seed-batched"
    assert {i["kind"] for i in data["intervals"]} >= {"prefill", "draft", "verify"}
    assert gantt.stat().st_size > 1000


def test_n_samples_of_one_prompt(capsys, folders):
    code, out, _ = run(
        capsys,
        "generate",
        "--method",
        "seed",
        "--n",
        "3",
        "--prompt",
        "abc",
        "--temperature",
        "1",
        "--seed",
        "4",
        "--max-new-tokens",
        "8",
        "--json",
        "--draft",
        str(folders / "draft"),
        "--target",
        str(folders / "target"),
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3 and all(r["prompt"] == "abc" for r in rows)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--prompt", "x", "--n", "0"], "--n must be >= 1"),
        (["--prompts-file", "/no/such/file.txt"], "does not exist"),
        (["--prompt", "x", "--method", "fast"], None),  # argparse: invalid choice
    ],
)
def test_bad_many_input_is_one_line(capsys, args, needle):
    if needle is None:
        with pytest.raises(SystemExit) as exc:
            main(["generate", *args])
        assert exc.value.code == 2
        assert "invalid choice: 'fast'" in capsys.readouterr().err
        return
    code, _, err = run(capsys, "generate", *args)
    assert_one_line_error(code, err, needle)


def test_empty_prompts_file(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run(capsys, "generate", "--prompts-file", str(empty))
    assert_one_line_error(code, err, "has no prompts")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt key"}\n')
    code, _, err = run(capsys, "generate", "--prompts-file", str(bad))
    assert_one_line_error(code, err, "bad.jsonl:2 is not a JSON object with a 'prompt' field")
