"""Many requests: FCFS queue, rounds scheduler, drafter/verifier threads, timeline traces."""

from seedtree.scheduling.many import (
    MANY_METHODS,
    ManyResult,
    Request,
    RunStats,
    expand_requests,
    generate_many,
)
from seedtree.scheduling.runner import Runner, SchedulerConfig
from seedtree.scheduling.trace import Trace, save_gantt

__all__ = [
    "MANY_METHODS",
    "ManyResult",
    "Request",
    "Runner",
    "RunStats",
    "SchedulerConfig",
    "Trace",
    "expand_requests",
    "generate_many",
    "save_gantt",
]
