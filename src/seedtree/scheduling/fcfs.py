"""SEED's schedule as rounds of the step engine (`seed`, `mcsd-seed`): drafter threads, ONE
verifier, first come first served, each branch verified once per round.

    drafters (threads) --draft ready--> FCFS queue --> verifier (the engine thread, one branch
         ^                                                 at a time, in arrival order)
         +-- verified, not finished: draft the next round's draft now (drafted ahead) --+

`FCFSRounds.round(branches, number, trace)` is one engine step: every branch is verified exactly
once, in the order its draft became ready. A branch verified early in the round drafts its next
draft while the verifier works through the others (the paper's overlap); that draft waits for the
next round, where it is first in line. The round returns once every draft it started is done, so no
thread touches a branch between steps (when requests join, leave or are aborted).

Knows nothing about models: it drives a `Work` (draft branch i, verify branch i, is i done, fail
i). PyTorch releases the GIL inside its kernels, so a drafter and the verifier run truly in
parallel (`Trace.overlaps` shows it). Each drafter runs torch on one intra-op thread.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import torch

from seedtree.scheduling.trace import Trace

MAX_DRAFT_THREADS = 8  # drafter threads at most, whatever the number of branches


class Work(Protocol):
    def draft(self, branch: int) -> None: ...
    def verify(self, branch: int) -> None: ...
    def done(self, branch: int) -> bool: ...
    def fail(self, branch: int, error: str) -> None: ...


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class FCFSRounds:
    def __init__(self, work: Work, workers: int = MAX_DRAFT_THREADS) -> None:
        self.work, self.workers = work, workers
        self.trace = Trace()  # the timeline of the round being run (given to `round`)
        # branch -> (start, end) of a draft made ahead, in the previous round, not verified yet
        self.ahead: dict[int, tuple[float, float]] = {}

    def round(self, branches: list[int], number: int, trace: Trace) -> None:
        """Verify each of `branches` once, first come first served (see the module); the
        drafts and verifications go into `trace`."""
        self.trace = trace
        ahead = sorted((self.ahead.pop(b), b) for b in branches if b in self.ahead)
        self.ahead = {}  # drafts of branches that left between rounds are dropped
        ready: queue.SimpleQueue = queue.SimpleQueue()  # (branch, start, end), in arrival order
        for (start, end), b in ahead:
            ready.put((b, start, end))
        todo = [b for b in branches if b not in {a for _, a in ahead}]
        workers = max(1, min(len(branches), self.workers))
        with ThreadPoolExecutor(workers, "seedtree-drafter", torch.set_num_threads, (1,)) as pool:
            for b in todo:
                pool.submit(self._draft, b, ready.put)
            for _ in branches:
                b, start, end = ready.get()
                self._verify(b, start, end, number)
                if not self.work.done(b):  # its next draft, while the others are verified
                    pool.submit(self._draft, b, self._keep_ahead)
        # leaving the pool waited for every draft made ahead

    def _draft(self, b: int, put) -> None:
        start = self.trace.now()
        try:
            self.work.draft(b)
        except Exception as exc:  # isolation: this branch fails, the others go on
            self.work.fail(b, _error(exc))
        finally:  # whatever happened, the verifier waiting for it hears of it
            put((b, start, self.trace.now()))

    def _keep_ahead(self, item: tuple[int, float, float]) -> None:
        b, start, end = item
        if not self.work.done(b):
            self.ahead[b] = (start, end)

    def _verify(self, b: int, start: float, end: float, number: int) -> None:
        self.trace.add("draft", [b], start, end, number)
        if self.work.done(b):  # its draft failed
            return
        t = self.trace.now()
        try:
            self.work.verify(b)
        except Exception as exc:
            self.work.fail(b, _error(exc))
        self.trace.add("verify", [b], t, self.trace.now(), number, [t - end])
