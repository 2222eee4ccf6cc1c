"""SEED's execution: drafter threads working concurrently, ONE verifier, an FCFS queue, rounds.

    drafters (threads) --draft ready--> FCFS queue --plan (rounds rule)--> verifier (this thread)
         ^                                                                        |
         +------------------- branch not finished: draft the next round ----------+

The runner knows nothing about models: it drives a `Work` (draft branch i; verify branches
[i, ..]; is i done?). PyTorch releases the GIL inside its kernels, so drafting in one thread and
verifying in another run truly in parallel; `Trace.overlaps` shows it. Each thread sets its own
torch intra-op thread count (OpenMP's is per calling thread).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import torch

from seedtree.scheduling.queue import QueueItem, make_queue
from seedtree.scheduling.rounds import RoundsScheduler
from seedtree.scheduling.trace import Trace


@dataclass(frozen=True)
class SchedulerConfig:
    """`draft_workers`: drafter threads (None: one per branch, as in the paper).
    `draft_threads` / `verify_threads`: torch intra-op threads of each drafter / the verifier."""

    batched: bool = False
    wait_for_round: bool = True  # batched only: one verification per round for all branches
    draft_workers: int | None = None
    draft_threads: int = 1
    verify_threads: int = 2
    policy: str = "fcfs"


class Work(Protocol):
    def draft(self, branch: int) -> None: ...
    def verify(self, branches: list[int]) -> None: ...
    def done(self, branch: int) -> bool: ...
    def fail(self, branch: int, error: str) -> None: ...
    def cancel(self, branch: int) -> None: ...


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class Runner:
    def __init__(
        self,
        work: Work,
        branches: list[int],
        config: SchedulerConfig,
        trace: Trace,
        cancelled: set[int] | None = None,
    ) -> None:
        self.work, self.config, self.trace = work, config, trace
        self.branches = set(branches)
        self.cancelled = cancelled if cancelled is not None else set()
        self._handled_cancels: set[int] = set()
        self.queue = make_queue(config.policy)
        self.sched = RoundsScheduler(
            active={b for b in branches if not work.done(b)},
            batched=config.batched,
            wait_for_round=config.wait_for_round,
        )
        self.to_draft: deque[int] = deque(b for b in branches if b in self.sched.active)
        self.cond = threading.Condition()
        self.stopping = False

    # -- drafters ---------------------------------------------------------------------------
    def _drafter(self) -> None:
        torch.set_num_threads(self.config.draft_threads)
        while True:
            with self.cond:
                while not self.to_draft and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                branch = self.to_draft.popleft()
            start = self.trace.now()
            try:
                self.work.draft(branch)
            except Exception as exc:  # isolation: this branch fails, the others go on
                self.work.fail(branch, _error(exc))
                with self.cond:
                    self.sched.update([], [branch])
                    self.cond.notify_all()
                continue
            end = self.trace.now()
            self.trace.add("draft", [branch], start, end, self.sched.round)
            with self.cond:
                self.queue.push(QueueItem(branch, end))
                self.cond.notify_all()

    # -- verifier -----------------------------------------------------------------------------
    def _apply_cancels(self) -> None:
        for branch in self.cancelled - self._handled_cancels:
            self._handled_cancels.add(branch)
            if branch not in self.branches:  # an unknown index: nothing to stop
                continue
            self.work.cancel(branch)
            self.sched.cancel(branch)
            if branch in self.to_draft:
                self.to_draft.remove(branch)

    def _next_plan(self) -> list[QueueItem] | None:
        with self.cond:
            while True:
                self._apply_cancels()
                if not self.sched.active:
                    return None
                plan = self.sched.plan(self.queue)
                if plan:
                    return plan
                self.cond.wait(timeout=0.05)

    def _verify(self, plan: list[QueueItem]) -> None:
        branches = [item.branch for item in plan]
        rnd = self.sched.round
        start = self.trace.now()
        try:
            self.work.verify(branches)
        except Exception as exc:
            if len(branches) == 1:
                self.work.fail(branches[0], _error(exc))
            else:  # a batched failure: retry alone so one bad branch cannot sink the others
                for branch in branches:
                    try:
                        self.work.verify([branch])
                    except Exception as exc_one:
                        self.work.fail(branch, _error(exc_one))
        end = self.trace.now()
        waits = [start - item.arrival for item in plan]
        self.trace.add("verify", branches, start, end, rnd, waits)
        finished = [b for b in branches if self.work.done(b)]
        with self.cond:
            self.sched.update(branches, finished)
            self.to_draft.extend(b for b in branches if b not in finished)
            self.cond.notify_all()

    def run(self) -> None:
        workers = self.config.draft_workers or max(len(self.sched.active), 1)
        threads = [
            threading.Thread(target=self._drafter, name=f"drafter-{i}", daemon=True)
            for i in range(workers)
        ]
        previous = torch.get_num_threads()
        torch.set_num_threads(self.config.verify_threads)
        try:
            for t in threads:
                t.start()
            while (plan := self._next_plan()) is not None:
                self._verify(plan)
        finally:
            with self.cond:
                self.stopping = True
                self.cond.notify_all()
            for t in threads:
                t.join()
            torch.set_num_threads(previous)
