"""The verification queue: drafts wait here for the target. The policy is a name (`fcfs`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class QueueItem:
    branch: int
    arrival: float  # wall-clock time the draft was ready


class FCFSQueue(deque):
    """First come, first served: items leave in arrival order."""

    def push(self, item: QueueItem) -> None:
        self.append(item)

    def in_order(self) -> list[QueueItem]:
        return list(self)


POLICIES = {"fcfs": FCFSQueue}


def make_queue(policy: str = "fcfs") -> FCFSQueue:
    from seedtree.errors import SeedtreeError

    if policy not in POLICIES:
        raise SeedtreeError(f"unknown queue policy '{policy}': choose one of {', '.join(POLICIES)}")
    return POLICIES[policy]()
