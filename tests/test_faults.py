"""Faults in real processes: `seedtree run` killed with SIGKILL at several points (one of them in
the middle of writing a record), then resumed; a second run on the busy folder meanwhile; Ctrl-C
during start-up. Each subprocess pays the torch import (seconds): these are the slow tests."""

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

# Runs the CLI with record writes that fail on cue: CUT_RECORD=n SIGKILLs the process halfway
# through writing its n-th record; PAUSE_AFTER_RECORD=n holds it still (lock held, between
# records) once its n-th record is on disk, for the test to look and kill it.
FAULTY_CLI = """
import os, signal, sys, time
import seedtree.files as files

class Faulty:
    records = 0
    def __getattr__(self, name):
        return getattr(os, name)
    def write(self, fd, data):
        if not data.startswith(b'{"id"'):
            return os.write(fd, data)
        Faulty.records += 1
        if Faulty.records == int(os.environ.get("CUT_RECORD", 0)):
            os.write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        written = os.write(fd, data)
        if Faulty.records == int(os.environ.get("PAUSE_AFTER_RECORD", 0)):
            os.fsync(fd)
            time.sleep(600)
        return written

files.os = Faulty()
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


@pytest.fixture
def cli():
    """Starts `seedtree` (or `code`) in a subprocess; any still running at the end is killed."""
    started = []

    def start(argv, code=None, **extra) -> subprocess.Popen:
        head = ["-c", code] if code else ["-m", "seedtree.cli"]
        proc = subprocess.Popen(
            [sys.executable, *head, *map(str, argv)],
            env=env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


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


def test_sigkill_at_several_points_then_resume_keeps_every_problem_once(
    cli, capsys, folders, tmp_path
):
    out, n = tmp_path / "run", 5
    results = out / "results.jsonl"

    # 1) killed in the middle of writing the second record
    code, _, _ = finish(cli(run_argv(folders, out, n), FAULTY_CLI, CUT_RECORD="2"))
    assert code == -signal.SIGKILL
    assert whole_lines(results) == 1 and not results.read_bytes().endswith(b"\n")

    # 2) resumed, and killed between records, after its first new one; meanwhile a second run
    #    on the same folder is refused, naming this one's pid
    proc = cli([*run_argv(folders, out, n), "--resume"], FAULTY_CLI, PAUSE_AFTER_RECORD="1")
    wait_for(lambda: whole_lines(results) == 2, proc)
    assert main([*map(str, run_argv(folders, out, n)), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"is in use by another seedtree run (pid {proc.pid})" in err
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


@pytest.mark.parametrize("delay_s", [0.8, 1.5])  # early and late in start-up
def test_ctrl_c_during_start_up_says_interrupted(cli, folders, delay_s):
    models = ["--draft", folders / "draft", "--target", folders / "target"]
    argv = ["generate", "--method", "ar", "--prompt", "hello", *models, "--max-new-tokens", 4000]
    proc = cli(argv)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err and out == ""
