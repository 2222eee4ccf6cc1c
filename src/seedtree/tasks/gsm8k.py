"""GSM8K (test split, MIT, OpenAI): problems, prompts, answer extraction and scoring.

SEED builds GSM8K reasoning trees from sub-questions (as RAP does): each thought is the next
sub-question together with its answer; a state is valued 0-10 by the model; the chosen state's
final answer is asked for at the end and compared with the number after `####`. This module holds
every GSM8K prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from seedtree.errors import SeedtreeError
from seedtree.tasks import data_path
from seedtree.tasks.base import Ask, Outcome, Prompt, Steps, Task, load_records, text_field


@dataclass(frozen=True)
class Problem:
    index: int
    question: str
    answer: str  # the reference solution, ending in "#### <number>"

    @property
    def id(self) -> str:
        return f"gsm8k-{self.index}"

    @property
    def gold(self) -> float:
        return float(self.answer.rsplit("####", 1)[1].strip().replace(",", ""))


def _problem(index: int, record: dict) -> Problem:
    problem = Problem(index, text_field(record, "question"), text_field(record, "answer"))
    problem.gold  # noqa: B018 -- raises on a missing or non-numeric "#### <number>"
    return problem


def load_problems(path: Path | None = None) -> list[Problem]:
    return load_records(path or data_path("gsm8k", "test.jsonl"), _problem)


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


def answer_matches(predicted: float | None, gold: float) -> bool:
    return predicted is not None and abs(predicted - gold) < 1e-6


def _steps_text(steps: Steps) -> str:
    return "\n".join(steps) if steps else "(no steps yet)"


class GSM8K(Task):
    """Thought = "Sub-question i: ... Answer i: ..."; value 0-10; final answer asked at the end."""

    name = "gsm8k"
    default_depth = 3
    thought_tokens = 64
    value_tokens = 6
    answer_tokens = 32

    def load(self, path: Path | None = None) -> list[Problem]:
        return load_problems(path)

    def question(self, example: Problem) -> str:
        return example.question

    def thought_prompt(self, example: Problem, steps: Steps) -> Prompt:
        i = len(steps) + 1
        text = (
            "Solve the math word problem by breaking it into sub-questions.\n\n"
            f"Problem: {example.question}\n\nSteps so far:\n{_steps_text(steps)}\n\n"
            f'Write only the next step, in the form "Sub-question {i}: ... Answer {i}: ...", '
            "answering with a number. If the steps already answer the problem, write "
            '"Final answer: <number>" instead.'
        )
        return Prompt(text, self.thought_tokens, stop=("\n\n", f"Sub-question {i + 1}"))

    def propose_prompt(self, example: Problem, steps: Steps, k: int) -> Prompt:
        i = len(steps) + 1
        text = (
            "Solve the math word problem by breaking it into sub-questions.\n\n"
            f"Problem: {example.question}\n\nSteps so far:\n{_steps_text(steps)}\n\n"
            f"Propose {k} different possible next steps, one per line, each in the form "
            f'"Sub-question {i}: ... Answer {i}: ...".'
        )
        return Prompt(text, self.thought_tokens * k, stop=("\n\n",))

    def parse_thought(self, example: Problem, steps: Steps, text: str) -> str:
        return " ".join(text.split())

    def value_prompt(self, example: Problem, steps: Steps) -> Prompt:
        """The question comes before the steps, so a tree's value prompts share everything up to
        their last step (prefix cache and logprob reads keep it; only the last step is new)."""
        text = (
            f"Problem: {example.question}\n\nHow likely are the steps below to be correct and to "
            "lead to the answer? Reply with one integer from 0 (surely wrong) to 10 (surely "
            f"right), and nothing else.\n\nSteps:\n{_steps_text(steps)}"
        )
        return Prompt(text, self.value_tokens, stop=("\n",))

    def solution_prompt(self, example: Problem) -> Prompt:
        text = (
            "Solve the math word problem step by step, one short step per line, and end with "
            f'the line "The answer is <number>".\n\nProblem: {example.question}'
        )
        return Prompt(text, self.thought_tokens * 4)

    def solution_answer(self, example: Problem, steps: Steps) -> str | None:
        """The last number of the solution, as `extract_answer` reads it."""
        number = extract_answer("\n".join(steps))
        return None if number is None else format(number, ".12g")

    def is_terminal(self, example: Problem, steps: Steps) -> bool:
        return bool(steps) and "final answer" in steps[-1].lower()

    def state_text(self, example: Problem, steps: Steps) -> str:
        return f"Problem: {example.question}\n\n{_steps_text(steps)}"

    def answer_prompt(self, example: Problem, steps: Steps) -> Prompt:
        text = (
            f"Problem: {example.question}\n\nSteps:\n{_steps_text(steps)}\n\n"
            'Using the steps, give the final answer to the problem as "The answer is <number>".'
        )
        return Prompt(text, self.answer_tokens, stop=("\n\n",))

    def finish(self, example: Problem, steps: Steps, ask: Ask) -> Outcome:
        [[text]] = ask([self.answer_prompt(example, steps)], 1)
        predicted = extract_answer(text)
        correct = answer_matches(predicted, example.gold)
        return Outcome(
            text.strip(),
            {
                "correct": correct,
                "score": float(correct),
                "predicted": predicted,
                "gold": example.gold,
            },
        )
