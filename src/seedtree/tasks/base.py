"""What a reasoning-tree task supplies: prompts, parsers, the terminal test and the score.

Vocabulary (as in Tree of Thoughts): a *thought* is one step of text; a *state* is the example
plus the tuple of thoughts so far (immutable); a *value* is a number the model gives a state
(higher = more promising). The task knows nothing about search order or decoding methods: it
writes prompts and reads texts. The one place it talks to the model itself is `finish`, which
gets an `ask` callable (the same engine the search uses) for the final answer or a judge.
"""

from __future__ import annotations

import json
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedtree.errors import SeedtreeError
from seedtree.files import read_bytes, utf8_lines

Steps = tuple[str, ...]  # the thoughts of a state, root first


@dataclass(frozen=True)
class Prompt:
    """One user message for the model, and how long/where its answer may run."""

    text: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()


# ask(prompts, n) -> for each prompt, n answer texts (the search's engine, any method)
Ask = Callable[[list[Prompt], int], list[list[str]]]


@dataclass
class Outcome:
    """The result of one solved example: the answer text and the task's metrics.
    `metrics["correct"]` (bool) and `metrics["score"]` (float) are always present."""

    answer: str
    metrics: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    name: str = ""
    default_depth: int = 2
    generation: str = "sample"  # "sample" (k samples of one prompt) or "propose"
    evaluation: str = "value"  # "value" (a number per state) or "vote" (choose among states)

    # -- data ----------------------------------------------------------------------------------
    @abstractmethod
    def load(self, path: Path | None = None) -> list[Any]:
        """The examples (each has an `id` and an `index`), from the bundled data or `path`."""

    def get(self, index: int, path: Path | None = None) -> Any:
        examples = self.load(path)
        if not 0 <= index < len(examples):
            raise SeedtreeError(
                f"{self.name} index {index} is out of range: use 0..{len(examples) - 1}"
            )
        return examples[index]

    def depth(self, example: Any) -> int:
        return self.default_depth

    # -- prompts and parsers -------------------------------------------------------------------
    @abstractmethod
    def question(self, example: Any) -> str:
        """The example in one text, for display."""

    @abstractmethod
    def thought_prompt(self, example: Any, steps: Steps) -> Prompt:
        """Sample mode: one prompt whose answer is the next thought."""

    def propose_prompt(self, example: Any, steps: Steps, k: int) -> Prompt:
        raise SeedtreeError(f"task {self.name} has no propose prompt: use --generation sample")

    def parse_thought(self, example: Any, steps: Steps, text: str) -> str:
        return text.strip()

    def parse_proposals(self, example: Any, steps: Steps, text: str, k: int) -> list[str]:
        return lines_of(text)[:k]

    def value_prompt(self, example: Any, steps: Steps) -> Prompt:
        raise SeedtreeError(f"task {self.name} has no value prompt: use --evaluation vote")

    def parse_value(self, text: str) -> float | None:
        """The first integer 0..10 in `text`; None when there is none (scored 0, counted)."""
        for number in re.findall(r"\d+(?:\.\d+)?", text):
            if 0 <= float(number) <= 10:
                return float(number)
        return None

    def vote_prompt(self, example: Any, candidates: list[Steps]) -> Prompt:
        raise SeedtreeError(f"task {self.name} has no vote prompt: use --evaluation value")

    def parse_vote(self, text: str, n: int) -> int | None:
        """'The best choice is 2' -> index 1; None when absent or out of range."""
        match = re.search(r"best choice is\s*:?\s*\**\s*(\d+)", text, re.IGNORECASE)
        if not match or not 1 <= int(match.group(1)) <= n:
            return None
        return int(match.group(1)) - 1

    def value_labels(self) -> dict[str, float]:
        """`--evaluation logprob`: the answers to the value prompt and their scores (0-10 scale);
        the value is their expected score under the target (`search.logprob`)."""
        return {str(i): float(i) for i in range(11)}

    # -- whole solutions (cot, cot-sc) ---------------------------------------------------------
    def solution_prompt(self, example: Any) -> Prompt:
        """cot / cot-sc: one prompt whose answer is a whole solution."""
        raise SeedtreeError(f"task {self.name} has no whole-solution prompt: use --algorithm bfs")

    def solution_steps(self, example: Any, text: str) -> Steps:
        """A whole solution read as the task's thoughts (what `finish` takes): its non-empty lines
        (list markers dropped), each through `parse_thought`; one empty thought when none."""
        steps: Steps = ()
        for line in lines_of(text):
            steps = (*steps, self.parse_thought(example, steps, line))
        return steps or ("",)

    def solution_answer(self, example: Any, steps: Steps) -> str | None:
        """cot-sc's vote: the answer a finished state gives, as a comparable text, without asking
        the model; None when it gives none (it does not vote). Default: the whole state."""
        text = "\n".join(steps).strip()
        return text or None

    def adjust_value(self, example: Any, steps: Steps, value: float) -> float:
        """A task may overrule the model's value (e.g. an illegal Blocksworld action -> 0)."""
        return value

    @abstractmethod
    def is_terminal(self, example: Any, steps: Steps) -> bool:
        """True when the state needs no further thoughts (solved, or a dead end)."""

    def state_text(self, example: Any, steps: Steps) -> str:
        return "\n".join(steps)

    @abstractmethod
    def finish(self, example: Any, steps: Steps, ask: Ask) -> Outcome:
        """The answer of the chosen state, and its score."""


def lines_of(text: str) -> list[str]:
    """The non-empty lines of `text`, list markers ("1.", "2)", "-", "*") dropped."""
    lines = [re.sub(r"^\s*(?:\d+[.)]|-|\*)\s*", "", line).strip() for line in text.split("\n")]
    return [line for line in lines if line]


def load_records(path: Path, build: Callable[[int, dict], Any]) -> list[Any]:
    """`build(index, record)` for each line of a JSONL file. A malformed line (not UTF-8, bad
    JSON, missing or wrongly typed fields) is skipped with a warning naming the file and line;
    indices stay dense."""
    examples = []
    for number, line in utf8_lines(read_bytes(path, "data file")):
        if line is not None and not line.strip():
            continue
        try:
            if line is None:
                raise ValueError("not UTF-8 text")
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            examples.append(build(len(examples), record))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            print(f"warning: {path}:{number}: skipped malformed line ({e!r})", file=sys.stderr)
    if not examples:
        raise SeedtreeError(f"data file {path} holds no usable example: check its format")
    return examples


def _typed(record: dict, name: str, kind: type, what: str) -> Any:
    value = record[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"'{name}' must be {what}, got {json.dumps(value)}")
    return value


def text_field(record: dict, name: str) -> str:
    """`record[name]`, which must be a string (KeyError when absent, TypeError otherwise)."""
    return _typed(record, name, str, "a string")


def int_field(record: dict, name: str) -> int:
    return _typed(record, name, int, "an integer")


def texts_field(record: dict, name: str) -> list[str]:
    """`record[name]`, which must be a list of strings."""
    values = _typed(record, name, list, "a list of strings")
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"'{name}' must be a list of strings, got {json.dumps(values)}")
    return values


def atoms_field(record: dict, name: str) -> list[tuple[str, ...]]:
    """`record[name]`, which must be a list of lists of strings (facts or actions)."""
    values = _typed(record, name, list, "a list of lists of strings")
    ok = all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in values)
    if not ok:
        raise TypeError(f"'{name}' must be a list of lists of strings, got {json.dumps(values)}")
    return [tuple(v) for v in values]


def numbered(lines: list[str] | Steps) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))
