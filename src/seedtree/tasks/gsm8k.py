"""GSM8K (test split, MIT, OpenAI): problems, the sub-question prompt, answer extraction.

SEED builds GSM8K reasoning trees from sub-questions (as RAP does): each thought is the next
sub-question together with its answer. This module holds every GSM8K prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from seedtree.errors import SeedtreeError
from seedtree.tasks import data_path


@dataclass(frozen=True)
class Problem:
    index: int
    question: str
    answer: str  # the reference solution, ending in "#### <number>"

    @property
    def gold(self) -> float:
        return float(self.answer.rsplit("####", 1)[1].strip().replace(",", ""))


def load_problems() -> list[Problem]:
    lines = data_path("gsm8k", "test.jsonl").read_text().splitlines()
    return [Problem(i, **json.loads(line)) for i, line in enumerate(lines) if line.strip()]


def get_problem(index: int) -> Problem:
    problems = load_problems()
    if not 0 <= index < len(problems):
        raise SeedtreeError(f"GSM8K index {index} is out of range: use 0..{len(problems) - 1}")
    return problems[index]


SUBQUESTION_INSTRUCTION = (
    "Solve the math word problem by breaking it into sub-questions. "
    "Write the first sub-question and answer it in one short sentence, "
    'in the form "Sub-question 1: ... Answer 1: ...".'
)


def subquestion_prompt(question: str) -> str:
    """The user message asking for the first sub-question (apply the chat template on top)."""
    return f"{SUBQUESTION_INSTRUCTION}\n\nProblem: {question}"


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_answer(text: str) -> float | None:
    """The last number in `text` ("$1,234.50" -> 1234.5); None when there is none."""
    numbers = _NUMBER.findall(text.replace("$", ""))
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace(",", ""))
    except ValueError:
        return None
