"""Scheduling without models: SEED's FCFS rounds of drafter threads and one verifier (`fcfs`),
timeline traces. The step engine (`seedtree.engine.step`) drives the rounds over real branches."""

from seedtree.scheduling.fcfs import FCFSRounds
from seedtree.scheduling.trace import Trace, save_gantt

__all__ = ["FCFSRounds", "Trace", "save_gantt"]
