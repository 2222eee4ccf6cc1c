"""Faults in real processes: `seedtree run` killed with SIGKILL at several points (one of them in
the middle of writing a record), then resumed; a second run on a busy folder; Ctrl-C during
start-up. Each subprocess pays the torch import (a few seconds): these tests are the slow ones."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import save_pair_folders

import seedtree
from seedtree.cli import main
from seedtree.search.results import read_results

SRC = str(Path(seedtree.__file__).resolve().parents[1])
DEADLINE_S = 120  # bound on any one subprocess

# Runs the CLI, but SIGKILLs itself halfway through writing record number KILL_IN_RECORD.
KILL_MID_WRITE = """
import os, signal, sys
import seedtree.files as files

class HalfWrite:
    records = 0
    def __getattr__(self, name):
        return getattr(os, name)
    def write(self, fd, data):
        if data.startswith(b'{"id"'):
            HalfWrite.records += 1
            if HalfWrite.records == int(os.environ["KILL_IN_RECORD"]):
                os.write(fd, data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return os.write(fd, data)

files.os = HalfWrite()
from seedtree.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_pair_folders(root, seed=0, context=4096)
    return root


def env(**extra) -> dict:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def cli(argv, code=None, **extra) -> subprocess.Popen:
    head = ["-c", code] if code else ["-m", "seedtree.cli"]
    return subprocess.Popen(
        [sys.executable, *head, *map(str, argv)],
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, out, err


def wait_for(predicate, proc) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def whole_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_argv(folders, out, limit):
    models = ["--draft", folders / "draft", "--target", folders / "target"]
    return [
        "run",
        "--task",
        "gsm8k",
        "--limit",
        limit,
        "--out",
        out,
        *models,
        "--draft-dtype",
        "float32",
        "--method",
        "ar",
        "--depth",
        "1",
        "--k",
        "2",
        "--max-new-tokens",
        "3",
    ]


def test_sigkill_at_several_points_then_resume_keeps_every_problem_once(capsys, folders, tmp_path):
    out, n = tmp_path / "run", 5
    results = out / "results.jsonl"

    # 1) killed in the middle of writing the second record
    code, _, _ = finish(cli(run_argv(folders, out, n), KILL_MID_WRITE, KILL_IN_RECORD="2"))
    assert code == -signal.SIGKILL
    assert whole_lines(results) == 1 and not results.read_bytes().endswith(b"\n")

    # 2) resumed, then killed right after its first new record; meanwhile a second run on the
    #    same folder is refused, naming this one's pid
    proc = cli([*run_argv(folders, out, n), "--resume"])
    wait_for(lambda: (out / ".lock").read_text().strip() == str(proc.pid), proc)
    assert main([*map(str, run_argv(folders, out, n)), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"is in use by another seedtree run (pid {proc.pid})" in err
    wait_for(lambda: whole_lines(results) >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    code, _, err = finish(proc)
    assert code == -signal.SIGKILL and "dropped a partial last record" in err

    # 3) resumed, and killed during start-up
    proc = cli([*run_argv(folders, out, n), "--resume"])
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    finish(proc)

    # 4) resumed to the end (in this process): every problem exactly once, and the summary
    #    says what the file says
    code = main([*map(str, run_argv(folders, out, n)), "--resume"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    records = read_results(results)
    assert sorted(r["index"] for r in records) == list(range(n))
    assert whole_lines(results) == n and results.read_bytes().endswith(b"\n")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == n and summary["ids"] == [r["id"] for r in records]
    assert summary["correct"] == sum(r["correct"] for r in records)
    assert f"{summary['correct']}/{n} correct" in stdout


@pytest.mark.parametrize("delay_s", [0.8, 2.5])  # during the imports; during model loading
def test_ctrl_c_during_start_up_says_interrupted(folders, delay_s):
    models = ["--draft", folders / "draft", "--target", folders / "target"]
    proc = cli(["generate", "--prompt", "hello", *models, "--max-new-tokens", "4000"])
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err and out == ""
