"""Scheduling without models: the FCFS queue, SEED's rounds rule, the drafter/verifier runner,
timeline traces. The engine (`seedtree.engine`) drives these over real branches."""

from seedtree.scheduling.runner import Runner, SchedulerConfig
from seedtree.scheduling.trace import Trace, save_gantt

__all__ = ["Runner", "SchedulerConfig", "Trace", "save_gantt"]
