"""Checks at the boundary: Python types and numeric ranges of what users pass in.

The library (`SamplingParams`, `SpecConfig`, `SearchConfig`, `LLM.generate`) and the command line
share these checks, so both give the same one-line `SeedtreeError`. This module knows nothing about
models, tasks or files; its limits are listed in the README ("Limits and errors").
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from seedtree.errors import SeedtreeError

# Seeds are 0..SEED_MAX everywhere (library, CLI, server): a sample's seed is derived as a 63-bit
# hash (`derive_seed`) and goes through the same checks, so the user's range is that one too.
SEED_MAX = 2**63 - 1
MAX_FANOUT = 256  # k, b, n (samples per prompt), n_evaluate: requests made at once
MAX_DEPTH = 256  # levels of a reasoning tree, DFS expansions
MAX_TREE_NODES = 1024  # MCSD draft-tree nodes per round (all verified in one target forward)
MAX_GAMMA = 64  # draft tokens per round at most
MAX_LOGPROBS = 20  # top logprobs per output token at most (OpenAI's chat limit)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> None:
    """`value` is an integer (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SeedtreeError(f"{name} must be an integer, got {_kind(value)} {value!r}")
    if low is not None and value < low:
        raise SeedtreeError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise SeedtreeError(f"{name} must be <= {high}, got {value}")


def check_real(name: str, value: Any) -> None:
    """`value` is a finite number (not a bool); ranges are the caller's."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SeedtreeError(f"{name} must be a number, got {_kind(value)} {value!r}")
    if not math.isfinite(value):
        raise SeedtreeError(f"{name} must be a finite number, got {value}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SeedtreeError(f"{name} must be True or False, got {_kind(value)} {value!r}")


def check_seed(name: str, value: Any) -> None:
    if value is not None:
        check_int(name, value, 0, SEED_MAX)


def check_text(name: str, value: str) -> None:
    """`value` (a str) can be written as UTF-8: no lone surrogate (a JSON "\\ud800", or bytes
    that were not UTF-8 in a command-line argument)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SeedtreeError(
            f"{name} is not valid Unicode text (a lone surrogate at character {exc.start}): "
            "send UTF-8 text"
        ) from None


def int_tuple(name: str, value: Any) -> tuple[int, ...]:
    """A tuple or list of integers, as a tuple (frozen configs stay hashable)."""
    if not isinstance(value, tuple | list):
        raise SeedtreeError(f"{name} must be a tuple of integers, got {_kind(value)} {value!r}")
    for i, item in enumerate(value):
        check_int(f"{name}[{i}]", item)
    return tuple(value)


def str_tuple(name: str, value: Any) -> tuple[str, ...]:
    """One string or a tuple/list of strings, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, tuple | list):
        raise SeedtreeError(f"{name} must be a string or a tuple of strings, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise SeedtreeError(f"{name}[{i}] must be a string, got {_kind(item)} {item!r}")
    return tuple(value)


def check_prompts(prompts: Any, one_allowed: bool) -> None:
    """Prompts are a list (or tuple) of strings; one string too where `one_allowed`."""
    if isinstance(prompts, str):
        if one_allowed:
            check_text("prompt", prompts)
            return
        raise SeedtreeError(
            "prompts must be a list of strings, got one str: wrap a single prompt in a list"
        )
    if not isinstance(prompts, list | tuple):
        wanted = "a string or a list of strings" if one_allowed else "a list of strings"
        raise SeedtreeError(f"prompts must be {wanted}, got {_kind(prompts)}: pass prompt text")
    if not prompts:
        raise SeedtreeError("no prompts: pass at least one prompt")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise SeedtreeError(f"prompts[{i}] must be a string, got {_kind(prompt)} {prompt!r}")
        check_text(f"prompts[{i}]", prompt)


def check_optional_str(name: str, value: Any) -> None:
    """`value` is None or a string (a model name, a path, a dtype)."""
    if value is not None and not isinstance(value, str):
        raise SeedtreeError(f"{name} must be a string or None, got {_kind(value)} {value!r}")


def check_size_mb(name: str, value: Any) -> None:
    """A size in MB: a finite number >= 0."""
    check_real(name, value)
    if value < 0:
        raise SeedtreeError(f"{name} must be >= 0 (MB), got {value}")


def check_generate_args(prompts: Any, params: Any, spec: Any, chat: Any, one_allowed: bool) -> None:
    """The arguments of `LLM.generate` / `LLM.generate_many` (None means the default config)."""
    from seedtree.decoding.params import SamplingParams, SpecConfig

    check_prompts(prompts, one_allowed)
    for name, value, cls in (("params", params, SamplingParams), ("spec", spec, SpecConfig)):
        if value is not None and not isinstance(value, cls):
            raise SeedtreeError(
                f"{name} must be a {cls.__name__}, got {_kind(value)}: "
                f"build one with {cls.__name__}(...)"
            )
    check_bool("chat", chat)
