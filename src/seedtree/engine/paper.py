"""SEED as in the paper (`seed`, `mcsd-seed`): a drafter thread per branch (at most
`MAX_DRAFT_THREADS`), one verifier, an FCFS queue and rounds (`seedtree.scheduling.Runner`),
over branches of the one speculative core. Prompts are prefilled first, identical ones once."""

from __future__ import annotations

from seedtree.decoding import speculative
from seedtree.decoding.branch import Branch
from seedtree.scheduling.runner import Runner, SchedulerConfig
from seedtree.scheduling.trace import Trace

MAX_DRAFT_THREADS = 8  # drafter threads at most, whatever the number of branches


class BranchWork:
    """The `Work` a runner drives: real branches, real models."""

    def __init__(self, branches: list[Branch]) -> None:
        self.branches = branches

    def draft(self, i: int) -> None:
        speculative.draft([self.branches[i]])

    def verify(self, ids: list[int]) -> None:
        speculative.verify([self.branches[i] for i in ids])

    def done(self, i: int) -> bool:
        return self.branches[i].done

    def fail(self, i: int, error: str) -> None:
        self.branches[i].fail(error)

    def cancel(self, i: int) -> None:
        self.branches[i].cancelled = True


def run_seed(
    branches: list[Branch],
    trace: Trace,
    config: SchedulerConfig | None = None,
    cancelled: set[int] | None = None,
) -> None:
    start = trace.now()
    speculative.run_isolated(lambda bs: speculative.prefill(bs, share=True), branches)
    trace.add("prefill", [b.index for b in branches], start, trace.now())
    config = config or SchedulerConfig()
    workers = min(config.draft_workers or len(branches), MAX_DRAFT_THREADS)
    config = SchedulerConfig(**{**config.__dict__, "batched": False, "draft_workers": workers})
    Runner(BranchWork(branches), list(range(len(branches))), config, trace, cancelled).run()
