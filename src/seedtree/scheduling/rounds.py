"""The rounds rule of SEED: the target verifies queued drafts in arrival order, and each branch
at most once per round. A round closes when every branch still running has been verified in it;
a branch that drafts again faster than the others waits in the queue for the next round.

`plan(queue)` says which drafts to verify next (one, or every eligible draft when verification is
batched: then, by default, once all branches due in the round have arrived, so that one target
forward serves the whole round); `update(verified, finished)` applies the outcome.
Plain data only: no threads, no models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seedtree.scheduling.queue import FCFSQueue, QueueItem


@dataclass
class RoundsScheduler:
    active: set[int]  # branches still running
    batched: bool = False
    wait_for_round: bool = True  # batched: verify once every branch due this round has arrived
    round: int = 0
    verified: set[int] = field(default_factory=set)  # verified in the current round

    def plan(self, queue: FCFSQueue) -> list[QueueItem]:
        """Remove and return the next drafts to verify ([] = wait for more drafts)."""
        self._drop_inactive(queue)
        eligible = [item for item in queue.in_order() if item.branch not in self.verified]
        if not self.batched:
            eligible = eligible[:1]
        elif self.wait_for_round and self.active - self.verified - {i.branch for i in eligible}:
            return []  # a branch due in this round is still drafting: wait and batch it too
        for item in eligible:
            queue.remove(item)
        return eligible

    def update(self, verified: list[int], finished: list[int]) -> None:
        self.verified.update(verified)
        self.active.difference_update(finished)
        if self.active <= self.verified:  # everyone still running had its turn: next round
            self.round += 1
            self.verified = set()

    def cancel(self, branch: int) -> None:
        self.active.discard(branch)
        if self.active <= self.verified and self.verified:
            self.round += 1
            self.verified = set()

    def _drop_inactive(self, queue: FCFSQueue) -> None:
        for item in [i for i in queue if i.branch not in self.active]:
            queue.remove(item)
