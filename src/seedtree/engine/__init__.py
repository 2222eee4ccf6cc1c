"""The engine: the method registry, the step engine (add_request / step / abort; continuous
batching; prefix cache; adaptive speculation), SEED's paper mode, and `generate_many`."""

from seedtree.decoding.branch import Request
from seedtree.decoding.lookup import LookupIndex
from seedtree.engine.many import ManyResult, RunStats, expand_requests, generate_many
from seedtree.engine.methods import METHODS, REGISTRY, Method, get_method
from seedtree.engine.prefix_cache import PrefixCache
from seedtree.engine.step import RequestOutput, StepEngine

__all__ = [
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
