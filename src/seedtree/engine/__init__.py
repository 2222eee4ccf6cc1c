"""The engine: THE engine object (`LLMEngine`: one per process, every front door its client),
the method registry, the step engine (add_request / step / abort; continuous batching; prefix
cache; batch-aware adaptive speculation; SEED's paper mode as FCFS rounds), and
`generate_many`."""

from seedtree.decoding.branch import Request
from seedtree.decoding.lookup import LookupIndex
from seedtree.engine.core import (
    Job,
    LLMEngine,
    QueueFull,
    ShuttingDown,
    expand_requests,
    run_off_main_thread,
    sample_seed,
)
from seedtree.engine.many import (
    ManyResult,
    RunStats,
    generate_many,
    generate_mcsd,
    generate_sd,
    run_many,
)
from seedtree.engine.methods import METHODS, REGISTRY, Method, get_method
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.engine.step import RequestOutput, StepEngine

__all__ = [
    "Job",
    "LLMEngine",
    "QueueFull",
    "ShuttingDown",
    "generate_mcsd",
    "generate_sd",
    "run_many",
    "run_off_main_thread",
    "sample_seed",
    "METHODS",
    "REGISTRY",
    "LookupIndex",
    "ManyResult",
    "Method",
    "PrefixCache",
    "Request",
    "RequestOutput",
    "RunStats",
    "StepEngine",
    "expand_requests",
    "generate_many",
    "get_method",
]
