"""The folder of a dataset run: `results.jsonl` (one record per finished problem), `run.json`
(the settings of the folder's first run), `summary.json`, and a lock.

- A record is one JSON line, written whole (one write, then fsync). A process killed mid-write
  leaves a partial last line: `open_run` reports it and cuts it off before anything is appended,
  and that problem runs again. Nothing is ever glued onto a partial line.
- One run per folder: a second one is refused with the holder's pid (`files.folder_lock`).
- `resume` continues only a run with the same settings (task, data, model, method, sampling,
  speculation, search, and the backend: local models or an OpenAI endpoint's URL); a mismatch
  is refused naming each differing setting, unless `allow_mixed`.
This module knows nothing about models or how a tree is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seedtree.decoding import SpecConfig
from seedtree.errors import SeedtreeError
from seedtree.files import append_line, folder_lock, read_bytes, write_atomic
from seedtree.search.config import SearchConfig
from seedtree.search.engine import EngineConfig
from seedtree.search.remote import Endpoint

RESULTS, SETTINGS, SUMMARY = "results.jsonl", "run.json", "summary.json"
NUMBER = (int, float)
REQUIRED = {  # field -> type(s) a record must have; the summary reads these
    "id": str,
    "index": int,
    "correct": bool,
    "score": NUMBER,
    "wall_s": NUMBER,
    "new_tokens": int,
    "unparsed_values": int,
}
RESUME_FIX = "rerun with the same settings, choose another --out, or pass --allow-mixed"


def run_settings(
    task: str,
    model: str,
    dtype: str,
    engine: EngineConfig,
    search: SearchConfig,
    spec: SpecConfig | None = None,
    data: str | None = None,
    endpoint: Endpoint | None = None,
) -> dict[str, Any]:
    """The settings a resumed run must share, flat and as JSON reads them back. `backend` is
    "local", or with `endpoint` "openai" with its URL and chat mode (`model`: the served one)."""
    settings = {"task": task, "data": data, "model": model, "dtype": dtype}
    settings |= asdict(engine) | asdict(search) | asdict(spec or SpecConfig())
    settings |= endpoint.settings() if endpoint is not None else {"backend": "local"}
    return json.loads(json.dumps(settings))


def _record_problem(record: Any) -> str | None:
    """Why `record` is not a result record, or None when it is one."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name, kind in REQUIRED.items():
        value = record.get(name)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"field '{name}' is {json.dumps(value)}"
    return None


def _parse_line(raw: bytes) -> tuple[dict | None, str]:
    """(the record, "") or (None, why the line is not a record)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError:
        return None, "not valid JSON"
    problem = _record_problem(record)
    return (None, problem) if problem else (record, "")


@dataclass(frozen=True)
class ResultsFile:
    """What `results.jsonl` holds: its whole records and, when the file does not end in a
    newline, its last line (`tail`), complete (`tail_ok`) or cut by a crash."""

    records: list[dict]
    tail: bytes = b""
    tail_ok: bool = False


def load_results(path: Path) -> ResultsFile:
    """Every record of `path`. A bad or repeated line before the last is an error (it was not
    written by a run: the user must look); the last line without a newline is the `tail`."""
    if not path.exists():
        return ResultsFile([])
    data = read_bytes(path, "results file")
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends in a newline
    records, seen = [], {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record, why = _parse_line(raw)
        if record is None:
            raise SeedtreeError(
                f"{path}:{number} is not a result record ({why}): fix or delete that line, "
                "then rerun with --resume"
            )
        if record["id"] in seen:
            raise SeedtreeError(
                f"{path}:{number} repeats problem {record['id']} (also on line "
                f"{seen[record['id']]}): delete one of the two lines, then rerun with --resume"
            )
        seen[record["id"]] = number
        records.append(record)
    tail_record, _ = _parse_line(tail) if tail.strip() else (None, "")
    if tail_record is not None and tail_record["id"] not in seen:
        return ResultsFile([*records, tail_record], tail, tail_ok=True)
    return ResultsFile(records, tail)


def read_results(path: Path) -> list[dict]:
    """The whole records of a results file (a partial last line is left out)."""
    return load_results(path).records


def _mend_tail(path: Path, results: ResultsFile) -> None:
    """End the file at a line boundary: a complete last record gets its newline, a partial
    one is cut off (reported: its problem runs again)."""
    if not results.tail:
        return
    if results.tail_ok:
        with path.open("ab") as f:
            f.write(b"\n")
        return
    size = path.stat().st_size
    os.truncate(path, size - len(results.tail))
    print(
        f"warning: {path}: dropped a partial last record ({len(results.tail)} bytes, "
        "left by a run that stopped mid-write); its problem runs again",
        file=sys.stderr,
    )


def _differences(recorded: dict, settings: dict) -> list[str]:
    """'name value (was value)' for each setting both hold and that differs."""
    return [
        f"{name} {json.dumps(settings[name])} (was {json.dumps(recorded[name])})"
        for name in settings
        if name in recorded and recorded[name] != settings[name]
    ]


def _check_settings(out: Path, settings: dict, resuming: bool, allow_mixed: bool) -> None:
    """On the folder's first run, record `settings`; when resuming, compare with them."""
    path = out / SETTINGS
    if not resuming or not path.exists():
        write_atomic(path, json.dumps({"settings": settings}, indent=1))
        return
    try:
        recorded = json.loads(read_bytes(path, "run settings file"))["settings"]
        if not isinstance(recorded, dict):
            raise TypeError("not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise SeedtreeError(
            f"{path} is unreadable ({type(exc).__name__}): delete it to record the current "
            "settings, then rerun with --resume"
        ) from None
    differences = _differences(recorded, settings)
    if differences and not allow_mixed:
        raise SeedtreeError(
            f"--resume with other settings than {out} was started with: "
            f"{', '.join(differences)}: {RESUME_FIX}"
        )


class RunFolder:
    """An open, locked results folder: the finished `records`; `append` adds one whole."""

    def __init__(self, out: Path, records: list[dict], fd: int) -> None:
        self.out, self.records, self._fd = out, records, fd

    def append(self, record: dict) -> None:
        append_line(self._fd, json.dumps(record))
        self.records.append(record)

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.out / SUMMARY, json.dumps(summary, indent=1))


@contextlib.contextmanager
def open_run(
    out: Path, settings: dict, resume: bool = False, allow_mixed: bool = False
) -> Iterator[RunFolder]:
    """Lock `out`, check it may be (re)used with `settings`, mend a partial last line; yields
    the folder with its finished records. Without `resume`, finished records are an error."""
    with folder_lock(out, "--out"):
        path = out / RESULTS
        results = load_results(path)
        if results.records and not resume:
            raise SeedtreeError(
                f"{path} already holds {len(results.records)} results: pass --resume to "
                "continue it, or choose another --out"
            )
        _check_settings(out, settings, bool(results.records), allow_mixed)
        _mend_tail(path, results)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            yield RunFolder(out, list(results.records), fd)
        finally:
            os.close(fd)
