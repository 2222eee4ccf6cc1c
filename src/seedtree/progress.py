"""Progress of long commands on stderr, whether or not it is a terminal.

`progress_bar(...)` is tqdm's bar on a terminal; elsewhere (a log file, CI, `nohup`) a tqdm bar
is carriage returns that nobody reads, so it is `LineProgress`: one line per finished unit
(tree, problem, pass), `desc: n/total unit (elapsed s) postfix`. Both take the calls the
commands make: iteration, `update`, `set_postfix`, `set_postfix_str`, `close`. This module knows
nothing about what is counted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm


class LineProgress:
    """A line on `stream` per `update`: what is done of `total`, the time, the postfix."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str, stream):
        self.iterable, self.desc, self.unit, self.stream = iterable, desc, unit, stream
        self.total = total if total is not None else _len(iterable)
        self.n, self.postfix, self.start = 0, "", time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update()

    def update(self, n: int = 1) -> None:
        self.n += n
        of = f"/{self.total}" if self.total is not None else ""
        postfix = f" {self.postfix}" if self.postfix else ""
        elapsed = time.monotonic() - self.start
        line = f"{self.desc}: {self.n}{of} {self.unit} ({elapsed:.0f} s){postfix}"
        print(line, file=self.stream, flush=True)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        pass


def _len(iterable: Iterable | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    stream=None,
):
    """tqdm on a terminal (or when disabled: nothing shown), else `LineProgress` on `stream`
    (default stderr)."""
    stream = stream or sys.stderr
    if disable or stream.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=stream)
    return LineProgress(iterable, total, desc, unit, stream)
